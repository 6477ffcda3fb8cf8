"""Read queries behind the risk panels: the newest scored next-day risk forecast (the other
risk ledger reads are in :mod:`btc_predictor.storage.risk_ledger`). Keyword-only sessions."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from btc_predictor.storage.tables import RiskPredictionRow


def newest_scored(*, session: Session, asset: str) -> RiskPredictionRow | None:
    """The newest scored next-day risk forecast of ``asset`` (latest target day, then serving)."""
    row = RiskPredictionRow
    query = (
        select(row)
        .where(row.asset == asset, row.horizon == 1, row.scored_at.is_not(None))
        .order_by(row.target_date.desc(), row.as_of.desc(), row.id.desc())
        .limit(1)
    )
    return session.scalars(query).first()
