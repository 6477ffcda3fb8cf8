"""Data access for the forecast ledger (``predictions``). Keyword-only sessions; the scoring
and reporting rules live in :mod:`btc_predictor.services.ledger`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Integer, cast, func, select
from sqlalchemy.orm import Session

from btc_predictor.storage.db import upsert
from btc_predictor.storage.tables import PredictionRow

# One entry per served forecast point: the table's unique key.
_KEY = ("asset", "model_version", "as_of", "horizon")


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Scored entries of one horizon and model kind over a window."""

    horizon: int
    model: str
    n: int
    mae: float
    naive_mae: float
    coverage: float


def insert_entries(*, session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert ledger rows, skipping ones already recorded; returns how many were new."""
    return upsert(session, PredictionRow, rows, keys=_KEY)


def unscored(*, session: Session, asset: str) -> list[PredictionRow]:
    """Entries of ``asset`` not scored yet (rows of the session, to be filled in)."""
    query = select(PredictionRow).where(
        PredictionRow.asset == asset, PredictionRow.scored_at.is_(None)
    )
    return list(session.scalars(query))


def newest_entries(*, session: Session, asset: str, limit: int) -> list[PredictionRow]:
    """The newest ``limit`` entries of ``asset`` by target day, then horizon."""
    query = (
        select(PredictionRow)
        .where(PredictionRow.asset == asset)
        .order_by(PredictionRow.target_date.desc(), PredictionRow.horizon)
        .limit(limit)
    )
    return list(session.scalars(query))


def window_stats(*, session: Session, asset: str, after: date, until: date) -> list[WindowStats]:
    """Per horizon and model kind, scored entries with ``after < target day <= until``."""
    query = (
        select(
            PredictionRow.horizon,
            PredictionRow.model,
            func.count(),
            func.avg(PredictionRow.abs_error),
            func.avg(PredictionRow.naive_abs_error),
            func.avg(cast(PredictionRow.inside, Integer)),
        )
        .where(
            PredictionRow.asset == asset,
            PredictionRow.scored_at.is_not(None),
            PredictionRow.target_date > after,
            PredictionRow.target_date <= until,
        )
        .group_by(PredictionRow.horizon, PredictionRow.model)
        .order_by(PredictionRow.horizon, PredictionRow.model)
    )
    return [
        WindowStats(h, m, n, mae, naive, float(cov))
        for h, m, n, mae, naive, cov in session.execute(query)
    ]
