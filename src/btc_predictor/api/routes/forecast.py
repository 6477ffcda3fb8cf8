"""The forecast: exactly what ``btc-predictor predict --json`` prints."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from btc_predictor.api import schemas as s
from btc_predictor.api.deps import NowDep, ServingDep
from btc_predictor.services.forecast import ForecastRequest
from btc_predictor.sources.base import parse_asset

router = APIRouter(tags=["forecast"])


@router.get("/forecast", response_model=s.ForecastResponse, responses=s.errors_for(404, 409))
async def forecast(
    request: Request,
    serving: ServingDep,
    now: NowDep,
    asset: Annotated[str, Query(pattern=s.ASSET_PATTERN)] = "BTC-USD",
    horizon: Annotated[int, Query(ge=1, le=365)] = 7,
    level: Annotated[int, Query(ge=50, le=99)] = 90,
    model: s.ModelName | None = None,
) -> dict[str, Any]:
    """Forecasts for horizons 1..horizon with conformal intervals at ``level``%."""
    query = ForecastRequest(parse_asset(asset).symbol, horizon, level, model)
    result = serving.cached(query, now)
    if result is None:  # first request for this state: compute off the event loop
        result = await run_in_threadpool(serving.forecast, query, now)
    request.app.state.stats.predictions += 1
    return result
