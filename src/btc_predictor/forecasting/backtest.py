"""Walk-forward backtest: expanding window, refit every K days, horizons 1..H.

Fold ``i`` starts at ``e_i = start + i·K``: its model is fitted on ``y[:e_i]`` only and
forecasts from the K origins ``e_i−1 .. e_i+K−2`` (each conditioned on the closes up to that
origin). Folds are self-contained, serializable inputs run through one small ``Executor`` seam,
so they can run in worker processes; each fold's seed depends only on (seed, fold index), so
results do not depend on the number of cores.

Intervals (:mod:`btc_predictor.forecasting.backtest_intervals`): ``static`` split conformal
per fold from the residuals realised by the fold's first origin, or ``adaptive`` (σ̂ from a
risk model refit in the same folds, the level corrected day by day from realised misses).
Folds without intervals are burn-in: listed as such and excluded from coverage (their point
forecasts still count in the point metrics).

This module runs the folds; planning a fold and running one are in
:mod:`btc_predictor.forecasting.folds`, the series rows, metrics per horizon and JSON shape in
:mod:`btc_predictor.forecasting.backtest_report`. The core works with integer day indices;
``BacktestResult.to_json`` maps them to dates.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from btc_predictor.errors import InvalidInputError
from btc_predictor.forecasting.backtest_intervals import (
    FoldSpan,
    IntervalMethod,
    IntervalTable,
    adaptive_table,
    risk_sigma,
    static_table,
)
from btc_predictor.forecasting.backtest_report import BacktestResult, assemble
from btc_predictor.forecasting.base import FloatArray, JSONValue
from btc_predictor.forecasting.baselines import check_closes
from btc_predictor.forecasting.executors import Executor, ProcessExecutor
from btc_predictor.forecasting.folds import Fold, fold_infos, make_folds, run_fold, run_folds
from btc_predictor.forecasting.intervals import DEFAULT_WINDOW, check_level
from btc_predictor.forecasting.registry import get_model_class, get_risk_model_class
from btc_predictor.forecasting.risk.ohlc import OHLC
from btc_predictor.forecasting.training import IntArray


def backtest(
    y: FloatArray,
    *,
    model: str,
    params: dict[str, JSONValue] | None = None,
    seed: int = 0,
    start: int | None = None,
    refit_every: int = 30,
    max_horizon: int = 30,
    level: int = 90,
    epochs: int | None = None,
    window: int | None = DEFAULT_WINDOW,
    executor: Executor | None = None,
    progress: Callable[[int, int], None] | None = None,
    intervals: IntervalMethod = "static",
    candles: OHLC | None = None,
    risk_model: str = "har",
) -> BacktestResult:
    """Run a walk-forward backtest of registered model ``model`` over closes ``y``.

    ``progress(done, total)`` is called as folds finish. The default executor runs folds in
    worker processes. ``intervals="adaptive"`` needs ``candles`` (the same days as ``y``):
    σ̂ comes from risk model ``risk_model`` refit in the same folds.
    """
    values = check_closes(y, min_length=3)
    check_level(level)
    get_model_class(model)  # fail on an unknown name before starting any worker
    _check_intervals(values, intervals, candles, risk_model)
    folds = make_folds(
        values,
        model=model,
        params=params,
        seed=seed,
        start=start,
        refit_every=refit_every,
        max_horizon=max_horizon,
        epochs=epochs,
    )
    (outputs,) = run_folds(run_fold, [folds], executor or ProcessExecutor(), progress)
    origins = np.concatenate([o.origins for o in outputs])
    forecasts = np.concatenate([o.forecasts for o in outputs])  # [n_origins, H]
    sigma = _adaptive_sigma(candles, folds, intervals, risk_model, refit_every, seed)
    table = _interval_table(values, folds, origins, forecasts, sigma, level, window)
    return assemble(
        values,
        model,
        level,
        refit_every,
        fold_infos(folds, table.burn_in),
        origins,
        forecasts,
        table,
        interval_method=intervals,
        risk_model=risk_model if intervals == "adaptive" else None,
    )


def _check_intervals(
    y: FloatArray, intervals: IntervalMethod, candles: OHLC | None, risk_model: str
) -> None:
    """InvalidInputError unless the interval method has what it needs."""
    if intervals == "static":
        return
    if intervals != "adaptive":
        raise InvalidInputError(f"interval method must be adaptive or static, got `{intervals}`")
    get_risk_model_class(risk_model)
    if candles is None or len(candles) != y.size or not np.array_equal(candles.close, y):
        raise InvalidInputError("adaptive intervals need the candles whose closes are backtested")


def _adaptive_sigma(
    candles: OHLC | None,
    folds: list[Fold],
    intervals: IntervalMethod,
    risk_model: str,
    refit_every: int,
    seed: int,
) -> FloatArray | None:
    """σ̂ per (origin, h) from ``risk_model`` refit in the same folds; None unless adaptive."""
    if intervals != "adaptive" or candles is None:
        return None
    return risk_sigma(
        candles,
        model=risk_model,
        start=folds[0].train_end,
        refit_every=refit_every,
        max_horizon=folds[0].max_horizon,
        seed=seed,
    )


def _interval_table(
    values: FloatArray,
    folds: list[Fold],
    origins: IntArray,
    forecasts: FloatArray,
    sigma: FloatArray | None,
    level: int,
    window: int | None,
) -> IntervalTable:
    """Adaptive bounds when σ̂ is given, else static split conformal ones."""
    spans = [FoldSpan(int(f.origins[0]), int(f.origins[-1])) for f in folds]
    if sigma is not None:
        return adaptive_table(values, spans, origins, forecasts, sigma, level, window)
    return static_table(values, spans, origins, forecasts, level, window)
