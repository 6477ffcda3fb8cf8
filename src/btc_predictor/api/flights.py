"""Identical misses in flight: the first starts one computation in a worker thread, the
others await the same one (what an API process's coalescing saves is counted by the state)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from datetime import datetime
from typing import Generic, ParamSpec, TypeVar

from starlette.concurrency import run_in_threadpool

from btc_predictor.services.forecast import AssetState, DataMark
from btc_predictor.shapes.requests import ForecastRequest, RiskRequest

# (asset, model, version, newest candle, data mark) as this process knows them
FlightKey = tuple[str, str | None, int | None, datetime | None, DataMark | None]
# ... and the active price version, for a risk run (its VaR comes from that version)
RiskFlightKey = tuple[str, str | None, int | None, datetime | None, DataMark | None, int | None]
K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
P = ParamSpec("P")


class Flights(Generic[K, T]):
    """Computations in flight by what identical misses share (their key)."""

    def __init__(self) -> None:
        self._flying: dict[K, asyncio.Future[T]] = {}

    def join(
        self, key: K, compute: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> asyncio.Future[T]:
        """The computation in flight for ``key``, started in a worker thread when none is."""
        flight = self._flying.get(key)
        if flight is None:
            flight = asyncio.ensure_future(run_in_threadpool(compute, *args, **kwargs))
            self._flying[key] = flight
            flight.add_done_callback(lambda done: self._land(key, done))
        return flight

    def _land(self, key: K, done: asyncio.Future[T]) -> None:
        """A computation ended: later misses start their own."""
        if self._flying.get(key) is done:
            del self._flying[key]


def flight_key(state: AssetState | None, request: ForecastRequest) -> FlightKey:
    """What identical misses share: the request's run as this process knows it."""
    if state is None:
        return (request.asset, request.model, None, None, None)
    version = state.version_for(request.model)
    return (request.asset, request.model, version, state.last_candle, state.data_mark)


def risk_flight_key(state: AssetState | None, request: RiskRequest) -> RiskFlightKey:
    """What identical risk misses share: the request's risk run as this process knows it."""
    if state is None:
        return (request.asset, request.model, None, None, None, None)
    version = state.risk_version_for(request.model)
    return (
        request.asset,
        request.model,
        version,
        state.last_candle,
        state.data_mark,
        state.active_version,
    )
