"""``create_app(settings)``: the FastAPI application, its error table and middleware."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
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
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from btc_predictor import __version__, errors, telemetry
from btc_predictor.api.auth import resolve_api_key
from btc_predictor.api.hot import hot_routes
from btc_predictor.api.metrics import HealthCollector
from btc_predictor.api.routing import allowed_methods, answer_head, route_templates
from btc_predictor.api.schemas import ERRORS, PROBLEM_JSON, ErrorResponse
from btc_predictor.api.state import Outage, ServingState
from btc_predictor.api.stopping import watch_stop_signals
from btc_predictor.config import Settings
from btc_predictor.logs import AccessLine
from btc_predictor.sources.base import utc_now
from btc_predictor.storage.db import (
    create_api_engine,
    create_health_engine,
    is_unavailable,
    upgrade,
)

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


# HTTP errors raised by Starlette, FastAPI or us, by status: (status answered, code).
HTTP_ERRORS: dict[int, tuple[int, str]] = {
    # FastAPI answers 400 when a body is JSON-typed but json.loads fails other than on syntax
    # (invalid UTF-8, nesting too deep, an integer too long): a malformed parameter like any other.
    400: (422, "invalid_parameter"),
    401: (401, "unauthorized"),
    404: (404, "not_found"),
    405: (405, "method_not_allowed"),
    413: (413, "too_large"),
}
# The scope key the envelope files the request id under, for the error bodies.
REQUEST_ID = "btcp.request_id"
DATABASE_UNAVAILABLE = "the database is unavailable or too slow; try again shortly"
# What the access log and metrics record for a request whose client went away before any
# answer (nginx's convention): not a server error, so it stays out of the 5xx ratio.
CLIENT_GONE = 499


class ProblemResponse(JSONResponse):
    """An RFC 9457 problem document."""

    media_type = PROBLEM_JSON


def error_body(
    status: int,
    detail: str,
    code: str,
    *,
    instance: str,
    request_id: str,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The problem every failure answers with (its shape is ``schemas.ErrorResponse``)."""
    problem = ErrorResponse(
        type=f"/problems/{code}",
        title=code.replace("_", " ").capitalize(),
        status=status,
        detail=detail,
        instance=instance,
        code=code,
        request_id=request_id,
        errors=errors,
    )
    return problem.model_dump(exclude_none=True)


def problem_response(
    scope: Scope,
    status: int,
    detail: str,
    code: str,
    *,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> ProblemResponse:
    """The error response to the request in ``scope``."""
    body = error_body(
        status,
        detail,
        code,
        instance=scope["path"],
        request_id=scope.get(REQUEST_ID, ""),
        errors=errors,
    )
    return ProblemResponse(body, status_code=status, headers=headers)


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
            await asyncio.to_thread(app.state.serving.ledger.flush)  # forecasts served last
            await asyncio.to_thread(app.state.serving.risk_ledger.flush)
            telemetry.process_exited(settings.metrics_dir)
            if probes is not db:
                probes.dispose()
            if owned:
                db.dispose()

    app = FastAPI(
        # Every operation documents its 422 as the problem shape (FastAPI would otherwise
        # add its own HTTPValidationError to each operation that takes parameters).
        responses={422: ERRORS[422]},
        # Metrics are Prometheus' (telemetry.py); FastAPI's OpenTelemetry hooks stay off
        # rather than probing for a provider on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        title="btc-predictor",
        version=__version__,
        lifespan=lifespan,
        description="Honest crypto price forecasts: every number next to the naive forecast.",
    )
    app.state.settings, app.state.engine, app.state.api_key = settings, db, api_key
    app.state.health_engine = probes
    app.state.probe_outage = Outage("database probe", log)
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
    if settings.supervisor_pid not in (None, os.getpid()):  # a `serve --workers N` child
        from btc_predictor.jobs.lifeline import exit_with_parent

        exit_with_parent(settings.supervisor_pid)
    return create_app(settings)


def _install_errors(app: FastAPI) -> None:
    """Domain, validation, HTTP and database errors all answer with the same problem shape."""

    @app.exception_handler(errors.BtcpError)
    async def domain(request: Request, exc: errors.BtcpError) -> JSONResponse:
        status = status_for(exc)
        # Every 422 lists its problems (DESIGN §7), a service's own checks included.
        problems = [{"loc": "request", "msg": exc.message, "type": "value_error"}]
        return problem_response(
            request.scope, status, exc.message, exc.code, errors=problems if status == 422 else None
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [_problem(e) for e in exc.errors()]
        detail = "; ".join(f"{p['loc']}: {p['msg']}" for p in problems) or "invalid request"
        return problem_response(request.scope, 422, detail, "invalid_parameter", errors=problems)

    @app.exception_handler(StarletteHTTPException)
    async def http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            return _unreadable_body(request, exc)
        status, code = HTTP_ERRORS.get(exc.status_code, (exc.status_code, "error"))
        headers = dict(exc.headers or {})
        detail = str(exc.detail)
        if status == 404:
            detail = f"no such path: {request.url.path}"
        elif status == 405:
            # Starlette's Allow names only the first route of the path; the path may have more.
            allow = allowed_methods(request.app.routes, request.scope) or headers.get("Allow", "")
            headers["Allow"] = allow
            detail = f"{request.method} is not allowed here (allowed: {allow})"
        return problem_response(request.scope, status, detail, code, headers=headers)

    async def database(request: Request, exc: Exception) -> JSONResponse:
        if not is_unavailable(exc):
            raise exc  # a bug (say an integrity error): the envelope's 500 `internal`
        # The driver's text names the host and port: the log gets it, the client does not.
        log.warning(
            "database unavailable (request_id=%s): %s",
            request.scope.get(REQUEST_ID, ""),
            str(exc).splitlines()[0][:300],
        )
        return problem_response(request.scope, 503, DATABASE_UNAVAILABLE, "unavailable")

    # Refused, reset, stalled (our deadline), pool exhausted: every failure of the database.
    for kind in (DBAPIError, PoolTimeoutError, DisconnectionError):
        app.add_exception_handler(kind, database)


# Why json.loads refused a body, by the exception FastAPI wraps in its 400 (first match wins:
# UnicodeDecodeError is a ValueError too).
_UNREADABLE: tuple[tuple[type[BaseException], str], ...] = (
    (UnicodeError, "the body is not valid UTF-8"),
    (RecursionError, "the body's JSON is nested too deeply"),
    (ValueError, "the body holds a number too long to read"),
)


def _unreadable_body(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """The 422 for a body json.loads could not read, saying why."""
    cause = exc.__cause__
    why = next((w for kind, w in _UNREADABLE if isinstance(cause, kind)), "the body is not JSON")
    problems = [{"loc": "body", "msg": why, "type": "json_invalid"}]
    return problem_response(
        request.scope, 422, f"body: {why}", "invalid_parameter", errors=problems
    )


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
