"""What an API process holds in memory: loaded models and computed forecasts.

A forecast depends only on (asset, model version, data cutoff, horizon, level), so it is
computed once and served from memory. A poller reads the cheap "state" (active version and
newest candle per asset) every ``BTCP_STATE_POLL``; when it changes — another process
promoted a version or ingested data — that asset's cached forecasts are dropped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from btc_predictor.config import Settings
from btc_predictor.errors import BtcpError, UnavailableError
from btc_predictor.services import ledger
from btc_predictor.services.forecast import (
    AssetState,
    LoadedVersion,
    asset_states,
    check_request,
    load_stored_version,
    make_forecast,
    prepare,
)
from btc_predictor.shapes.requests import ForecastRequest
from btc_predictor.shapes.results import Forecast
from btc_predictor.sources.base import DAY, data_age
from btc_predictor.storage.db import is_unavailable

log = logging.getLogger(__name__)
# (asset, version, cutoff, horizon, level)
CacheKey = tuple[str, int, datetime, int, int]


class ServingState:
    """Loaded models, cached forecasts, and the poller that keeps them current."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._lock = threading.Lock()
        self._versions: dict[int, LoadedVersion] = {}
        self._forecasts: dict[CacheKey, dict[str, Any]] = {}
        self._states: dict[str, AssetState] = {}
        # Why a version could not be loaded (its artifacts fail their checks), by version id:
        # found when the poller first sees it active, and reported by /health.
        self._load_errors: dict[int, str] = {}

    def read_states(self) -> dict[str, AssetState]:
        """Active version and newest candle per asset, straight from the database."""
        return asset_states(self.engine)

    def refresh(self) -> None:
        """Drop cached forecasts of assets whose state changed since the last poll."""
        states = self.read_states()
        with self._lock:
            changed = {
                a for a in set(states) | set(self._states) if states.get(a) != self._states.get(a)
            }
            if changed:
                self._forecasts = {k: v for k, v in self._forecasts.items() if k[0] not in changed}
            self._states = states
        self._load_active(states)

    def _load_active(self, states: dict[str, AssetState]) -> None:
        """Load each tracked asset's active version once, so a damaged one is known at once."""
        for asset in self.settings.assets:
            version = states[asset].active_version if asset in states else None
            if version is None or version in self._versions or version in self._load_errors:
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
                self._versions[version] = loaded

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
        """A cached forecast for the request when its asset's state is known (no I/O)."""
        if request.model is not None:
            return None
        state = self._states.get(request.asset)
        if state is None or state.active_version is None or state.last_candle is None:
            return None
        hit = self._forecasts.get(
            (request.asset, state.active_version, state.last_candle, request.horizon, request.level)
        )
        return None if hit is None else self._aged(hit, now)

    def forecast(self, request: ForecastRequest, now: datetime) -> dict[str, Any]:
        """The forecast object for a request: from memory, else computed (blocking I/O)."""
        check_request(self.settings, request)
        hit = self.cached(request, now)
        if hit is not None:
            return hit
        result, payload = self._compute(request, now)
        self._record(request, result, now)
        return payload

    def _compute(self, request: ForecastRequest, now: datetime) -> tuple[Forecast, dict[str, Any]]:
        """Load the version (once per process) and the recent candles, then forecast; the
        forecast and its JSON, which is cached when it is the active version's."""
        loaded, candles = prepare(
            self.settings, self.engine, request.asset, request.model, loaded=self._versions
        )
        version_id = loaded.version_id
        with self._lock:
            self._versions[version_id] = loaded
        result = make_forecast(self.settings, request.asset, loaded, candles, request, now=now)
        payload = result.model_dump(mode="json")
        key = (request.asset, version_id, candles[-1].ts, request.horizon, request.level)
        if request.model is None and self._states.get(request.asset) == AssetState(
            version_id, candles[-1].ts
        ):
            with self._lock:
                self._forecasts[key] = payload
        return result, payload

    def _record(self, request: ForecastRequest, result: Forecast, now: datetime) -> None:
        """Put the served forecast in the ledger (with its 90% interval) once."""
        entry = result
        if request.level != ledger.LEDGER_LEVEL:
            ninety = request.model_copy(update={"level": ledger.LEDGER_LEVEL})
            entry = self._compute(ninety, now)[0]
        try:
            ledger.record_forecast(self.engine, entry, now=now)
        except Exception:  # the ledger must never cost the user their forecast
            log.exception("could not record forecast in the ledger")

    def _aged(self, payload: dict[str, Any], now: datetime) -> dict[str, Any]:
        """A cached forecast with its data age brought up to ``now``."""
        age = data_age(datetime.fromisoformat(payload["as_of"]) - DAY, now)
        return {**payload, "data_age_seconds": age, "stale": self.settings.is_stale(age)}


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
