"""The two hot read paths, ``GET /predict`` and ``GET /api/v1/forecast``, as plain routes.

Served from the in-memory forecast cache, these answers cost less than the framework around
them: FastAPI's dependency solving, its route matching through included routers and its
response-model validation took ~3x the reference app's CPU per request (bench/asgi_cost.py).
So they are Starlette routes placed first in the app: the query is validated by one pydantic
model (same rules, same 422 shape) and the body written with orjson. The FastAPI declarations
in routes/legacy.py and routes/forecast.py stay as their documented contract (OpenAPI), and
tests check that both give identical answers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

import orjson
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from btc_predictor.api.routing import LabelledRoute
from btc_predictor.api.schemas import ASSET_PATTERN, ModelName
from btc_predictor.api.state import ServingState
from btc_predictor.services.forecast import ForecastRequest
from btc_predictor.sources.base import parse_asset
from btc_predictor.telemetry import PREDICTIONS_TOTAL


class PredictQuery(BaseModel):
    """``GET /predict`` query (the FastAPI declaration's parameters)."""

    model_config = ConfigDict(extra="ignore")
    asset: str = Field(default="BTC-USD", pattern=ASSET_PATTERN)
    level: int = Field(default=90, ge=50, le=99)


class ForecastQuery(BaseModel):
    """``GET /api/v1/forecast`` query (fields in the declaration's order: errors list so)."""

    model_config = ConfigDict(extra="ignore")
    asset: str = Field(default="BTC-USD", pattern=ASSET_PATTERN)
    horizon: int = Field(default=7, ge=1, le=365)
    level: int = Field(default=90, ge=50, le=99)
    model: ModelName | None = None


Q = TypeVar("Q", bound=BaseModel)


def _query(model: type[Q], request: Request) -> Q:
    """Validate the query string like FastAPI does (errors become its 422)."""
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


async def serve_forecast(request: Request, query: ForecastRequest, now: datetime) -> dict[str, Any]:
    """The cached forecast, else computed off the event loop (first request for a state)."""
    serving: ServingState = request.app.state.serving
    result = serving.cached(query, now)
    if result is None:
        result = await run_in_threadpool(serving.forecast, query, now)
    PREDICTIONS_TOTAL.inc()
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
    query = _query(PredictQuery, request)
    now = request.app.state.clock()
    wanted = ForecastRequest(parse_asset(query.asset).symbol, 1, query.level)
    forecast = await serve_forecast(request, wanted, now)
    return _json(legacy_prediction(forecast, now))


async def forecast(request: Request) -> Response:
    """``GET /api/v1/forecast``: horizons 1..H with conformal intervals."""
    query = _query(ForecastQuery, request)
    wanted = ForecastRequest(
        parse_asset(query.asset).symbol, query.horizon, query.level, query.model
    )
    return _json(await serve_forecast(request, wanted, request.app.state.clock()))


def _json(body: dict[str, Any]) -> Response:
    """A JSON response written by orjson (floats round-trip exactly, like json.dumps)."""
    return Response(orjson.dumps(body), media_type="application/json")


def hot_routes() -> list[BaseRoute]:
    """The routes to put in front of the FastAPI ones."""
    return [
        LabelledRoute("/predict", predict, methods=["GET"]),
        LabelledRoute("/api/v1/forecast", forecast, methods=["GET"]),
    ]
