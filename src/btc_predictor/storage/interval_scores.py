"""Data access for ``interval_scores``: price forecasts recorded at ingest, scored when their
target day closes (the adaptive interval state). The rules live in ``services.intervals``."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from btc_predictor.storage.db import upsert
from btc_predictor.storage.tables import IntervalScoreRow

# One forecast per (asset, price version, origin day, horizon): the table's unique key.
_KEY = ("asset", "price_version", "origin_date", "horizon")
_CHUNK = 500  # rows per statement: under SQLite's and psycopg's bound-parameter limits


def insert_forecasts(*, session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert recorded forecasts, skipping ones already recorded; how many were new."""
    return sum(
        upsert(session, IntervalScoreRow, rows[i : i + _CHUNK], keys=_KEY)
        for i in range(0, len(rows), _CHUNK)
    )


def last_origin(*, session: Session, asset: str, price_version: int) -> date | None:
    """The newest origin day recorded for (asset, price version)."""
    query = select(func.max(IntervalScoreRow.origin_date)).where(
        IntervalScoreRow.asset == asset, IntervalScoreRow.price_version == price_version
    )
    return session.scalar(query)


def unscored(*, session: Session, asset: str, until: date) -> list[IntervalScoreRow]:
    """Recorded forecasts of ``asset`` whose target day is ``until`` or earlier, not scored."""
    query = select(IntervalScoreRow).where(
        IntervalScoreRow.asset == asset,
        IntervalScoreRow.scored_at.is_(None),
        IntervalScoreRow.target_date <= until,
    )
    return list(session.scalars(query))


def scores(*, session: Session, asset: str, price_version: int) -> list[tuple[int, date, float]]:
    """(horizon, origin day, score) of every scored forecast of (asset, price version)."""
    query = (
        select(IntervalScoreRow.horizon, IntervalScoreRow.origin_date, IntervalScoreRow.score)
        .where(
            IntervalScoreRow.asset == asset,
            IntervalScoreRow.price_version == price_version,
            IntervalScoreRow.score.is_not(None),
        )
        .order_by(IntervalScoreRow.horizon, IntervalScoreRow.origin_date)
    )
    return [(h, d, float(s)) for h, d, s in session.execute(query) if s is not None]
