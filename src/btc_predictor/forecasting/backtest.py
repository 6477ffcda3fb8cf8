"""Walk-forward backtest: expanding window, refit every K days, horizons 1..H.

Fold ``i`` starts at ``e_i = start + i·K``: its model is fitted on ``y[:e_i]`` only and
forecasts from the K origins ``e_i−1 .. e_i+K−2`` (each conditioned on the closes up to that
origin). Folds are self-contained, serializable inputs run through one small ``Executor`` seam,
so they can run in worker processes; each fold's seed depends only on (seed, fold index), so
results do not depend on the number of cores.

Intervals: a fold's forecasts get split-conformal intervals from the residuals whose target
was realised by the fold's first origin (earlier folds' errors only), most recent
``window`` per horizon. Folds where some horizon has fewer than ``min_residuals(level)`` are
burn-in: they get no intervals, are listed as such, and are excluded from coverage (their point
forecasts still count in the point metrics).

This module runs the folds and computes the intervals; planning a fold and running one are in
:mod:`btc_predictor.forecasting.folds`, the series rows, metrics per horizon and JSON shape in
:mod:`btc_predictor.forecasting.backtest_report`. The core works with integer day indices;
``BacktestResult.to_json`` maps them to dates.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from btc_predictor.errors import InvalidInputError
from btc_predictor.forecasting.backtest_report import BacktestResult, FoldInfo, assemble
from btc_predictor.forecasting.base import FloatArray, JSONValue
from btc_predictor.forecasting.baselines import check_closes
from btc_predictor.forecasting.executors import Executor, ProcessExecutor
from btc_predictor.forecasting.folds import Fold, FoldForecast, make_folds, run_fold
from btc_predictor.forecasting.intervals import (
    DEFAULT_WINDOW,
    check_level,
    conformal_quantile,
    has_enough_residuals,
    recent_residuals,
)
from btc_predictor.forecasting.registry import get_model_class
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
) -> BacktestResult:
    """Run a walk-forward backtest of registered model ``model`` over closes ``y``.

    ``progress(done, total)`` is called as folds finish. The default executor runs folds in
    worker processes.
    """
    values = check_closes(y, min_length=3)
    check_level(level)
    get_model_class(model)  # fail on an unknown name before starting any worker
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
    outputs = _run(folds, executor or ProcessExecutor(), progress)
    origins = np.concatenate([o.origins for o in outputs])
    forecasts = np.concatenate([o.forecasts for o in outputs])  # [n_origins, H]
    lower, upper, burn_in = _bounds(values, folds, origins, forecasts, level, window)
    infos = [_fold_info(f, b) for f, b in zip(folds, burn_in, strict=True)]
    return assemble(values, model, level, refit_every, infos, origins, forecasts, lower, upper)


def _run(
    folds: list[Fold], executor: Executor, progress: Callable[[int, int], None] | None
) -> list[FoldForecast]:
    """Run every fold through ``executor``, reporting progress, in fold order."""
    outputs = []
    for done, output in enumerate(executor.map(run_fold, folds), start=1):
        outputs.append(output)
        if progress is not None:
            progress(done, len(folds))
    return sorted(outputs, key=lambda o: o.index)


def _fold_info(fold: Fold, burn_in: bool) -> FoldInfo:
    """Boundaries of one fold."""
    return FoldInfo(
        index=fold.index,
        train_end=fold.train_end,
        first_origin=int(fold.origins[0]),
        last_origin=int(fold.origins[-1]),
        burn_in=burn_in,
    )


def _residual_table(y: FloatArray, origins: IntArray, forecasts: FloatArray) -> FloatArray:
    """Log residuals ``[n_origins, H]``; NaN where the target lies beyond the series."""
    steps = np.arange(1, forecasts.shape[1] + 1)
    targets = origins[:, None] + steps[None, :]  # [n, H]
    realised = targets < y.size
    if np.any(forecasts[realised] <= 0):
        raise InvalidInputError("the model produced non-positive price forecasts")
    table = np.full(forecasts.shape, np.nan)
    table[realised] = np.log(y[targets[realised]]) - np.log(forecasts[realised])
    return table


def _bounds(
    y: FloatArray,
    folds: list[Fold],
    origins: IntArray,
    forecasts: FloatArray,
    level: int,
    window: int | None,
) -> tuple[FloatArray, FloatArray, list[bool]]:
    """Interval bounds ``[n_origins, H]`` (NaN in burn-in folds) and each fold's burn-in flag."""
    table = _residual_table(y, origins, forecasts)
    lower, upper = np.full(forecasts.shape, np.nan), np.full(forecasts.shape, np.nan)
    burn_in = []
    for fold in folds:
        first = int(fold.origins[0])
        q = _fold_quantiles(table, origins, first, level, window)
        burn_in.append(q is None)
        if q is not None:
            rows = (origins >= first) & (origins <= fold.origins[-1])
            lower[rows], upper[rows] = forecasts[rows] * np.exp(-q), forecasts[rows] * np.exp(q)
    return lower, upper, burn_in


def _fold_quantiles(
    table: FloatArray, origins: IntArray, first_origin: int, level: int, window: int | None
) -> FloatArray | None:
    """Half-widths ``(H,)`` from residuals realised by ``first_origin``; None if too few."""
    quantiles = []
    for h in range(1, table.shape[1] + 1):
        realised = table[origins + h <= first_origin, h - 1]
        recent = recent_residuals(realised, window)
        if not has_enough_residuals(recent, level):
            return None
        quantiles.append(conformal_quantile(recent, level))
    return np.array(quantiles)
