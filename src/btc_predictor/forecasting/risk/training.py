"""Risk training core: chronological holdout and final fit, shaped like ``forecasting.training``.

The holdout fits on the first ``ceil(0.8·N)`` days only and forecasts from every origin
``split−1 .. N−2`` for horizons 1..H whose target is a test day. Reported metrics (h=1):
``mase`` (range MASE vs naive-range on the same days), ``range_mae`` (in % of the previous
close), ``qlike`` (forecast variance vs the target day's Parkinson variance), ``dm_pvalue``
(vs naive-range on absolute range error) and ``coverage`` of the 90% range interval, each test
day calibrated on the holdout residuals realised before it (the first 30 have no interval).
Per-day errors use the price rule's :class:`DayErrors`, so ``promotion_decision`` compares
risk versions on the same days with range MASE.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from btc_predictor.errors import InvalidInputError, NotEnoughDataError
from btc_predictor.forecasting import metrics
from btc_predictor.forecasting.base import FloatArray, ProgressFn
from btc_predictor.forecasting.risk.base import IntArray, RiskForecaster
from btc_predictor.forecasting.risk.intervals import range_residuals, sequential_bounds
from btc_predictor.forecasting.risk.ohlc import OHLC
from btc_predictor.forecasting.training import DayErrors, split_index

RiskModelFactory: TypeAlias = Callable[[], RiskForecaster]
COVERAGE_LEVEL = 90  # the reported coverage is of the 90% range interval
NAIVE = "naive-range"


@dataclass(frozen=True)
class RiskHorizonSeries:
    """Out-of-sample forecasts at one horizon ``h``, in origin (= time) order (range_pct)."""

    h: int
    origins: IntArray
    targets: IntArray
    forecast: FloatArray  # range_pct forecast of the target day
    actual: FloatArray  # realised range_pct of the target day
    naive: FloatArray  # naive-range: the origin day's range_pct
    variance: FloatArray  # forecast variance of the target day's log return
    realised: FloatArray  # the target day's Parkinson variance (floored)

    @property
    def residuals(self) -> FloatArray:
        """Log residuals of range_pct (calibrate the intervals)."""
        return range_residuals(self.actual, self.forecast)


@dataclass(frozen=True)
class RiskHoldoutResult:
    """The 80/20 holdout of a risk model."""

    split: int
    horizons: list[RiskHorizonSeries]  # horizons[h-1]
    metrics: dict[str, float | None]  # h=1: mase, range_mae, qlike, dm_pvalue, coverage
    baseline: dict[str, dict[str, float | None]]  # {"naive-range": {range_mae, qlike}}
    day_errors: DayErrors  # h=1 absolute range errors, model and naive-range

    @property
    def residuals_per_horizon(self) -> list[FloatArray]:
        """Out-of-sample log range residuals, one array per horizon, in time order."""
        return [series.residuals for series in self.horizons]


def horizon_series(
    ohlc: OHLC, origins: IntArray, variance: FloatArray, ranges: FloatArray, h: int
) -> RiskHorizonSeries:
    """The rows of the forecasts ``[n_origins, H]`` whose h-day target lies inside ``ohlc``."""
    keep = origins + h < len(ohlc)
    kept = origins[keep]
    actual_range = ohlc.range_pct()
    return RiskHorizonSeries(
        h=h,
        origins=kept,
        targets=kept + h,
        forecast=ranges[keep, h - 1],
        actual=actual_range[kept + h],
        naive=actual_range[kept],
        variance=variance[keep, h - 1],
        realised=ohlc.variance("parkinson")[kept + h],
    )


def series_metrics(
    series: RiskHorizonSeries, level: int = COVERAGE_LEVEL
) -> dict[str, float | None]:
    """mase, range_mae, qlike, dm_pvalue (vs naive-range) and sequential coverage at ``level``."""
    dm = metrics.diebold_mariano(
        series.forecast - series.actual, series.naive - series.actual, h=series.h
    )
    lower, upper = sequential_bounds(
        series.actual, series.forecast, series.origins, series.h, level
    )
    calibrated = ~np.isnan(lower)
    return {
        "mase": metrics.range_mase(series.actual, series.forecast, series.naive),
        "range_mae": metrics.mae(series.actual, series.forecast),
        "qlike": metrics.qlike(series.realised, series.variance),
        "dm_pvalue": None if dm is None else dm.pvalue,
        "coverage": metrics.coverage(
            series.actual[calibrated], lower[calibrated], upper[calibrated]
        ),
    }


def risk_holdout_evaluate(
    model_factory: RiskModelFactory,
    ohlc: OHLC,
    *,
    seed: int = 0,
    max_horizon: int = 30,
    days: npt.ArrayLike | None = None,
) -> RiskHoldoutResult:
    """Fit on the first ceil(0.8·N) days and forecast every test day for horizons 1..H."""
    keys = _day_keys(days, len(ohlc))
    split = split_index(len(ohlc))
    if split >= len(ohlc):
        raise NotEnoughDataError(f"a holdout needs at least 5 days, got {len(ohlc)}")
    model = model_factory()
    if not 1 <= max_horizon <= model.max_horizon:
        raise InvalidInputError(
            f"max_horizon must be in 1..{model.max_horizon} for `{model.name}`, got `{max_horizon}`"
        )
    model.fit(ohlc.head(split), seed=seed)
    origins = np.arange(split - 1, len(ohlc) - 1, dtype=np.int64)
    batch = model.forecast_batch(ohlc, origins)
    variance, ranges = batch.variance[:, :max_horizon], batch.range_pct[:, :max_horizon]
    _require_finite(model.name, ranges, variance)
    horizons = [
        horizon_series(ohlc, origins, variance, ranges, h) for h in range(1, max_horizon + 1)
    ]
    first = horizons[0]
    naive_qlike = metrics.qlike(first.realised, metrics.parkinson(*_origin_hl(ohlc, first)))
    return RiskHoldoutResult(
        split=split,
        horizons=horizons,
        metrics=series_metrics(first),
        baseline={
            NAIVE: {"range_mae": metrics.mae(first.actual, first.naive), "qlike": naive_qlike}
        },
        day_errors=DayErrors(
            days=keys[first.targets],
            model=np.abs(first.forecast - first.actual),
            naive=np.abs(first.naive - first.actual),
        ),
    )


def _origin_hl(ohlc: OHLC, series: RiskHorizonSeries) -> tuple[FloatArray, FloatArray]:
    """High and low of each origin day (naive-range's variance forecast is the origin's)."""
    return ohlc.high[series.origins], ohlc.low[series.origins]


def _day_keys(days: npt.ArrayLike | None, n: int) -> IntArray:
    """Caller-given day numbers (one per candle), or the indices themselves."""
    if days is None:
        return np.arange(n, dtype=np.int64)
    keys = np.asarray(days, dtype=np.int64).reshape(-1)
    if keys.size != n or np.any(np.diff(keys) <= 0):
        raise InvalidInputError("days must be increasing and parallel to the candles")
    return keys


def _require_finite(name: str, ranges: FloatArray, variance: FloatArray) -> None:
    """Refuse non-finite or non-positive forecasts: they would poison metrics and residuals."""
    if not (np.all(np.isfinite(ranges)) and np.all(np.isfinite(variance))):
        raise InvalidInputError(f"{name} produced non-finite risk forecasts on these candles")
    if np.any(variance <= 0) or np.any(ranges < 0):
        raise InvalidInputError(f"{name} produced non-positive risk forecasts on these candles")


@dataclass(frozen=True)
class RiskTrainOutcome:
    """What risk ``train`` produces: the served model and the holdout evidence behind it."""

    model: RiskForecaster  # final fit on all candles
    metrics: dict[str, float | None]
    baseline: dict[str, dict[str, float | None]]
    residuals_per_horizon: list[list[float]]  # JSON-ready, [h-1]
    holdout: RiskHoldoutResult = field(repr=False)


def train_risk_model(
    model_factory: RiskModelFactory,
    ohlc: OHLC,
    *,
    seed: int = 0,
    max_horizon: int = 30,
    progress: ProgressFn | None = None,
    days: npt.ArrayLike | None = None,
) -> RiskTrainOutcome:
    """Holdout evaluation, then a final fit on all of ``ohlc``; ``progress`` sees 2 steps."""
    holdout = risk_holdout_evaluate(
        model_factory, ohlc, seed=seed, max_horizon=max_horizon, days=days
    )
    if progress is not None:
        progress(1, 2, None)
    model = model_factory().fit(ohlc, seed=seed)
    if progress is not None:
        progress(2, 2, None)
    return RiskTrainOutcome(
        model=model,
        metrics=holdout.metrics,
        baseline=holdout.baseline,
        residuals_per_horizon=[r.tolist() for r in holdout.residuals_per_horizon],
        holdout=holdout,
    )


# --- σ̂ for a price holdout (issue 16): the normalisation of its conformal scores ------------


def holdout_sigma(
    model: RiskForecaster, ohlc: OHLC, split: int, origins: npt.ArrayLike, *, seed: int = 0
) -> FloatArray:
    """σ̂ of the h-day log return ``[n_origins, H]`` from ``model`` fitted on ``ohlc[:split]``
    only (a price holdout's training part: no leakage), forecasting from each origin with the
    candles up to it; the h-day variance is the sum of the one-day ones (as the backtest)."""
    fitted = model.fit(ohlc.head(split), seed=seed)
    variance = fitted.forecast_batch(ohlc, origins).variance
    return np.sqrt(np.cumsum(variance, axis=1))
