"""The executor seam folds run through: serially, or in worker processes.

Folds are self-contained and picklable-free of open resources, so a distributed engine can
plug in here later by implementing ``Executor.map``.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Protocol, TypeVar

from btc_predictor.errors import InvalidInputError

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs ``fn`` over ``items``, yielding results in input order."""

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        """Apply ``fn`` to every item; results come back in the order of ``items``."""
        ...


class SerialExecutor:
    """Runs folds one after another in this process (tests, tiny backtests)."""

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        """Apply ``fn`` to each item in turn."""
        for item in items:
            yield fn(item)


class ProcessExecutor:
    """Runs folds in fresh worker processes ('spawn' by default: no forked torch state)."""

    def __init__(
        self,
        max_workers: int | None = None,
        context: str = "spawn",
        initializer: Callable[[], object] | None = None,
    ) -> None:
        if context not in ("spawn", "forkserver"):
            raise InvalidInputError(f"process context must be spawn or forkserver, got `{context}`")
        self._max_workers = max_workers
        self._context = context
        # Run first in each worker process (the job worker arms its lifeline there).
        self._initializer = initializer

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        """Apply ``fn`` in min(cores, items) worker processes; results in input order."""
        if not items:
            return
        workers = min(self._max_workers or os.cpu_count() or 1, len(items))
        context = multiprocessing.get_context(self._context)
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=self._initializer)
        with pool:
            yield from pool.map(fn, items)
