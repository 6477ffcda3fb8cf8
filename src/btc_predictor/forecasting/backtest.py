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

The core works with integer day indices; :meth:`BacktestResult.to_json` maps them to dates.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from btc_predictor.errors import InvalidInputError, NotEnoughDataError
from btc_predictor.forecasting import metrics
from btc_predictor.forecasting.base import FloatArray, JSONValue
from btc_predictor.forecasting.baselines import check_closes
from btc_predictor.forecasting.executors import Executor, ProcessExecutor
from btc_predictor.forecasting.intervals import (
    DEFAULT_WINDOW,
    check_level,
    conformal_quantile,
    has_enough_residuals,
    recent_residuals,
)
from btc_predictor.forecasting.registry import create_model, get_model_class
from btc_predictor.forecasting.training import IntArray, forecast_origins, split_index


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Run a fold on one torch thread, then restore the caller's setting.

    Workers already occupy every core, and a fixed thread count makes float reductions
    (hence forecasts) identical whichever executor runs the fold.
    """
    torch = sys.modules.get("torch")  # imported by the model class only if it needs torch
    if torch is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# --- Folds -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fold:
    """Everything one fold needs; plain data, so it can cross a process boundary."""

    index: int
    model: str
    params: dict[str, JSONValue]
    seed: int  # derived from (backtest seed, index)
    train_end: int  # the model is fitted on history[:train_end]
    history: FloatArray  # closes up to the fold's last origin; nothing later
    origins: IntArray  # indices into history of the forecast origins
    max_horizon: int
    epochs: int | None


@dataclass(frozen=True)
class FoldForecast:
    """A fold's output: forecasts ``[n_origins, max_horizon]`` for its origins."""

    index: int
    origins: IntArray
    forecasts: FloatArray


def fold_seed(seed: int, index: int) -> int:
    """A deterministic per-fold seed, independent of how folds are scheduled."""
    if seed < 0:
        raise InvalidInputError(f"seed must be >= 0, got `{seed}`")
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def fold_starts(n: int, start: int, refit_every: int) -> list[int]:
    """Training-end indices ``e_i`` of every fold over a series of ``n`` closes."""
    if refit_every < 1:
        raise InvalidInputError(f"refit interval must be >= 1 day, got `{refit_every}`")
    if not 2 <= start <= n - 1:
        raise NotEnoughDataError(f"backtest start must be in 2..{n - 1}, got {start}")
    return list(range(start, n, refit_every))


def make_folds(
    y: FloatArray,
    *,
    model: str,
    params: dict[str, JSONValue] | None = None,
    seed: int = 0,
    start: int | None = None,
    refit_every: int = 30,
    max_horizon: int = 30,
    epochs: int | None = None,
) -> list[Fold]:
    """Split ``y`` into walk-forward folds (``start`` defaults to ceil(0.8·N))."""
    n = len(y)
    first = split_index(n) if start is None else start
    folds = []
    for index, train_end in enumerate(fold_starts(n, first, refit_every)):
        origins = np.arange(train_end - 1, min(train_end - 1 + refit_every, n - 1), dtype=np.int64)
        folds.append(
            Fold(
                index=index,
                model=model,
                params=dict(params or {}),
                seed=fold_seed(seed, index),
                train_end=train_end,
                history=np.array(y[: origins[-1] + 1]),
                origins=origins,
                max_horizon=max_horizon,
                epochs=epochs,
            )
        )
    return folds


def run_fold(fold: Fold) -> FoldForecast:
    """Fit on the fold's training part and forecast from each of its origins."""
    model = create_model(fold.model, max_horizon=fold.max_horizon, **fold.params)
    with _one_torch_thread():
        model.fit(fold.history[: fold.train_end], seed=fold.seed, epochs=fold.epochs)
        forecasts = forecast_origins(model, fold.history, fold.origins, fold.max_horizon)
    return FoldForecast(index=fold.index, origins=fold.origins, forecasts=forecasts)


# --- Result ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FoldInfo:
    """A fold's boundaries (indices) and whether it was interval burn-in."""

    index: int
    train_end: int  # last training close is train_end − 1
    first_origin: int
    last_origin: int
    burn_in: bool


@dataclass(frozen=True)
class HorizonMetrics:
    """Backtest metrics at one horizon; coverage/width exclude burn-in folds."""

    h: int
    n: int
    mae: float | None
    rmse: float | None
    mape: float | None
    mase: float | None
    directional_accuracy: float | None
    coverage: float | None
    interval_width: float | None
    relative_interval_width: float | None
    n_intervals: int
    naive_mae: float | None
    dm_pvalue: float | None


@dataclass(frozen=True)
class BacktestResult:
    """Walk-forward results over day indices; ``series_*`` are parallel arrays, one row per
    (origin, h) with a realised target, sorted by origin then h; NaN bounds = no interval."""

    model: str
    level: int
    refit_every: int
    start: int  # first target index (first close the first fold did not see)
    end: int  # last target index
    folds: list[FoldInfo]
    horizons: list[HorizonMetrics]
    series_origin: IntArray
    series_target: IntArray
    series_h: IntArray
    series_actual: FloatArray
    series_forecast: FloatArray
    series_lower: FloatArray
    series_upper: FloatArray
    series_naive: FloatArray = field(repr=False)

    def to_json(self, dates: Sequence[str], *, asset: str) -> dict[str, Any]:
        """The API/CLI shape, with ``dates[i]`` the ISO date of close ``i``."""
        return {
            "asset": asset,
            "model": self.model,
            "level": self.level,
            "refit_every": self.refit_every,
            "start": dates[self.start],
            "end": dates[self.end],
            "folds": len(self.folds),
            "burn_in_folds": sum(f.burn_in for f in self.folds),
            "fold_details": [_fold_json(f, dates) for f in self.folds],
            "horizons": [asdict(h) for h in self.horizons],
            "series": self._series_json(dates),
        }

    def _series_json(self, dates: Sequence[str]) -> list[dict[str, Any]]:
        """One dict per (origin, h) row; missing bounds become None."""
        rows = zip(
            self.series_origin.tolist(),
            self.series_target.tolist(),
            self.series_h.tolist(),
            self.series_actual.tolist(),
            self.series_forecast.tolist(),
            self.series_lower.tolist(),
            self.series_upper.tolist(),
            self.series_naive.tolist(),
            strict=True,
        )
        return [
            {
                "origin": dates[o],
                "target_date": dates[t],
                "h": h,
                "actual": a,
                "forecast": f,
                "lower": _or_none(lo),
                "upper": _or_none(hi),
                "naive": nv,
            }
            for o, t, h, a, f, lo, hi, nv in rows
        ]


def _fold_json(fold: FoldInfo, dates: Sequence[str]) -> dict[str, Any]:
    """A fold's boundaries as dates."""
    return {
        "index": fold.index,
        "train_end": dates[fold.train_end - 1],
        "first_origin": dates[fold.first_origin],
        "last_origin": dates[fold.last_origin],
        "burn_in": fold.burn_in,
    }


def _or_none(value: float) -> float | None:
    """NaN (no interval) as None for JSON."""
    return None if math.isnan(value) else value


# --- Orchestration ---------------------------------------------------------------------------


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
    return _assemble(values, model, level, refit_every, infos, origins, forecasts, lower, upper)


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


def _assemble(
    y: FloatArray,
    model: str,
    level: int,
    refit_every: int,
    folds: list[FoldInfo],
    origins: IntArray,
    forecasts: FloatArray,
    lower: FloatArray,
    upper: FloatArray,
) -> BacktestResult:
    """Flatten the realised (origin, h) cells into series rows and score each horizon."""
    steps = np.arange(1, forecasts.shape[1] + 1, dtype=np.int64)
    targets = origins[:, None] + steps[None, :]  # [n, H]
    realised = targets < y.size  # row-major mask: rows come out sorted by origin, then h
    row_origin = np.broadcast_to(origins[:, None], targets.shape)[realised]
    row_h = np.broadcast_to(steps[None, :], targets.shape)[realised]
    columns = _Columns(
        h=row_h,
        actual=y[targets[realised]],
        forecast=forecasts[realised],
        naive=y[row_origin],
        lower=lower[realised],
        upper=upper[realised],
    )
    return BacktestResult(
        model=model,
        level=level,
        refit_every=refit_every,
        start=int(origins[0]) + 1,
        end=y.size - 1,
        folds=folds,
        horizons=[_horizon_metrics(columns, h) for h in steps.tolist()],
        series_origin=row_origin,
        series_target=targets[realised],
        series_h=row_h,
        series_actual=columns.actual,
        series_forecast=columns.forecast,
        series_lower=columns.lower,
        series_upper=columns.upper,
        series_naive=columns.naive,
    )


@dataclass(frozen=True)
class _Columns:
    """Series rows as parallel arrays (one per realised (origin, h) cell)."""

    h: IntArray
    actual: FloatArray
    forecast: FloatArray
    naive: FloatArray
    lower: FloatArray
    upper: FloatArray


def _horizon_metrics(columns: _Columns, h: int) -> HorizonMetrics:
    """Point metrics over all folds; coverage and width over non-burn-in rows only."""
    rows = columns.h == h
    actual, forecast, naive = columns.actual[rows], columns.forecast[rows], columns.naive[rows]
    lower, upper = columns.lower[rows], columns.upper[rows]
    covered = ~np.isnan(lower)
    dm = metrics.diebold_mariano(forecast - actual, naive - actual, h=h)
    return HorizonMetrics(
        h=h,
        n=int(rows.sum()),
        mae=metrics.mae(actual, forecast),
        rmse=metrics.rmse(actual, forecast),
        mape=metrics.mape(actual, forecast),
        mase=metrics.mase(actual, forecast, naive),
        directional_accuracy=metrics.directional_accuracy(naive, actual, forecast),
        coverage=metrics.coverage(actual[covered], lower[covered], upper[covered]),
        interval_width=metrics.interval_width(lower[covered], upper[covered]),
        relative_interval_width=metrics.relative_interval_width(
            lower[covered], upper[covered], forecast[covered]
        ),
        n_intervals=int(covered.sum()),
        naive_mae=metrics.mae(actual, naive),
        dm_pvalue=None if dm is None else dm.pvalue,
    )
