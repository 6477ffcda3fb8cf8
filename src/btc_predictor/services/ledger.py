"""The forecast ledger: every served forecast, recorded once and scored when its day closes."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Integer, cast, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from btc_predictor.sources.base import utc_day
from btc_predictor.storage.db import read_session, write_session
from btc_predictor.storage.tables import CandleRow, PredictionRow

LEDGER_LEVEL = 90  # every ledger entry carries its 90% interval, whatever level was served


def record_forecast(engine: Engine, forecast: dict[str, Any], *, now: datetime) -> int:
    """Record a forecast object's points (at the 90% level); repeats are ignored."""
    if forecast["level"] != LEDGER_LEVEL:
        raise ValueError("the ledger records 90% intervals; pass a level-90 forecast")
    rows = [
        {
            "asset": forecast["asset"],
            "model": forecast["model"],
            "model_version": forecast["model_version"],
            "as_of": datetime.fromisoformat(forecast["as_of"]),
            "horizon": p["horizon"],
            "target_date": date.fromisoformat(p["target_date"]),
            "forecast": p["value"],
            "lower": p["lower"],
            "upper": p["upper"],
            "level": LEDGER_LEVEL,
            "naive": p["naive"],
            "created_at": now,
        }
        for p in forecast["points"]
    ]
    with write_session(engine) as session:
        insert = (
            postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        )
        statement = (
            insert(PredictionRow)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["asset", "model_version", "as_of", "horizon"])
        )
        result = session.execute(statement)
        return int(getattr(result, "rowcount", 0) or 0)  # an INSERT's CursorResult


def score_ledger(engine: Engine, asset: str, *, now: datetime) -> int:
    """Score unscored entries whose target day's candle is stored; returns how many."""
    with write_session(engine) as session:
        pending = session.scalars(
            select(PredictionRow).where(
                PredictionRow.asset == asset, PredictionRow.scored_at.is_(None)
            )
        ).all()
        closes = _closes(session, asset, {p.target_date for p in pending})
        scored = 0
        for entry in pending:
            actual = closes.get(entry.target_date)
            if actual is None:
                continue
            entry.actual, entry.scored_at = actual, now
            entry.abs_error = abs(entry.forecast - actual)
            entry.naive_abs_error = abs(entry.naive - actual)
            entry.inside = entry.lower <= actual <= entry.upper
            scored += 1
        return scored


def _closes(session: Session, asset: str, days: set[date]) -> dict[date, float]:
    """Stored closes of ``asset`` on the given days."""
    if not days:
        return {}
    stamps = [utc_day(d) for d in days]
    rows = session.execute(
        select(CandleRow.ts, CandleRow.close).where(
            CandleRow.asset == asset, CandleRow.ts.in_(stamps)
        )
    )
    return {ts.date(): close for ts, close in rows}


def entry_json(row: PredictionRow) -> dict[str, Any]:
    """One ledger entry as served by ``GET /api/v1/predictions``."""
    return {
        "asset": row.asset,
        "model": row.model,
        "model_version": row.model_version,
        "as_of": row.as_of.isoformat(),
        "horizon": row.horizon,
        "target_date": row.target_date.isoformat(),
        "forecast": row.forecast,
        "lower": row.lower,
        "upper": row.upper,
        "level": row.level,
        "naive": row.naive,
        "actual": row.actual,
        "abs_error": row.abs_error,
        "naive_abs_error": row.naive_abs_error,
        "inside": row.inside,
        "scored_at": row.scored_at.isoformat() if row.scored_at else None,
    }


def list_predictions(engine: Engine, *, asset: str, limit: int = 100) -> list[dict[str, Any]]:
    """Newest ledger entries of ``asset`` (by target day, then horizon)."""
    with read_session(engine) as session:
        rows = session.scalars(
            select(PredictionRow)
            .where(PredictionRow.asset == asset)
            .order_by(PredictionRow.target_date.desc(), PredictionRow.horizon)
            .limit(limit)
        ).all()
        return [entry_json(r) for r in rows]


def live_window(engine: Engine, *, asset: str, end: date, days: int = 30) -> list[dict[str, Any]]:
    """Per horizon and model kind over (end - days, end]: n, MAE, naive MAE, coverage."""
    with read_session(engine) as session:
        rows = session.execute(
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
                PredictionRow.target_date > end - timedelta(days=days),
                PredictionRow.target_date <= end,
            )
            .group_by(PredictionRow.horizon, PredictionRow.model)
            .order_by(PredictionRow.horizon, PredictionRow.model)
        ).all()
    return [
        {"horizon": h, "model": m, "n": n, "mae": mae, "naive_mae": naive, "coverage": float(cov)}
        for h, m, n, mae, naive, cov in rows
    ]
