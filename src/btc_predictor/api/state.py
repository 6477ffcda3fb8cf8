"""What an API process holds in memory: loaded model versions and their model runs.

A forecast depends only on (asset, version, data) and the request's (horizon, level): one
cached run answers every horizon and level (``run_cache``). A poller reads the cheap "state"
every ``BTCP_STATE_POLL``: per asset the active version, newest candle, newest successful
ingest run and newest usable version of each model kind. Requests resolve their run through
it, so after another process promotes, rolls back, ingests, trains or prunes, the next poll
moves every request to the new run (runs nothing can reach any more are dropped). Identical
misses share one computation (``flights``), and served forecasts reach the ledger in batches,
off the request path (``ledger_queue``). Stored-data summaries (``GET /api/v1/assets``) are
kept per asset until the poll sees its newest ingest run move: no query per request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Engine

from btc_predictor.api.flights import FlightKey, Flights, RiskFlightKey, flight_key, risk_flight_key
from btc_predictor.api.ledger_queue import LedgerQueue, RiskLedgerQueue
from btc_predictor.api.run_cache import (
    CachedRiskRun,
    CachedRun,
    RunCache,
    ServedRequest,
    ServedRun,
)
from btc_predictor.config import Settings
from btc_predictor.errors import (
    ArtifactError,
    BtcpError,
    HorizonExceedsModelError,
    NoDataError,
    NoModelError,
    UnavailableError,
)
from btc_predictor.services.forecast import (
    AssetState,
    LoadedVersion,
    asset_states,
    check_horizon,
    check_request,
    load_stored_version,
    locate,
    run_model,
)
from btc_predictor.services.ingest import AssetSummaries, kept_status
from btc_predictor.services.risk import (
    NO_PRICE,
    PRICE_LEVEL,
    LoadedRisk,
    PriceRisk,
    locate_risk,
    price_risk,
    run_risk_model,
)
from btc_predictor.shapes.requests import ForecastRequest, RiskRequest
from btc_predictor.shapes.results import AssetStatus
from btc_predictor.storage.db import is_unavailable

log = logging.getLogger(__name__)
RunT = TypeVar("RunT", CachedRun, CachedRiskRun)


class ServingState:
    """Loaded versions and their runs (one LRU), and the poller that keeps them current."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._lock = threading.Lock()  # writers of _slots, _states and ledger progress
        self._slots = RunCache(settings.max_loaded_models)
        self._states: dict[str, AssetState] = {}
        self._marks: dict[str, int] = {}  # each asset's newest ingest run, as last polled
        self._flights: Flights[FlightKey, CachedRun] = Flights()
        self._risk_flights: Flights[RiskFlightKey, CachedRiskRun] = Flights()
        self.ledger = LedgerQueue(engine)
        self.risk_ledger = RiskLedgerQueue(engine)
        self.summaries = AssetSummaries()
        self.model_runs = 0  # model runs this process made (what coalescing saves)
        self.risk_runs = 0  # risk model runs, likewise
        # Why a version could not be loaded (its artifacts fail their checks), by version id:
        # found when the poller first sees it active, and reported by /health.
        self._load_errors: dict[int, str] = {}

    def held(self) -> list[int]:
        """The loaded versions, least recently used first."""
        return list(self._slots)

    def read_states(self) -> dict[str, AssetState]:
        """Active version, newest candle and the rest of the state, from the database."""
        return asset_states(self.engine)

    def refresh(self) -> None:
        """Adopt the database's state; drop what changed assets' requests can no longer reach."""
        states = self.read_states()
        with self._lock:
            changed = {
                a for a in set(states) | set(self._states) if states.get(a) != self._states.get(a)
            }
            self._states, self._marks = states, _ingest_marks(states)
            for asset in changed:
                self._slots.forget(asset, states.get(asset))
        self._load_active(states)

    def _load_active(self, states: dict[str, AssetState]) -> None:
        """Load each tracked asset's active version once, so a damaged one is known at once."""
        for asset in self.settings.assets:
            version = states[asset].active_version if asset in states else None
            if version is None or version in self._slots or version in self._load_errors:
                continue
            try:
                loaded = load_stored_version(self.engine, version)
            except Exception as exc:
                if is_unavailable(exc) or isinstance(exc, UnavailableError):
                    raise  # the database, not the version: the next poll tries again
                # Damaged artifacts, or a graph ONNX Runtime refuses: it cannot serve.
                log.error("active version %d of %s cannot be loaded", version, asset, exc_info=exc)
                self._load_errors[version] = _why(exc)
                continue
            with self._lock:
                self._slots.hold(loaded)

    def asset_status(self, asset: str | None, now: datetime) -> list[AssetStatus]:
        """``data_status`` as of the last state poll: no query per request (an asset whose
        data mark that poll saw move is summarised once, by the first request after it)."""
        marks = self._marks
        return kept_status(self.settings, self.engine, self.summaries, marks, asset=asset, now=now)

    def load_error(self, version_id: int) -> str | None:
        """Why ``version_id`` could not be loaded here (None: loaded, or not tried yet)."""
        return self._load_errors.get(version_id)

    async def poll_forever(self) -> None:
        """Refresh every BTCP_STATE_POLL until cancelled (errors are logged, not fatal)."""
        interval = self.settings.state_poll.total_seconds()
        outage = Outage("state poll", log)
        while True:
            await asyncio.sleep(interval)
            running = asyncio.ensure_future(asyncio.to_thread(self.refresh))
            try:
                await asyncio.shield(running)
            except asyncio.CancelledError:
                # Shutdown: the refresh thread finishes before the engine is disposed, so it
                # never holds a connection the pool has already closed under it.
                await asyncio.gather(running, return_exceptions=True)
                raise
            except Exception as exc:  # a database hiccup must not kill the poller
                outage.failed(exc)
            else:
                outage.ended()

    def cached(self, request: ForecastRequest, now: datetime) -> dict[str, Any] | None:
        """The forecast derived from this process's run for the request's state (no I/O).

        The hot path of every cached answer: lock-free lookups only.
        """
        state = self._states.get(request.asset)
        if state is None or request.horizon > self.settings.max_horizon:
            return None  # horizons beyond the setting are refused by ``compute``
        model = request.model
        version = state.active_version if model is None else state.version_for(model)
        slot = self._slots.get(version) if version is not None else None
        if slot is None:
            return None
        return self._hit(slot.run, version, state, request, now, self.ledger)

    async def compute(self, request: ForecastRequest, now: datetime) -> dict[str, Any]:
        """A forecast no cached run answers: identical misses share one computation, run in
        a worker thread; the caller's ledger rows are written before it returns."""
        check_request(self.settings, request)
        key = flight_key(self._states.get(request.asset), request)
        flight = self._flights.join(key, self._load, request.asset, request.model)
        return await self._landed(flight, request, now, self.ledger)

    def forecast(self, request: ForecastRequest, now: datetime) -> dict[str, Any]:
        """The forecast object for a request: from memory, else computed here (blocking I/O)."""
        check_request(self.settings, request)
        payload = self.cached(request, now)
        if payload is None:
            run = self._load(request.asset, request.model)
            payload = self._answer(run, request, now, self.ledger)
        self.ledger.flush()
        return payload

    def _load(self, asset: str, model: str | None) -> CachedRun:
        """The run serving (asset, model) on the stored data: this process's when it has that
        run, else one model run (blocking: database reads and ONNX)."""
        with self._lock:
            loaded = self._slots.loaded(LoadedVersion)
        located = locate(self.settings, self.engine, asset, model, loaded=loaded)
        slot = self._slots.get(located.version.version_id)
        if slot is not None and slot.run is not None and slot.run.run.key == located.key:
            return slot.run
        run = CachedRun(run_model(asset, located), self.settings)
        with self._lock:
            self.model_runs += 1
            self._slots.hold(located.version).run = run
        return run

    # --- risk forecasts (GET /api/v1/risk): the same LRU, state and coalescing ------------

    def cached_risk(self, request: RiskRequest, now: datetime) -> dict[str, Any] | None:
        """The risk forecast derived from this process's risk run for the request's state
        (no I/O): the hot path of every cached risk answer, like ``cached``."""
        state = self._states.get(request.asset)
        if state is None or request.horizon > self.settings.max_horizon:
            return None  # horizons beyond the setting are refused by ``compute_risk``
        model = request.model
        version = state.risk_version if model is None else state.risk_version_for(model)
        slot = self._slots.get(version) if version is not None else None
        if slot is None:
            return None
        return self._hit(slot.risk, version, state, request, now, self.risk_ledger)

    async def compute_risk(self, request: RiskRequest, now: datetime) -> dict[str, Any]:
        """A risk forecast no cached run answers: identical misses share one computation, run
        in a worker thread; the caller's risk ledger rows are written before it returns."""
        check_horizon(self.settings, request.horizon)
        key = risk_flight_key(self._states.get(request.asset), request)
        flight = self._risk_flights.join(key, self._load_risk, request.asset, request.model)
        return await self._landed(flight, request, now, self.risk_ledger)

    def risk(self, request: RiskRequest, now: datetime) -> dict[str, Any]:
        """The risk object for a request: from memory, else computed here (blocking I/O)."""
        check_horizon(self.settings, request.horizon)
        payload = self.cached_risk(request, now)
        if payload is None:
            run = self._load_risk(request.asset, request.model)
            payload = self._answer(run, request, now, self.risk_ledger)
        self.risk_ledger.flush()
        return payload

    def _load_risk(self, asset: str, model: str | None) -> CachedRiskRun:
        """The risk run serving (asset, model) on the stored data: this process's when it has
        that run, else one risk model run (blocking: database reads and numpy)."""
        with self._lock:
            loaded = self._slots.loaded(LoadedRisk)
        located = locate_risk(self.settings, self.engine, asset, model, loaded=loaded)
        slot = self._slots.get(located.version.version_id)
        if slot is not None and slot.risk is not None and slot.risk.run.key == located.key:
            return slot.risk
        price = self._price_risk(asset) if located.price_version is not None else NO_PRICE
        run = CachedRiskRun(run_risk_model(asset, located, price), self.settings)
        with self._lock:
            self.risk_runs += 1
            self._slots.hold(located.version).risk = run
        return run

    def _price_risk(self, asset: str) -> PriceRisk:
        """VaR and p_up of the active price version's run (this process's, else one run); none
        when it cannot forecast (a risk answer never fails for the price model's sake)."""
        try:
            run = self._load(asset, None)
        except NoModelError:
            return NO_PRICE
        except (ArtifactError, NoDataError, HorizonExceedsModelError) as exc:
            log.warning("no VaR beside the %s risk forecast: %s", asset, exc)
            return NO_PRICE
        return price_risk(run.run.version.version_id, run.points_at(PRICE_LEVEL))

    # --- one answer path for both families: a held run, its answer, its ledger rows -------

    def _hit(
        self,
        run: ServedRun | None,
        version: int | None,
        state: AssetState,
        request: ServedRequest,
        now: datetime,
        queue: LedgerQueue,
    ) -> dict[str, Any] | None:
        """The answer of a held run if it still answers for ``state``: lock-free, no I/O."""
        if run is None or not run.current(state):
            return None
        # try rather than contextlib.suppress: no context manager built per hot request.
        try:  # noqa: SIM105
            self._slots.move_to_end(version)  # type: ignore[arg-type]
        except KeyError:  # evicted meanwhile: the run is still a valid answer
            pass
        return self._answer(run, request, now, queue)

    async def _landed(
        self,
        flight: asyncio.Future[RunT],
        request: ServedRequest,
        now: datetime,
        queue: LedgerQueue,
    ) -> dict[str, Any]:
        """The request's answer once its computation lands; its ledger rows written first."""
        # Shielded: a waiter that goes away does not cancel the others' computation.
        payload = self._answer(await asyncio.shield(flight), request, now, queue)
        writer = queue.kick()
        if writer is not None:
            await asyncio.shield(writer)
        return payload

    def _answer(
        self, run: ServedRun, request: ServedRequest, now: datetime, queue: LedgerQueue
    ) -> dict[str, Any]:
        """The request's answer from a run; its horizons enter the ledger once per run."""
        payload = run.payload(self.settings, request.horizon, request.level, now)
        if request.horizon > run.recorded:
            self._note(run, request.horizon, now, queue)
        return payload

    def _note(self, run: ServedRun, horizon: int, now: datetime, queue: LedgerQueue) -> None:
        """Queue the ledger rows (90% intervals) of horizons this run has not recorded."""
        with self._lock:
            start, run.recorded = run.recorded, max(run.recorded, horizon)
        if horizon <= start:
            return
        try:
            rows = run.ledger_rows(self.settings, start, horizon, now)
        except BtcpError as exc:  # no 90% interval here: nothing the ledger can score
            log.warning("%s not recorded in the ledger: %s", run.what, exc)
            return
        queue.add(rows)
        queue.kick()


def _ingest_marks(states: dict[str, AssetState]) -> dict[str, int]:
    """Each asset's newest successful ingest run (what its stored-data summary is keyed by);
    the poll reads it for every asset with stored candles, tracked or not."""
    return {
        asset: state.data_mark[0]
        for asset, state in states.items()
        if state.data_mark is not None and state.data_mark[0] is not None
    }


def _why(exc: Exception) -> str:
    """A load failure in one line (a domain error's own message, else the exception's)."""
    if isinstance(exc, BtcpError):
        return exc.message
    first = (str(exc).splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {first}"


class Outage:
    """Logs a failing background task once per change of state, not once per attempt (an
    outage polled every second would otherwise write a traceback a second)."""

    def __init__(self, what: str, logger: logging.Logger) -> None:
        self.what, self.log = what, logger
        self.kind: str | None = None
        self.since = 0.0

    def failed(self, exc: Exception) -> None:
        """One attempt failed: log it if this is a new kind of failure."""
        # Refused, reset, stalled: one state ("the database is down"), however it shows.
        down = is_unavailable(exc) or isinstance(exc, BtcpError)
        kind = "unavailable" if down else type(exc).__name__
        if kind == self.kind:
            return
        if self.kind is None:
            self.since = time.monotonic()
        self.kind = kind
        if down:
            self.log.warning("%s failing: %s", self.what, str(exc).splitlines()[0][:300])
        else:  # not the database: a bug, with its traceback (once)
            self.log.error("%s failing", self.what, exc_info=exc)

    def ended(self) -> None:
        """An attempt succeeded: log the recovery if it was failing."""
        if self.kind is not None:
            elapsed = time.monotonic() - self.since
            self.log.warning("%s recovered after %.1f s", self.what, elapsed)
            self.kind = None
