"""One risk model run's whole path, and range intervals at any level derived from it.

A risk version forecasts every horizon up to its ``max_horizon`` in one run (volatility and
range_pct), and its range interval's log half-widths depend only on its stored residuals and
the level (:class:`~btc_predictor.forecasting.paths.HalfWidths`, memoised per level). So one
run per (version, data) serves every (horizon, level), as :class:`ForecastPath` does for
prices. Bounds are ``floored(range)·exp(∓q)`` — exactly what
:func:`~btc_predictor.forecasting.risk.intervals.range_intervals_per_horizon` gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from btc_predictor.errors import ArtifactError, HorizonExceedsModelError, NotEnoughDataError
from btc_predictor.forecasting.base import FloatArray
from btc_predictor.forecasting.paths import HalfWidths
from btc_predictor.forecasting.risk.base import RiskForecaster
from btc_predictor.forecasting.risk.intervals import floored
from btc_predictor.forecasting.risk.ohlc import OHLC


@dataclass(frozen=True, slots=True)
class RiskOutlook:
    """Horizons 1..h: σ (a fraction), range_pct and its interval at ``level``."""

    volatility: FloatArray
    range_pct: FloatArray
    lower: FloatArray
    upper: FloatArray
    level: int


@dataclass(frozen=True, slots=True)
class RiskPath:
    """The volatility and range path of one run (horizons 1..max), the last closed day's
    range (naive-range) and close, and the version's range half-widths."""

    volatility: FloatArray
    range_pct: FloatArray
    naive_range_pct: float
    last_close: float
    widths: HalfWidths
    _bounds: dict[int, tuple[FloatArray, FloatArray]] = field(default_factory=dict, repr=False)

    @property
    def max_horizon(self) -> int:
        """The longest horizon this run forecast."""
        return int(self.range_pct.size)

    def bounds(self, level: int) -> tuple[FloatArray, FloatArray]:
        """Range bounds over the whole path at ``level`` (NaN where undefined)."""
        hit = self._bounds.get(level)
        if hit is None:
            q = self.widths.at(level).q
            q = np.concatenate([q, np.full(max(self.max_horizon - q.size, 0), np.nan)])
            base = floored(self.range_pct)
            # Overflow and NaN half-widths are refused per request (see ``outlook``).
            with np.errstate(over="ignore", invalid="ignore"):
                hit = (base * np.exp(-q[: self.max_horizon]), base * np.exp(q[: self.max_horizon]))
            self._bounds[level] = hit
        return hit

    def outlook(self, horizon: int, level: int) -> RiskOutlook:
        """Horizons 1..``horizon`` at ``level``, refused as a fresh run would refuse them."""
        if horizon > self.max_horizon:
            raise HorizonExceedsModelError(
                f"horizon {horizon} exceeds this risk model's {self.max_horizon} days; "
                f"train it with BTCP_MAX_HORIZON >= {horizon}"
            )
        widths = self.widths.at(level)
        if len(widths.problems) < horizon:
            raise NotEnoughDataError(
                f"range residuals are stored for {len(widths.problems)} horizons, "
                f"the forecast has {horizon}"
            )
        problem = next((p for p in widths.problems[:horizon] if p is not None), None)
        if problem is not None:
            raise NotEnoughDataError(problem)
        lower, upper = self.bounds(level)
        found = RiskOutlook(
            self.volatility[:horizon],
            self.range_pct[:horizon],
            lower[:horizon],
            upper[:horizon],
            level,
        )
        _require_finite(found)
        return found

    def usable(self, level: int) -> int:
        """How many leading horizons ``outlook`` serves at ``level`` without an error."""
        lower, upper = self.bounds(level)
        good = (
            np.isfinite(self.volatility)
            & np.isfinite(self.range_pct)
            & np.isfinite(lower)
            & np.isfinite(upper)
        )
        return int(np.argmin(good)) if not good.all() else self.max_horizon


def run_risk(model: RiskForecaster, ohlc: OHLC, widths: HalfWidths) -> RiskPath:
    """One run of a fitted risk model from the last day of ``ohlc``: every horizon at once."""
    forecast = model.forecast(ohlc, model.max_horizon)
    return RiskPath(
        volatility=np.asarray(forecast.volatility, dtype=np.float64),
        range_pct=np.asarray(forecast.range_pct, dtype=np.float64),
        naive_range_pct=float(ohlc.range_pct()[-1]),
        last_close=float(ohlc.close[-1]),
        widths=widths,
    )


def _require_finite(found: RiskOutlook) -> None:
    """A risk forecast is served only when every number in it is finite (JSON has no NaN)."""
    columns = (found.volatility, found.range_pct, found.lower, found.upper)
    bad = ~np.logical_and.reduce([np.isfinite(c) for c in columns])
    if bad.any():
        h = int(np.argmax(bad)) + 1
        raise ArtifactError(
            f"this risk model's forecast is not finite at horizon {h} (range "
            f"{found.range_pct[h - 1]} in [{found.lower[h - 1]}, {found.upper[h - 1]}]): "
            "it cannot serve these candles"
        )
