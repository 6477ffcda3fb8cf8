"""The hot read paths, ``GET /predict``, ``GET /api/v1/forecast`` and ``GET /api/v1/risk``, as
plain routes.

Served from the in-memory forecast cache, these answers cost less than the framework around
them: FastAPI's dependency solving, its route matching through included routers and its
response-model validation took ~3x the reference app's CPU per request (bench/asgi_cost.py).
So they are Starlette routes placed first in the app: the query is validated by the same
query shape the FastAPI declaration uses (``shapes.requests.ForecastQuery``/``PredictQuery``/
``RiskQuery``: same rules, same 422), memoised per raw query string, and the body written with
orjson. The FastAPI declarations in routes/legacy.py, routes/forecast.py and routes/risk.py
stay as their documented contract (OpenAPI), and tests check that both give identical answers.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from btc_predictor.api.routing import LabelledRoute
from btc_predictor.api.state import ServingState
from btc_predictor.shapes.requests import (
    ForecastQuery,
    ForecastRequest,
    PredictQuery,
    RiskQuery,
    RiskRequest,
)
from btc_predictor.telemetry import PREDICTIONS_TOTAL


# Room for every query of the uncached mix (30 horizons x 50 levels x ~7 model kinds) with
# spare: a memo smaller than a cycle of distinct queries would miss on every one of them.
@functools.lru_cache(maxsize=16384)
def _wanted(shape: type[PredictQuery] | type[ForecastQuery], query: bytes) -> ForecastRequest:
    """The forecast a query string asks for, validated like FastAPI does (errors become its
    422); memoised per raw query string, since the same few queries make up the traffic."""
    try:
        parsed = shape.model_validate(dict(parse_qsl(query.decode("latin-1"), True)))
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None
    return parsed.next_day() if isinstance(parsed, PredictQuery) else parsed


@functools.lru_cache(maxsize=16384)
def _risk_wanted(query: bytes) -> RiskRequest:
    """The risk forecast a query string asks for (validated, memoised like ``_wanted``)."""
    try:
        return RiskQuery.model_validate(dict(parse_qsl(query.decode("latin-1"), True)))
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


async def serve_forecast(request: Request, query: ForecastRequest, now: datetime) -> dict[str, Any]:
    """Derived from the cached model run, else computed off the event loop (identical misses
    share one computation)."""
    serving: ServingState = request.app.state.serving
    result = serving.cached(query, now)
    if result is None:
        result = await serving.compute(query, now)
    PREDICTIONS_TOTAL.inc()
    return result


async def serve_risk(request: Request, query: RiskRequest, now: datetime) -> dict[str, Any]:
    """Derived from the cached risk run, else computed off the event loop (identical misses
    share one computation)."""
    serving: ServingState = request.app.state.serving
    result = serving.cached_risk(query, now)
    if result is None:
        result = await serving.compute_risk(query, now)
    return result


def legacy_prediction(forecast: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The original ``/predict`` fields (plus ours) from a forecast object."""
    point = forecast["points"][0]
    return {
        "current_date": now.date().isoformat(),
        "next_day_prediction": point["value"],
        "last_known_price": forecast["last_close"],
        "asset": forecast["asset"],
        "last_known_date": forecast["last_date"],
        "target_date": point["target_date"],
        "model_version": forecast["model_version"],
        "lower": point["lower"],
        "upper": point["upper"],
        "level": forecast["level"],
        "data_age_seconds": forecast["data_age_seconds"],
        "stale": forecast["stale"],
    }


async def predict(request: Request) -> Response:
    """``GET /predict``: next-day forecast with its interval."""
    now = request.app.state.clock()
    wanted = _wanted(PredictQuery, request.scope["query_string"])
    forecast = await serve_forecast(request, wanted, now)
    return _json(legacy_prediction(forecast, now))


async def forecast(request: Request) -> Response:
    """``GET /api/v1/forecast``: horizons 1..H with conformal intervals."""
    wanted = _wanted(ForecastQuery, request.scope["query_string"])
    return _json(await serve_forecast(request, wanted, request.app.state.clock()))


async def risk(request: Request) -> Response:
    """``GET /api/v1/risk``: volatility, range with its interval, VaR, horizons 1..H."""
    wanted = _risk_wanted(request.scope["query_string"])
    return _json(await serve_risk(request, wanted, request.app.state.clock()))


def _json(body: dict[str, Any]) -> Response:
    """A JSON response written by orjson (floats round-trip exactly, like json.dumps)."""
    # orjson writes NaN and inf as null; a forecast never holds one (OnnxModel.forecast
    # raises instead), so this stays strict JSON without a check per request.
    return Response(orjson.dumps(body), media_type="application/json")


def hot_routes() -> list[BaseRoute]:
    """The routes to put in front of the FastAPI ones."""
    return [
        LabelledRoute("/predict", predict, methods=["GET"]),
        LabelledRoute("/api/v1/forecast", forecast, methods=["GET"]),
        LabelledRoute("/api/v1/risk", risk, methods=["GET"]),
    ]
