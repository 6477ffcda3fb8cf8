"""Data access for the risk ledger (``risk_predictions``). Keyword-only sessions; the scoring
and reporting rules live in :mod:`btc_predictor.services.ledger`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Integer, cast, func, select
from sqlalchemy.orm import Session

from btc_predictor.storage.db import upsert
from btc_predictor.storage.tables import RiskPredictionRow

# One entry per served risk forecast point: the table's unique key.
_KEY = ("asset", "model_version", "as_of", "horizon")


@dataclass(frozen=True, slots=True)
class RangeWindowStats:
    """Scored risk entries of one horizon and risk model kind over a window (range_pct points)."""

    horizon: int
    model: str
    n: int
    mae: float  # mean |range forecast − realised range|
    naive_mae: float  # mean |naive range (the origin day's) − realised range|, same entries
    coverage: float | None  # share inside the range interval (None: no entry had bounds)


@dataclass(frozen=True, slots=True)
class VarObservation:
    """One scored VaR forecast: its target day, the price version and the two outcomes."""

    target_date: date
    price_version: int | None
    var_95_violated: bool | None
    var_99_violated: bool | None


@dataclass(frozen=True, slots=True)
class DirectionObservation:
    """One scored ``p_up``: the probability served and whether the close went up."""

    target_date: date
    horizon: int
    p_up: float
    went_up: bool


def insert_entries(*, session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert risk ledger rows, skipping ones already recorded; returns how many were new."""
    return upsert(session, RiskPredictionRow, rows, keys=_KEY)


def unscored(*, session: Session, asset: str) -> list[RiskPredictionRow]:
    """Entries of ``asset`` not scored yet (rows of the session, to be filled in)."""
    query = select(RiskPredictionRow).where(
        RiskPredictionRow.asset == asset, RiskPredictionRow.scored_at.is_(None)
    )
    return list(session.scalars(query))


def newest_entries(*, session: Session, asset: str, limit: int) -> list[RiskPredictionRow]:
    """The newest ``limit`` entries of ``asset`` by target day, then horizon."""
    query = (
        select(RiskPredictionRow)
        .where(RiskPredictionRow.asset == asset)
        .order_by(RiskPredictionRow.target_date.desc(), RiskPredictionRow.horizon)
        .limit(limit)
    )
    return list(session.scalars(query))


def range_window_stats(
    *, session: Session, asset: str, after: date, until: date
) -> list[RangeWindowStats]:
    """Per horizon and model kind, scored entries with ``after < target day <= until``."""
    row = RiskPredictionRow
    query = (
        select(
            row.horizon,
            row.model,
            func.count(),
            func.avg(row.abs_error),
            func.avg(row.naive_abs_error),
            func.avg(cast(row.inside, Integer)),
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
    return [
        RangeWindowStats(h, m, n, float(mae), float(naive), None if cov is None else float(cov))
        for h, m, n, mae, naive, cov in session.execute(query)
    ]


def var_observations(
    *, session: Session, asset: str, horizon: int, limit: int
) -> list[VarObservation]:
    """The newest ``limit`` scored VaR forecasts of ``horizon``: one per (target day, price
    version), since every risk entry served with one price forecast carries its VaR."""
    row = RiskPredictionRow
    violated_95 = func.max(cast(row.var_95_violated, Integer))
    violated_99 = func.max(cast(row.var_99_violated, Integer))
    query = (
        select(row.target_date, row.price_version, violated_95, violated_99)
        .where(
            row.asset == asset,
            row.horizon == horizon,
            row.scored_at.is_not(None),
            row.loss_pct.is_not(None),
            row.var_95_violated.is_not(None) | row.var_99_violated.is_not(None),
        )
        .group_by(row.target_date, row.price_version)
        .order_by(row.target_date.desc(), row.price_version.desc())
        .limit(limit)
    )
    return [
        VarObservation(day, version, _flag(v95), _flag(v99))
        for day, version, v95, v99 in session.execute(query)
    ]


def _flag(value: int | None) -> bool | None:
    """An aggregated boolean column back as a bool (None stays None)."""
    return None if value is None else bool(value)


def direction_observations(
    *, session: Session, asset: str, after: date, until: date
) -> list[DirectionObservation]:
    """Scored entries that carried a ``p_up``, with ``after < target day <= until``: one per
    price forecast (risk entries served with one price forecast carry the same p_up)."""
    row = RiskPredictionRow
    query = (
        select(
            row.target_date,
            row.horizon,
            func.max(row.p_up),
            func.max(cast(row.went_up, Integer)),
        )
        .where(
            row.asset == asset,
            row.scored_at.is_not(None),
            row.p_up.is_not(None),
            row.went_up.is_not(None),
            row.target_date > after,
            row.target_date <= until,
        )
        .group_by(row.target_date, row.horizon, row.as_of, row.price_version)
        .order_by(row.target_date, row.horizon)
    )
    return [
        DirectionObservation(day, h, float(p_up), bool(up))
        for day, h, p_up, up in session.execute(query)
        if p_up is not None  # never (the filter): narrows the type
    ]


def scored_count(*, session: Session, asset: str) -> int:
    """How many entries of ``asset`` are scored (all time)."""
    query = select(func.count()).where(
        RiskPredictionRow.asset == asset, RiskPredictionRow.scored_at.is_not(None)
    )
    return int(session.scalar(query) or 0)
