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
    """Daily open/high/low/close, validated: finite, positive, high ≥ low, equal lengths."""

    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray

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

    @classmethod
    def from_arrays(
        cls,
        open_: npt.ArrayLike,
        high: npt.ArrayLike,
        low: npt.ArrayLike,
        close: npt.ArrayLike,
    ) -> OHLC:
        """Build (and validate) from any array-likes."""
        return cls(
            np.asarray(open_, dtype=np.float64),
            np.asarray(high, dtype=np.float64),
            np.asarray(low, dtype=np.float64),
            np.asarray(close, dtype=np.float64),
        )

    def __len__(self) -> int:
        return int(self.close.size)

    def head(self, n: int) -> OHLC:
        """The first ``n`` days (what a model fitted at day n may see)."""
        return OHLC(self.open[:n], self.high[:n], self.low[:n], self.close[:n])

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
