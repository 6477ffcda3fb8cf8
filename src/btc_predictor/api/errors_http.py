"""Errors as HTTP: the one error->status table, the problem shape and its exception handlers.

Domain, validation, HTTP and database errors all answer with the same RFC 9457 problem.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from btc_predictor import errors
from btc_predictor.api.routing import allowed_methods
from btc_predictor.api.schemas import PROBLEM_JSON, ErrorResponse
from btc_predictor.storage.db import is_unavailable

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


def install_errors(app: FastAPI) -> None:
    """Domain, validation, HTTP and database errors all answer with the same problem shape."""
    app.exception_handler(errors.BtcpError)(_domain)
    app.exception_handler(RequestValidationError)(_invalid)
    app.exception_handler(StarletteHTTPException)(_http)
    # Refused, reset, stalled (our deadline), pool exhausted: every failure of the database.
    for kind in (DBAPIError, PoolTimeoutError, DisconnectionError):
        app.add_exception_handler(kind, _database)


async def _domain(request: Request, exc: errors.BtcpError) -> JSONResponse:
    """A domain error at its status from the table."""
    status = status_for(exc)
    # Every 422 lists its problems (DESIGN §7), a service's own checks included.
    problems = [{"loc": "request", "msg": exc.message, "type": "value_error"}]
    return problem_response(
        request.scope, status, exc.message, exc.code, errors=problems if status == 422 else None
    )


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A request FastAPI's validation refused: 422, every problem listed."""
    problems = [_problem(e) for e in exc.errors()]
    detail = "; ".join(f"{p['loc']}: {p['msg']}" for p in problems) or "invalid request"
    return problem_response(request.scope, 422, detail, "invalid_parameter", errors=problems)


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """An HTTP error raised by Starlette, FastAPI or us, with a code and a useful detail."""
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


async def _database(request: Request, exc: Exception) -> JSONResponse:
    """503 when the database is out of reach; any other database error is a bug."""
    if not is_unavailable(exc):
        raise exc  # a bug (say an integrity error): the envelope's 500 `internal`
    # The driver's text names the host and port: the log gets it, the client does not.
    log.warning(
        "database unavailable (request_id=%s): %s",
        request.scope.get(REQUEST_ID, ""),
        str(exc).splitlines()[0][:300],
    )
    return problem_response(request.scope, 503, DATABASE_UNAVAILABLE, "unavailable")


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
