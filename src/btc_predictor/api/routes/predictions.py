"""The forecast ledger: served forecasts and how they turned out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from btc_predictor.api.deps import EngineDep
from btc_predictor.services.ledger import list_predictions
from btc_predictor.shapes.common import ASSET_PATTERN, DEFAULT_ASSET
from btc_predictor.shapes.results import LedgerEntry
from btc_predictor.sources.base import parse_asset

router = APIRouter(prefix="/predictions", tags=["predictions"])


@router.get("", response_model=list[LedgerEntry])
def predictions(
    engine: EngineDep,
    asset: Annotated[str, Query(pattern=ASSET_PATTERN)] = DEFAULT_ASSET,
    limit: Annotated[int, Query(ge=1, le=5000)] = 100,
) -> list[LedgerEntry]:
    """Newest ledger entries, scored once their target day's candle is stored."""
    return list_predictions(engine, asset=parse_asset(asset).symbol, limit=limit)
