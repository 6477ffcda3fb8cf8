"""``create_app(settings)``: the FastAPI application and its middleware.

Errors become HTTP problems in :mod:`btc_predictor.api.errors_http`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from btc_predictor import __version__, telemetry
from btc_predictor.api.auth import resolve_api_key
from btc_predictor.api.errors_http import REQUEST_ID, install_errors, problem_response
from btc_predictor.api.hot import hot_routes
from btc_predictor.api.metrics import HealthCollector
from btc_predictor.api.routing import answer_head, route_templates
from btc_predictor.api.schemas import ERRORS
from btc_predictor.api.state import Outage, ServingState
from btc_predictor.api.stopping import watch_stop_signals
from btc_predictor.config import Settings
from btc_predictor.logs import AccessLine
from btc_predictor.sources.base import utc_now
from btc_predictor.storage.db import create_api_engine, create_health_engine, upgrade

log = logging.getLogger("btc_predictor.api")

# What the access log and metrics record for a request whose client went away before any
# answer (nginx's convention): not a server error, so it stays out of the 5xx ratio.
CLIENT_GONE = 499


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    clock: Callable[[], datetime] = utc_now,
    hot_paths: bool = True,
) -> FastAPI:
    """Build the API for ``settings`` (the engine is created, migrated and disposed by it).

    ``hot_paths=False`` leaves /predict and /api/v1/forecast to their FastAPI declarations
    (tests compare the two).
    """
    api_key = resolve_api_key(settings)
    owned = engine is None
    db = engine or create_api_engine(settings)
    probes = create_health_engine(db, settings)
    app = FastAPI(
        # Every operation documents its 422 as the problem shape (FastAPI would otherwise
        # add its own HTTPValidationError to each operation that takes parameters).
        responses={422: ERRORS[422]},
        # Metrics are Prometheus' (telemetry.py); FastAPI's OpenTelemetry hooks stay off
        # rather than probing for a provider on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        title="btc-predictor",
        version=__version__,
        lifespan=_lifespan(settings, db, probes, owned=owned),
        description="Honest crypto price forecasts: every number next to the naive forecast.",
    )
    _attach_state(app, settings, db, probes, api_key=api_key, clock=clock)
    install_errors(app)
    _install_middleware(app, settings)
    if hot_paths:
        app.router.routes.extend(hot_routes())
    _include_routes(app)
    app.state.route_templates.update(route_templates(app.routes))
    _document_limits(app, settings)
    return app


def _lifespan(
    settings: Settings, db: Engine, probes: Engine, *, owned: bool
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Startup (migrate, load versions, start pollers) and shutdown (settle, dispose engines)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        watch_stop_signals()  # pending long waits answer when a stop begins
        await asyncio.to_thread(upgrade, db)
        await asyncio.to_thread(app.state.serving.refresh)
        tasks = [
            asyncio.create_task(app.state.serving.poll_forever()),
            asyncio.create_task(_track_usage(telemetry.ProcessUsage())),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # a running refresh ends
            await app.state.serving.ledger.settle()  # forecasts served last
            await app.state.serving.risk_ledger.settle()
            telemetry.process_exited(settings.metrics_dir)
            if probes is not db:
                probes.dispose()
            if owned:
                db.dispose()

    return lifespan


def _attach_state(
    app: FastAPI,
    settings: Settings,
    db: Engine,
    probes: Engine,
    *,
    api_key: str,
    clock: Callable[[], datetime],
) -> None:
    """What routes and middleware read from ``app.state``: settings, engines, serving state."""
    app.state.settings, app.state.engine, app.state.api_key = settings, db, api_key
    app.state.health_engine = probes
    app.state.probe_outage = Outage("database probe", log)
    app.state.clock = clock
    app.state.route_templates = {}  # filled once every route is in (the metrics' labels)
    app.state.serving = ServingState(settings, db)
    app.state.health = HealthCollector(
        settings, db, forecast=app.state.serving.forecast, clock=clock
    )


def _document_limits(app: FastAPI, settings: Settings) -> None:
    """Publish the configured horizon limit (routes are declared before settings exist)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    for param in operation.get("parameters", []):
                        if param["name"] == "horizon":
                            param["schema"]["maximum"] = settings.max_horizon
            body = schema.get("components", {}).get("schemas", {}).get("BacktestRequest")
            if body is not None:
                body["properties"]["horizon"]["maximum"] = settings.max_horizon
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def app_from_environment() -> FastAPI:
    """uvicorn's factory for ``serve --workers N``: settings come from the environment."""
    from btc_predictor.config import get_settings
    from btc_predictor.logs import configure_logging

    settings = get_settings()
    configure_logging(settings)
    if settings.supervisor_pid not in (None, os.getpid()):  # a `serve --workers N` child
        from btc_predictor.jobs.lifeline import exit_with_parent

        exit_with_parent(settings.supervisor_pid)
    return create_app(settings)


async def _track_usage(usage: telemetry.ProcessUsage, interval: float = 5.0) -> None:
    """Keep this process's CPU and memory gauges current."""
    while True:
        usage.update()
        await asyncio.sleep(interval)


def _install_middleware(app: FastAPI, settings: Settings) -> None:
    """Request ids, access log, body-size cap; CORS only for configured origins."""
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(
        Envelope,
        metrics=telemetry.RequestMetrics(),
        cap=settings.max_body_bytes,
        templates=app.state.route_templates,
    )


class Envelope:
    """Pure ASGI middleware: request id, one log line per request, body cap, metrics.

    Not ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware runs every request through
    an extra task and stream, which was the largest cost measured on the /predict hot path.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: telemetry.RequestMetrics,
        cap: int,
        templates: dict[int, str],
    ) -> None:
        self.app, self.metrics, self.cap, self.templates = app, metrics, cap, templates
        self.access = AccessLine(log)
        # Ids are a random per-process prefix and a counter: unique without a urandom call
        # per request (uuid4 was ~8 µs of a ~50 µs request).
        self._prefix, self._serial = uuid.uuid4().hex[:16], itertools.count(1)

    def _new_id(self) -> str:
        """A request id unique across processes and restarts."""
        return f"{self._prefix}{next(self._serial):016x}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Wrap one HTTP exchange; other scopes pass through."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:128] or self._new_id()
        scope[REQUEST_ID] = request_id
        started = time.perf_counter()
        status = 0  # no response started yet

        async def tagged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        length = headers.get(b"content-length")
        gone = False
        try:
            if length is not None and (not length.isdigit() or int(length) > self.cap):
                too_large = problem_response(
                    scope, 413, f"request body over {self.cap} bytes", "too_large"
                )
                await too_large(scope, receive, tagged)
            else:
                await self.app(scope, self._capped(receive), tagged)
        except Exception:
            # A bug: logged with its request id, counted, answered as a problem too
            # (Starlette's own 500 would be plain text, without the id).
            log.exception("internal error (request_id=%s)", request_id)
            if status == 0:
                internal = problem_response(
                    scope, 500, f"internal error (request id {request_id})", "internal"
                )
                await internal(scope, receive, tagged)
        except BaseException:  # cancelled: the client went away or the server is stopping
            gone = True
            raise
        finally:
            # Every request is logged and counted, however it ended.
            final = status or (CLIENT_GONE if gone else 500)
            self._log(scope, final, time.perf_counter() - started, request_id)

    def _capped(self, receive: Receive) -> Receive:
        """``receive`` that stops a body growing past the cap while it streams in (chunked
        bodies declare no length); the error handlers turn that into the JSON 413."""
        received = 0

        async def capped() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.cap:
                raise StarletteHTTPException(413, f"request body over {self.cap} bytes")
            return message

        return capped

    def _log(self, scope: Scope, status: int, elapsed: float, request_id: str) -> None:
        """Count the request (by route template) and write its access line."""
        method, path = scope["method"], scope["path"]
        route = scope.get("route")
        endpoint = self.templates.get(id(route)) or getattr(route, "path", None)
        self.metrics.observe(method, endpoint, status, elapsed)
        ms = round(elapsed * 1000, 2)
        fields = {
            "request_id": request_id,
            "method": method,
            "path": path,
            "status": status,
            "ms": ms,
        }
        self.access(f"{method} {path} {status} {ms:.2f}ms id={request_id}", fields)


def _include_routes(app: FastAPI) -> None:
    """Every router, in one list."""
    from btc_predictor.api.routes import health, legacy, ui, v1

    app.include_router(answer_head(legacy.router))
    app.include_router(answer_head(health.router))
    app.include_router(v1.router, prefix="/api/v1")
    ui.mount(app)
