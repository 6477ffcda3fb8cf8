"""Daily candles as a validated value type, and the range quantities risk models work on.

Conventions: ascending contiguous days, float64 arrays of one length. ``range_pct[t]`` is
(high_t − low_t) / close_{t−1} · 100; the first day has no previous close, so its own open
stands in (on a 24/7 market the open *is* the previous close, to rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from btc_predictor.errors import InvalidInputError, NotEnoughDataError
from btc_predictor.forecasting import metrics
from btc_predictor.forecasting.base import FloatArray

ESTIMATORS = ("parkinson", "garman-klass")


@dataclass(frozen=True)
class OHLC:
    """Daily open/high/low/close, validated: finite, positive, high ≥ low, equal lengths.

    ``day`` (optional) numbers the days: days since 1970-01-01 (UTC), consecutive. Models with
    calendar terms (``har``'s weekday profile) need it; the others ignore it.
    """

    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    day: npt.NDArray[np.int64] | None = None

    def __post_init__(self) -> None:
        columns = {}
        for name in ("open", "high", "low", "close"):
            values = np.asarray(getattr(self, name), dtype=np.float64)
            if values.ndim != 1:
                raise InvalidInputError(f"OHLC {name} must be 1-D, got shape `{values.shape}`")
            if not np.all(np.isfinite(values)) or np.any(values <= 0):
                raise InvalidInputError(f"OHLC {name} prices must be finite and positive")
            columns[name] = values
        if len({v.size for v in columns.values()}) > 1:
            raise InvalidInputError("OHLC columns must have equal lengths")
        bad = np.flatnonzero(columns["high"] < columns["low"])
        if bad.size:
            i = int(bad[0])
            raise InvalidInputError(
                f"OHLC day #{i}: high {columns['high'][i]} is below low {columns['low'][i]}"
            )
        for name, values in columns.items():
            object.__setattr__(self, name, values)
        if self.day is not None:
            object.__setattr__(self, "day", _check_days(self.day, columns["close"].size))

    @classmethod
    def from_arrays(
        cls,
        open_: npt.ArrayLike,
        high: npt.ArrayLike,
        low: npt.ArrayLike,
        close: npt.ArrayLike,
        day: npt.ArrayLike | None = None,
    ) -> OHLC:
        """Build (and validate) from any array-likes."""
        return cls(
            np.asarray(open_, dtype=np.float64),
            np.asarray(high, dtype=np.float64),
            np.asarray(low, dtype=np.float64),
            np.asarray(close, dtype=np.float64),
            None if day is None else np.asarray(day, dtype=np.int64),
        )

    def __len__(self) -> int:
        return int(self.close.size)

    def head(self, n: int) -> OHLC:
        """The first ``n`` days (what a model fitted at day n may see)."""
        day = None if self.day is None else self.day[:n]
        return OHLC(self.open[:n], self.high[:n], self.low[:n], self.close[:n], day)

    def weekday(self) -> npt.NDArray[np.int64]:
        """Monday = 0 … Sunday = 6 per day; InvalidInputError when ``day`` is not given."""
        if self.day is None:
            raise InvalidInputError("these candles carry no dates (OHLC.day), needed for weekdays")
        return weekday(self.day)

    def require(self, n: int, what: str) -> None:
        """Raise NotEnoughDataError unless there are at least ``n`` days."""
        if len(self) < n:
            raise NotEnoughDataError(f"{what}: need at least {n} days of candles, got {len(self)}")

    def range_pct(self) -> FloatArray:
        """Each day's range in % of the previous close (day 0: of its own open)."""
        return range_pct(self)

    def variance(self, estimator: str = "parkinson") -> FloatArray:
        """Range-based daily variance of the log return per day, floored."""
        return range_variance(self, estimator)


def weekday(day: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Monday = 0 … Sunday = 6 of days since 1970-01-01 (a Thursday)."""
    return (np.asarray(day, dtype=np.int64) + 3) % 7


def _check_days(day: npt.ArrayLike, n: int) -> npt.NDArray[np.int64]:
    """Day numbers as int64: one per candle, consecutive."""
    values = np.asarray(day, dtype=np.int64).reshape(-1)
    if values.size != n:
        raise InvalidInputError(f"OHLC day has {values.size} values for {n} candles")
    if np.any(np.diff(values) != 1):
        raise InvalidInputError("OHLC days must be consecutive (one candle per calendar day)")
    return values


def range_pct(ohlc: OHLC) -> FloatArray:
    """(high_t − low_t) / close_{t−1} · 100 per day; day 0 uses its own open as close_{−1}."""
    prev = np.concatenate([ohlc.open[:1], ohlc.close[:-1]])
    return metrics.range_pct(ohlc.high, ohlc.low, prev)


def range_variance(ohlc: OHLC, estimator: str = "parkinson") -> FloatArray:
    """Parkinson or Garman–Klass variance per day, floored at ``metrics.VARIANCE_FLOOR``."""
    if estimator == "parkinson":
        return metrics.parkinson(ohlc.high, ohlc.low)
    if estimator == "garman-klass":
        return metrics.garman_klass(ohlc.open, ohlc.high, ohlc.low, ohlc.close)
    raise InvalidInputError(f"estimator must be one of {', '.join(ESTIMATORS)}, got `{estimator}`")
