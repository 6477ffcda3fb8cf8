"""The forecast: exactly what ``btc-predictor predict --json`` prints."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from btc_predictor.api import schemas as s
from btc_predictor.api.deps import NowDep
from btc_predictor.api.hot import serve_forecast
from btc_predictor.services.forecast import ForecastRequest
from btc_predictor.sources.base import parse_asset

router = APIRouter(tags=["forecast"])


@router.get("/forecast", response_model=s.ForecastResponse, responses=s.errors_for(404, 409))
async def forecast(
    request: Request,
    now: NowDep,
    asset: Annotated[str, Query(pattern=s.ASSET_PATTERN)] = "BTC-USD",
    horizon: Annotated[int, Query(ge=1, le=365)] = 7,
    level: Annotated[int, Query(ge=50, le=99)] = 90,
    model: s.ModelName | None = None,
) -> dict[str, Any]:
    """Forecasts for horizons 1..horizon with conformal intervals at ``level``%."""
    query = ForecastRequest(parse_asset(asset).symbol, horizon, level, model)
    return await serve_forecast(request, query, now)
