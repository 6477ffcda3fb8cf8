"""Walk-forward folds: where each fold's training ends, its origins and seed, one fold's run,
and running them all through an executor. The risk backtest plans and runs its folds here too.

Fold ``i`` starts at ``e_i = start + i·K``: its model is fitted on ``y[:e_i]`` only and
forecasts from the K origins ``e_i−1 .. e_i+K−2`` (each conditioned on the closes up to that
origin). A fold is plain data (it carries no close past its last origin), so it can run in a
worker process; its seed depends only on (seed, fold index), so results do not depend on the
number of cores.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from btc_predictor.errors import InvalidInputError, NotEnoughDataError
from btc_predictor.forecasting.backtest_report import FoldInfo
from btc_predictor.forecasting.base import FloatArray, JSONValue
from btc_predictor.forecasting.executors import Executor
from btc_predictor.forecasting.registry import create_model
from btc_predictor.forecasting.training import IntArray, forecast_origins, split_index


class Planned(Protocol):
    """A planned fold of either family: its index, training cut-off and origins."""

    @property
    def index(self) -> int: ...
    @property
    def train_end(self) -> int: ...
    @property
    def origins(self) -> IntArray: ...


class Indexed(Protocol):
    """A fold's output, which knows the fold it came from."""

    @property
    def index(self) -> int: ...


FoldT = TypeVar("FoldT")
OutputT = TypeVar("OutputT", bound=Indexed)


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


def plan_folds(n: int, start: int | None, refit_every: int) -> list[tuple[int, IntArray]]:
    """``(train_end, origins)`` of each fold over ``n`` days (``start``: ceil(0.8·N) if None)."""
    first = split_index(n) if start is None else start
    return [(end, _origins(end, refit_every, n)) for end in fold_starts(n, first, refit_every)]


def _origins(train_end: int, refit_every: int, n: int) -> IntArray:
    """A fold's forecast origins: ``train_end − 1`` on, up to K of them, before the last day."""
    return np.arange(train_end - 1, min(train_end - 1 + refit_every, n - 1), dtype=np.int64)


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
    return [
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
        for index, (train_end, origins) in enumerate(plan_folds(len(y), start, refit_every))
    ]


def run_fold(fold: Fold) -> FoldForecast:
    """Fit on the fold's training part and forecast from each of its origins."""
    model = create_model(fold.model, max_horizon=fold.max_horizon, **fold.params)
    with _one_torch_thread():
        model.fit(fold.history[: fold.train_end], seed=fold.seed, epochs=fold.epochs)
        forecasts = forecast_origins(model, fold.history, fold.origins, fold.max_horizon)
    return FoldForecast(index=fold.index, origins=fold.origins, forecasts=forecasts)


def run_folds(
    fn: Callable[[FoldT], OutputT],
    runs: Sequence[Sequence[FoldT]],
    executor: Executor,
    progress: Callable[[int, int], None] | None,
) -> list[list[OutputT]]:
    """Run each list of folds through ``executor`` in turn; outputs per list, in fold order.

    ``progress(done, total)`` counts the folds of every list, as they finish.
    """
    total, done = sum(len(run) for run in runs), 0
    outputs = []
    for run in runs:
        results = []
        for output in executor.map(fn, run):
            results.append(output)
            done += 1
            if progress is not None:
                progress(done, total)
        outputs.append(sorted(results, key=lambda o: o.index))
    return outputs


def fold_infos(folds: Sequence[Planned], burn_in: Sequence[bool]) -> list[FoldInfo]:
    """Each fold's boundaries for the report, with its burn-in flag."""
    return [
        FoldInfo(
            index=fold.index,
            train_end=fold.train_end,
            first_origin=int(fold.origins[0]),
            last_origin=int(fold.origins[-1]),
            burn_in=flag,
        )
        for fold, flag in zip(folds, burn_in, strict=True)
    ]


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
