"""Assets: what is stored and tracked, their candles, and refresh jobs."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from btc_predictor.api import schemas as s
from btc_predictor.api.deps import (
    Authorized,
    EngineDep,
    NowDep,
    ServingDep,
    SettingsDep,
    SubmitDep,
)
from btc_predictor.errors import AssetNotFoundError
from btc_predictor.services.ingest import data_status, stored_candles
from btc_predictor.shapes.common import ASSET_PATTERN
from btc_predictor.shapes.requests import IngestJob, RefreshRequest
from btc_predictor.shapes.results import AssetStatus, CandleView, JobView
from btc_predictor.sources.base import parse_asset

router = APIRouter(prefix="/assets", tags=["assets"])
AssetPath = Annotated[str, Path(pattern=ASSET_PATTERN, description="BASE-QUOTE")]


@router.get("", response_model=list[AssetStatus])
def list_assets(serving: ServingDep, now: NowDep) -> list[AssetStatus]:
    """Tracked and stored assets with what is stored for each."""
    # As of the last state poll (BTCP_STATE_POLL): no query per request (issue 14).
    return serving.asset_status(None, now)


@router.get("/{asset}/candles", response_model=list[CandleView], responses=s.errors_for(404))
def candles(
    engine: EngineDep,
    serving: ServingDep,
    now: NowDep,
    asset: AssetPath,
    start: date | None = None,
    end: date | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 365,
) -> list[CandleView]:
    """Stored daily candles, ``start <= date < end``, the newest ``limit`` of them."""
    symbol = parse_asset(asset).symbol
    serving.asset_status(symbol, now)  # 404 for assets neither tracked nor stored (last poll)
    rows = stored_candles(engine, symbol, start=start, end=end, limit=limit)
    return [
        CandleView(
            date=c.ts.date(), open=c.open, high=c.high, low=c.low, close=c.close, volume=c.volume
        )
        for c in rows
    ]


@router.post(
    "/{asset}/refresh",
    status_code=202,
    response_model=JobView,
    dependencies=[Authorized],
    responses=s.errors_for(401, 404, 409),
)
def refresh(
    settings: SettingsDep,
    engine: EngineDep,
    now: NowDep,
    submit: SubmitDep,
    asset: AssetPath,
    body: RefreshRequest | None = None,
) -> dict[str, Any]:
    """Queue an ingest job for a tracked or stored asset (online sources only)."""
    symbol = parse_asset(asset).symbol
    known = {row.asset for row in data_status(settings, engine, asset=None, now=now)}
    if symbol not in known:
        raise AssetNotFoundError(
            f"asset {symbol} is neither tracked nor stored (known: {', '.join(sorted(known))})"
        )
    job = IngestJob(asset=symbol, **(body or RefreshRequest()).model_dump(exclude_unset=True))
    return submit("ingest", job, location="/api/v1/jobs/{id}")
