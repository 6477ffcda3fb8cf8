"""What an API process holds in memory: loaded model versions and their model runs.

A forecast depends only on (asset, version, data) and the request's (horizon, level). One
model run per (version, newest candle, data mark) gives the whole path, and every horizon and
level derives from it (``services.forecast.ModelRun``); its JSON pieces are memoised per level.
Versions and their runs share one LRU of ``BTCP_MAX_LOADED_MODELS`` entries.

A poller reads the cheap "state" every ``BTCP_STATE_POLL``: per asset the active version,
newest candle, newest successful ingest run and newest usable version of each model kind.
Requests resolve their run through it, so after another process promotes, rolls back,
ingests, trains or prunes, the next poll moves every request to the new run (runs nothing
can reach any more are dropped). Identical misses share one computation, and served
forecasts reach the ledger in batches, off the request path.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from btc_predictor.api.risk_cache import CachedRiskRun
from btc_predictor.config import Settings
from btc_predictor.errors import (
    ArtifactError,
    BtcpError,
    HorizonExceedsModelError,
    NoDataError,
    NoModelError,
    UnavailableError,
)
from btc_predictor.services import ledger
from btc_predictor.services.forecast import (
    AssetState,
    LoadedVersion,
    ModelRun,
    asset_states,
    check_horizon,
    check_request,
    load_stored_version,
    locate,
    run_model,
)
from btc_predictor.services.ingest import AssetSummaries
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
from btc_predictor.sources.base import data_age
from btc_predictor.storage.db import is_unavailable

log = logging.getLogger(__name__)
# (asset, model, version, newest candle, data mark) as this process knows them
FlightKey = tuple[str, str | None, int | None, datetime | None, int | None]
# ... and the active price version, for a risk run (its VaR comes from that version)
RiskFlightKey = tuple[str, str | None, int | None, datetime | None, int | None, int | None]
_HEAD = ("asset", "model", "model_version", "as_of", "last_close", "last_date")
_INTERVALS = ("interval_method", "risk_model_version", "interval_note")  # after ``level``


class CachedRun:
    """A model run as this process serves it: its JSON per level and its ledger progress."""

    __slots__ = ("data_mark", "head", "intervals", "last_ts", "levels", "recorded", "run")

    def __init__(self, run: ModelRun, settings: Settings) -> None:
        self.run = run
        self.last_ts, self.data_mark = run.last_ts, run.data_mark
        shape = run.shape(settings, [], ledger.LEDGER_LEVEL, now=run.last_ts)
        dumped = shape.model_dump(mode="json")
        self.head = {name: dumped[name] for name in _HEAD}
        self.intervals = {name: dumped[name] for name in _INTERVALS}
        self.levels: dict[int, list[dict[str, Any]]] = {}
        self.recorded = 0  # horizons 1..recorded are in the ledger or queued for it

    def payload(
        self, settings: Settings, horizon: int, level: int, now: datetime
    ) -> dict[str, Any]:
        """The forecast object of (horizon, level), exactly ``Forecast.model_dump(mode="json")``."""
        points = self.levels.get(level)
        if points is None:
            points = self._points(level)
        if horizon > len(points):  # refused as a fresh computation refuses it
            points = [p.model_dump(mode="json") for p in self.run.points(horizon, level)]
        age = data_age(self.last_ts, now)
        return {
            **self.head,
            "data_age_seconds": age,
            "stale": settings.is_stale(age),
            "level": level,
            **self.intervals,
            "points": points[:horizon],
        }

    def points_at(self, level: int) -> list[dict[str, Any]]:
        """Every horizon servable at ``level`` as JSON (what risk answers read VaR from)."""
        points = self.levels.get(level)
        return self._points(level) if points is None else points

    def _points(self, level: int) -> list[dict[str, Any]]:
        """Every horizon servable at ``level`` as JSON (computed once per level)."""
        usable = self.run.path.usable(level)
        points = [p.model_dump(mode="json") for p in self.run.points(usable, level)]
        self.levels[level] = points
        return points


class _Slot:
    """One loaded version in the LRU and its run on the current data, once computed (a price
    version's ``run``, or a risk version's ``risk``)."""

    __slots__ = ("loaded", "risk", "run")

    def __init__(self, loaded: LoadedVersion | LoadedRisk) -> None:
        self.loaded = loaded
        self.run: CachedRun | None = None
        self.risk: CachedRiskRun | None = None


class LedgerQueue:
    """Ledger rows of served forecasts, written in batches by one background writer."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._rows: list[dict[str, Any]] = []
        self._writer: asyncio.Task[None] | None = None

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Queue rows (no I/O)."""
        with self._lock:
            self._rows.extend(rows)

    def kick(self) -> asyncio.Task[None] | None:
        """The background writer, started on the running event loop when none is writing;
        None outside an event loop (the caller then flushes itself)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        with self._lock:
            # A writer cancelled with its event loop (a shutdown) never cleared itself.
            if self._writer is None or self._writer.done() or self._writer.get_loop() is not loop:
                self._writer = loop.create_task(self._drain())
            return self._writer

    def flush(self) -> None:
        """Write every queued row now (blocking)."""
        while rows := self._take():
            self._write(rows)

    async def _drain(self) -> None:
        """Write batches off the event loop until the queue is empty."""
        while True:
            with self._lock:
                rows, self._rows = self._rows, []
                if not rows:
                    self._writer = None
                    return
            await asyncio.to_thread(self._write, rows)

    def _take(self) -> list[dict[str, Any]]:
        """Everything queued, leaving the queue empty."""
        with self._lock:
            rows, self._rows = self._rows, []
            return rows

    def _write(self, rows: list[dict[str, Any]]) -> None:
        """One batch in one transaction (repeats are skipped by the table's key)."""
        try:
            self._record(rows)
        except Exception:  # the ledger must never cost the user their forecast
            log.exception("could not record %d forecast points in the ledger", len(rows))

    def _record(self, rows: list[dict[str, Any]]) -> None:
        """Write one batch (looked up per call, so tests can hold the writer)."""
        ledger.record_rows(self.engine, rows)


class RiskLedgerQueue(LedgerQueue):
    """Risk ledger rows of served risk forecasts, written like the forecast ledger's."""

    def _record(self, rows: list[dict[str, Any]]) -> None:
        """Write one batch into ``risk_predictions``."""
        ledger.record_risk_rows(self.engine, rows)


class ServingState:
    """Loaded versions and their runs (one LRU), and the poller that keeps them current."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._lock = threading.Lock()  # writers of _slots, _states and ledger progress
        self._slots: OrderedDict[int, _Slot] = OrderedDict()
        self._states: dict[str, AssetState] = {}
        self._flights: dict[FlightKey, asyncio.Future[CachedRun]] = {}
        self._risk_flights: dict[RiskFlightKey, asyncio.Future[CachedRiskRun]] = {}
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
            self._states = states
            for asset in changed:
                self._forget(asset, states.get(asset))
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
                self._hold(loaded)

    def load_error(self, version_id: int) -> str | None:
        """Why ``version_id`` could not be loaded here (None: loaded, or not tried yet)."""
        return self._load_errors.get(version_id)

    async def poll_forever(self) -> None:
        """Refresh every BTCP_STATE_POLL until cancelled (errors are logged, not fatal)."""
        interval = self.settings.state_poll.total_seconds()
        outage = Outage("state poll", log)
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception as exc:  # a database hiccup must not kill the poller
                outage.failed(exc)
            else:
                outage.ended()

    def cached(self, request: ForecastRequest, now: datetime) -> dict[str, Any] | None:
        """The forecast derived from this process's run for the request's state (no I/O).

        The hot path of every cached answer: lock-free lookups only, kept inline.
        """
        state = self._states.get(request.asset)
        if state is None or request.horizon > self.settings.max_horizon:
            return None  # horizons beyond the setting are refused by ``compute``
        model = request.model
        version = state.active_version if model is None else state.version_for(model)
        slot = self._slots.get(version) if version is not None else None
        run = None if slot is None else slot.run
        if run is None or run.last_ts != state.last_candle or run.data_mark != state.data_mark:
            return None
        # try rather than contextlib.suppress: no context manager built per hot request.
        try:  # noqa: SIM105
            self._slots.move_to_end(version)  # type: ignore[arg-type]
        except KeyError:  # evicted meanwhile: the run is still a valid answer
            pass
        payload = run.payload(self.settings, request.horizon, request.level, now)
        if request.horizon > run.recorded:
            self._note(run, request.horizon, now)
        return payload

    async def compute(self, request: ForecastRequest, now: datetime) -> dict[str, Any]:
        """A forecast no cached run answers: identical misses share one computation, run in
        a worker thread; the caller's ledger rows are written before it returns."""
        check_request(self.settings, request)
        key = self._flight_key(request)
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(
                run_in_threadpool(self._load, request.asset, request.model)
            )
            self._flights[key] = flight
            flight.add_done_callback(lambda done: self._land(key, done))
        # Shielded: a waiter that goes away does not cancel the others' computation.
        payload = self._answer(await asyncio.shield(flight), request, now)
        writer = self.ledger.kick()
        if writer is not None:
            await asyncio.shield(writer)
        return payload

    def forecast(self, request: ForecastRequest, now: datetime) -> dict[str, Any]:
        """The forecast object for a request: from memory, else computed here (blocking I/O)."""
        check_request(self.settings, request)
        payload = self.cached(request, now)
        if payload is None:
            payload = self._answer(self._load(request.asset, request.model), request, now)
        self.ledger.flush()
        return payload

    def _flight_key(self, request: ForecastRequest) -> FlightKey:
        """What identical misses share: the request's run as this process knows it."""
        state = self._states.get(request.asset)
        if state is None:
            return (request.asset, request.model, None, None, None)
        version = state.version_for(request.model)
        return (request.asset, request.model, version, state.last_candle, state.data_mark)

    def _land(self, key: FlightKey, done: asyncio.Future[CachedRun]) -> None:
        """A computation ended: later misses start their own."""
        if self._flights.get(key) is done:
            del self._flights[key]

    def _load(self, asset: str, model: str | None) -> CachedRun:
        """The run serving (asset, model) on the stored data: this process's when it has that
        run, else one model run (blocking: database reads and ONNX)."""
        with self._lock:
            loaded = {
                version_id: slot.loaded
                for version_id, slot in self._slots.items()
                if isinstance(slot.loaded, LoadedVersion)
            }
        located = locate(self.settings, self.engine, asset, model, loaded=loaded)
        slot = self._slots.get(located.version.version_id)
        if slot is not None and slot.run is not None and slot.run.run.key == located.key:
            return slot.run
        run = CachedRun(run_model(asset, located), self.settings)
        with self._lock:
            self.model_runs += 1
            self._keep(located.version, run)
        return run

    def _keep(self, loaded: LoadedVersion, run: CachedRun) -> None:
        """Hold a version's newest run as the most recently used entry (evicting the least)."""
        self._hold(loaded).run = run

    def _hold(self, loaded: LoadedVersion | LoadedRisk) -> _Slot:
        """The version's slot, made the most recently used (the least used one evicted)."""
        slot = self._slots.get(loaded.version_id)
        if slot is None:
            slot = self._slots[loaded.version_id] = _Slot(loaded)
        self._slots.move_to_end(loaded.version_id)
        while len(self._slots) > self.settings.max_loaded_models:
            self._slots.popitem(last=False)
        return slot

    def _forget(self, asset: str, state: AssetState | None) -> None:
        """Drop the versions of ``asset`` no request resolves to now, and runs on old data."""
        wanted = set() if state is None else state.wanted()
        for version_id, slot in list(self._slots.items()):
            if slot.loaded.asset != asset:
                continue
            if state is None or version_id not in wanted:
                self._slots.pop(version_id, None)
                continue
            if slot.run is not None and (
                slot.run.last_ts != state.last_candle or slot.run.data_mark != state.data_mark
            ):
                slot.run = None
            if slot.risk is not None and not _risk_current(slot.risk, state):
                slot.risk = None

    def _answer(self, run: CachedRun, request: ForecastRequest, now: datetime) -> dict[str, Any]:
        """The request's forecast from a run; its horizons enter the ledger once per run."""
        payload = run.payload(self.settings, request.horizon, request.level, now)
        if request.horizon > run.recorded:
            self._note(run, request.horizon, now)
        return payload

    def _note(self, run: CachedRun, horizon: int, now: datetime) -> None:
        """Queue the ledger rows (90% intervals) of horizons this run has not recorded."""
        with self._lock:
            start, run.recorded = run.recorded, max(run.recorded, horizon)
        if horizon <= start:
            return
        try:
            ninety = run.run.forecast(self.settings, horizon, ledger.LEDGER_LEVEL, now=now)
        except BtcpError as exc:  # no 90% interval here: nothing the ledger can score
            log.warning("forecast not recorded in the ledger: %s", exc)
            return
        fresh = ninety.model_copy(update={"points": ninety.points[start:]})
        self.ledger.add(ledger.entry_rows(fresh, now=now))
        self.ledger.kick()

    # --- risk forecasts (GET /api/v1/risk): the same LRU, state and coalescing ------------

    def cached_risk(self, request: RiskRequest, now: datetime) -> dict[str, Any] | None:
        """The risk forecast derived from this process's risk run for the request's state
        (no I/O): the hot path of every cached risk answer, kept inline like ``cached``."""
        state = self._states.get(request.asset)
        if state is None or request.horizon > self.settings.max_horizon:
            return None  # horizons beyond the setting are refused by ``compute_risk``
        model = request.model
        version = state.risk_version if model is None else state.risk_version_for(model)
        slot = self._slots.get(version) if version is not None else None
        run = None if slot is None else slot.risk
        if (
            run is None
            or run.last_ts != state.last_candle
            or run.data_mark != state.data_mark
            or run.price_version != state.active_version
        ):
            return None
        try:  # noqa: SIM105
            self._slots.move_to_end(version)  # type: ignore[arg-type]
        except KeyError:  # evicted meanwhile: the run is still a valid answer
            pass
        payload = run.payload(self.settings, request.horizon, request.level, now)
        if request.horizon > run.recorded:
            self._note_risk(run, request.horizon, now)
        return payload

    async def compute_risk(self, request: RiskRequest, now: datetime) -> dict[str, Any]:
        """A risk forecast no cached run answers: identical misses share one computation, run
        in a worker thread; the caller's risk ledger rows are written before it returns."""
        check_horizon(self.settings, request.horizon)
        key = self._risk_flight_key(request)
        flight = self._risk_flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(
                run_in_threadpool(self._load_risk, request.asset, request.model)
            )
            self._risk_flights[key] = flight
            flight.add_done_callback(lambda done: self._land_risk(key, done))
        run = await asyncio.shield(flight)
        payload = self._answer_risk(run, request, now)
        writer = self.risk_ledger.kick()
        if writer is not None:
            await asyncio.shield(writer)
        return payload

    def risk(self, request: RiskRequest, now: datetime) -> dict[str, Any]:
        """The risk object for a request: from memory, else computed here (blocking I/O)."""
        check_horizon(self.settings, request.horizon)
        payload = self.cached_risk(request, now)
        if payload is None:
            payload = self._answer_risk(self._load_risk(request.asset, request.model), request, now)
        self.risk_ledger.flush()
        return payload

    def _risk_flight_key(self, request: RiskRequest) -> RiskFlightKey:
        """What identical risk misses share: the request's risk run as this process knows it."""
        state = self._states.get(request.asset)
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

    def _land_risk(self, key: RiskFlightKey, done: asyncio.Future[CachedRiskRun]) -> None:
        """A risk computation ended: later misses start their own."""
        if self._risk_flights.get(key) is done:
            del self._risk_flights[key]

    def _load_risk(self, asset: str, model: str | None) -> CachedRiskRun:
        """The risk run serving (asset, model) on the stored data: this process's when it has
        that run, else one risk model run (blocking: database reads and numpy)."""
        with self._lock:
            loaded = {
                version_id: slot.loaded
                for version_id, slot in self._slots.items()
                if isinstance(slot.loaded, LoadedRisk)
            }
        located = locate_risk(self.settings, self.engine, asset, model, loaded=loaded)
        slot = self._slots.get(located.version.version_id)
        if slot is not None and slot.risk is not None and slot.risk.run.key == located.key:
            return slot.risk
        price = self._price_risk(asset) if located.price_version is not None else NO_PRICE
        run = CachedRiskRun(run_risk_model(asset, located, price), self.settings)
        with self._lock:
            self.risk_runs += 1
            self._hold(located.version).risk = run
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

    def _answer_risk(
        self, run: CachedRiskRun, request: RiskRequest, now: datetime
    ) -> dict[str, Any]:
        """The request's risk forecast from a run; its horizons enter the ledger once per run."""
        payload = run.payload(self.settings, request.horizon, request.level, now)
        if request.horizon > run.recorded:
            self._note_risk(run, request.horizon, now)
        return payload

    def _note_risk(self, run: CachedRiskRun, horizon: int, now: datetime) -> None:
        """Queue the risk ledger rows (90% range intervals) of horizons not recorded yet."""
        with self._lock:
            start, run.recorded = run.recorded, max(run.recorded, horizon)
        if horizon <= start:
            return
        try:
            ninety = run.run.risk(self.settings, horizon, ledger.LEDGER_LEVEL, now=now)
        except BtcpError as exc:  # no 90% range interval here: nothing the ledger can score
            log.warning("risk forecast not recorded in the ledger: %s", exc)
            return
        fresh = ninety.model_copy(update={"points": ninety.points[start:]})
        p_up = run.run.p_up(horizon)[start:]
        version = run.run.price.version
        self.risk_ledger.add(
            ledger.risk_entry_rows(fresh, price_version=version, p_up=p_up, now=now)
        )
        self.risk_ledger.kick()


def _risk_current(run: CachedRiskRun, state: AssetState) -> bool:
    """Whether a risk run still answers for ``state``: same data, same active price version."""
    return (
        run.last_ts == state.last_candle
        and run.data_mark == state.data_mark
        and run.price_version == state.active_version
    )


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
