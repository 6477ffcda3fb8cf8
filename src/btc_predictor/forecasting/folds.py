"""Walk-forward folds: where each fold's training ends, its origins and seed, and one fold's run.

Fold ``i`` starts at ``e_i = start + i·K``: its model is fitted on ``y[:e_i]`` only and
forecasts from the K origins ``e_i−1 .. e_i+K−2`` (each conditioned on the closes up to that
origin). A fold is plain data (it carries no close past its last origin), so it can run in a
worker process; its seed depends only on (seed, fold index), so results do not depend on the
number of cores.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from btc_predictor.errors import InvalidInputError, NotEnoughDataError
from btc_predictor.forecasting.base import FloatArray, JSONValue
from btc_predictor.forecasting.registry import create_model
from btc_predictor.forecasting.training import IntArray, forecast_origins, split_index


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
