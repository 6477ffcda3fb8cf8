"""The risk forecast: exactly what ``btc-predictor risk --json`` prints."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from btc_predictor.api import schemas as s
from btc_predictor.api.deps import NowDep
from btc_predictor.api.hot import serve_risk
from btc_predictor.shapes.requests import RiskQuery
from btc_predictor.shapes.risk_results import Risk

router = APIRouter(prefix="/risk", tags=["risk"])


@router.get("", response_model=Risk, responses=s.errors_for(404, 409))
async def risk(
    request: Request, now: NowDep, query: Annotated[RiskQuery, Query()]
) -> dict[str, Any]:
    """Volatility and daily range forecasts for horizons 1..horizon, the range interval at
    ``level``%, naive-range beside them, and VaR 95/99 from the active price version."""
    return await serve_risk(request, query, now)
