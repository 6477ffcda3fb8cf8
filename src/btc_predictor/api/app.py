"""``create_app(settings)``: the FastAPI application, its error table and middleware."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from btc_predictor import __version__, errors, telemetry
from btc_predictor.api.auth import resolve_api_key
from btc_predictor.api.hot import hot_routes
from btc_predictor.api.metrics import HealthCollector
from btc_predictor.api.routing import route_templates
from btc_predictor.api.state import ServingState
from btc_predictor.config import Settings
from btc_predictor.logs import AccessLine
from btc_predictor.sources.base import utc_now
from btc_predictor.storage.db import create_db_engine, upgrade

log = logging.getLogger("btc_predictor.api")

# The one place domain errors become HTTP statuses (codes are the errors' own).
ERROR_STATUS: dict[type[errors.BtcpError], int] = {
    errors.InvalidInputError: 422,
    errors.NotFoundError: 404,
    errors.ConflictError: 409,
    errors.DataSourceError: 502,
    errors.ArtifactError: 503,
    errors.UnavailableError: 503,
}


def status_for(exc: errors.BtcpError) -> int:
    """The HTTP status of a domain error (the most specific entry of the table)."""
    for cls in type(exc).__mro__:
        if cls in ERROR_STATUS:
            return ERROR_STATUS[cls]
    return 500


def error_body(detail: str, code: str, **extra: Any) -> dict[str, Any]:
    """The JSON error shape every failure uses."""
    return {"detail": detail, "code": code, **extra}


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
    db = engine or create_db_engine(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
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
            telemetry.process_exited(settings.metrics_dir)
            if owned:
                db.dispose()

    app = FastAPI(
        # Metrics are Prometheus' (telemetry.py); FastAPI's OpenTelemetry hooks stay off
        # rather than probing for a provider on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        title="btc-predictor",
        version=__version__,
        lifespan=lifespan,
        description="Honest crypto price forecasts: every number next to the naive forecast.",
    )
    app.state.settings, app.state.engine, app.state.api_key = settings, db, api_key
    app.state.clock = clock
    app.state.route_templates = {}  # filled once every route is in (the metrics' labels)
    app.state.serving = ServingState(settings, db)
    app.state.health = HealthCollector(
        settings, db, forecast=app.state.serving.forecast, clock=clock
    )
    _install_errors(app)
    _install_middleware(app, settings)
    if hot_paths:
        app.router.routes.extend(hot_routes())
    _include_routes(app)
    app.state.route_templates.update(route_templates(app.routes))
    _document_limits(app, settings)
    return app


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
    return create_app(settings)


def _install_errors(app: FastAPI) -> None:
    """Domain errors, validation errors and HTTP errors all answer with the same JSON shape."""

    @app.exception_handler(errors.BtcpError)
    async def domain(_: Request, exc: errors.BtcpError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, exc.code), status_code=status_for(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [_problem(e) for e in exc.errors()]
        detail = "; ".join(f"{p['loc']}: {p['msg']}" for p in problems) or "invalid request"
        return JSONResponse(
            error_body(detail, "invalid_parameter", errors=problems), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {
            401: "unauthorized",
            404: "not_found",
            405: "method_not_allowed",
            413: "too_large",
        }.get(exc.status_code, "error")
        return JSONResponse(
            error_body(str(exc.detail), code),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(OperationalError)
    async def database(_: Request, exc: OperationalError) -> JSONResponse:
        log.error("database unavailable: %s", str(exc).splitlines()[0])
        return JSONResponse(error_body("database unavailable", "unavailable"), status_code=503)


def _problem(error: Any) -> dict[str, Any]:
    """One validation problem, JSON-safe."""
    loc = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "body", "path"))
    return {
        "loc": loc or "request",
        "msg": str(error.get("msg", "invalid")),
        "type": str(error.get("type", "value_error")),
    }


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
        started = time.perf_counter()
        status = 500

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
        if length is not None and (not length.isdigit() or int(length) > self.cap):
            body = error_body(f"request body over {self.cap} bytes", "too_large")
            await JSONResponse(body, status_code=413)(scope, receive, tagged)
        else:
            await self.app(scope, self._capped(receive), tagged)
        self._log(scope, status, time.perf_counter() - started, request_id)

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

    app.include_router(legacy.router)
    app.include_router(health.router)
    app.include_router(v1.router, prefix="/api/v1")
    ui.mount(app)
