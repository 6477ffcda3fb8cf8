"""Read queries behind the risk health figures: the scored risk ledger (``risk_predictions``)
and the stored interval scores (``interval_scores``). Keyword-only sessions; the rules live in
:mod:`btc_predictor.services.risk_health`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import Integer, cast, func, select
from sqlalchemy.orm import Session

from btc_predictor.storage.tables import IntervalScoreRow, RiskPredictionRow


@dataclass(frozen=True, slots=True)
class RangeWindowStats:
    """Scored risk forecasts of one horizon and model kind over a window."""

    horizon: int
    model: str
    n: int
    mae: float
    naive_mae: float


@dataclass(frozen=True, slots=True)
class VarDay:
    """One scored target day of the next-day VaR (None: that VaR was not served)."""

    target_date: date
    violated_95: bool | None
    violated_99: bool | None


def range_window_stats(
    *, session: Session, asset: str, after: date, until: date
) -> list[RangeWindowStats]:
    """Per horizon and model kind, scored risk entries with ``after < target day <= until``."""
    row = RiskPredictionRow
    query = (
        select(
            row.horizon,
            row.model,
            func.count(),
            func.avg(row.abs_error),
            func.avg(row.naive_abs_error),
        )
        .where(
            row.asset == asset,
            row.scored_at.is_not(None),
            row.target_date > after,
            row.target_date <= until,
        )
        .group_by(row.horizon, row.model)
        .order_by(row.horizon, row.model)
    )
    return [RangeWindowStats(h, m, n, mae, naive) for h, m, n, mae, naive in session.execute(query)]


def var_days(*, session: Session, asset: str, until: date, limit: int) -> list[VarDay]:
    """The newest ``limit`` scored next-day target days up to ``until``, newest first.

    A day served by several versions counts once (any violation on it is a violation)."""
    row = RiskPredictionRow
    query = (
        select(
            row.target_date,
            func.max(cast(row.var_95_violated, Integer)),
            func.max(cast(row.var_99_violated, Integer)),
        )
        .where(
            row.asset == asset,
            row.horizon == 1,
            row.scored_at.is_not(None),
            row.target_date <= until,
        )
        .group_by(row.target_date)
        .order_by(row.target_date.desc())
        .limit(limit)
    )
    return [
        VarDay(day, None if v95 is None else bool(v95), None if v99 is None else bool(v99))
        for day, v95, v99 in session.execute(query)
    ]


def interval_scores(
    *, session: Session, asset: str, price_version: int, horizon: int
) -> list[float | None]:
    """The stored scores of one (asset, price version, horizon), by origin day (None: open)."""
    row = IntervalScoreRow
    query = (
        select(row.score)
        .where(row.asset == asset, row.price_version == price_version, row.horizon == horizon)
        .order_by(row.origin_date)
    )
    return list(session.scalars(query))


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
