"""The forecast: exactly what ``btc-predictor predict --json`` prints."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from btc_predictor.api import schemas as s
from btc_predictor.api.deps import NowDep
from btc_predictor.api.hot import serve_forecast
from btc_predictor.shapes.requests import ForecastQuery
from btc_predictor.shapes.results import Forecast

router = APIRouter(prefix="/forecast", tags=["forecast"])


@router.get("", response_model=Forecast, responses=s.errors_for(404, 409))
async def forecast(
    request: Request, now: NowDep, query: Annotated[ForecastQuery, Query()]
) -> dict[str, Any]:
    """Forecasts for horizons 1..horizon with conformal intervals at ``level``%."""
    return await serve_forecast(request, query, now)
