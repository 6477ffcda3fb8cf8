"""The forecast ledger: every served forecast, recorded once and scored when its day closes."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from btc_predictor.shapes.results import Forecast, LedgerEntry
from btc_predictor.storage import ledger as store
from btc_predictor.storage import repository as repo
from btc_predictor.storage.db import read_session, write_session
from btc_predictor.storage.ledger import WindowStats
from btc_predictor.storage.tables import PredictionRow

LEDGER_LEVEL = 90  # every ledger entry carries its 90% interval, whatever level was served
_CHUNK = 500


def record_forecast(engine: Engine, forecast: Forecast, *, now: datetime) -> int:
    """Record a forecast's points (at the 90% level); repeats are ignored."""
    return record_rows(engine, entry_rows(forecast, now=now))


def entry_rows(forecast: Forecast, *, now: datetime) -> list[dict[str, Any]]:
    """The ledger rows of a level-90 forecast's points (to record now or in a batch)."""
    if forecast.level != LEDGER_LEVEL:
        raise ValueError("the ledger records 90% intervals; pass a level-90 forecast")
    return [
        {
            "asset": forecast.asset,
            "model": forecast.model,
            "model_version": forecast.model_version,
            "as_of": forecast.as_of,
            "horizon": p.horizon,
            "target_date": p.target_date,
            "forecast": p.value,
            "lower": p.lower,
            "upper": p.upper,
            "level": LEDGER_LEVEL,
            "naive": p.naive,
            "created_at": now,
        }
        for p in forecast.points
    ]


def record_rows(engine: Engine, rows: list[dict[str, Any]]) -> int:
    """Insert ledger rows in one transaction, skipping ones already recorded; how many new."""
    with write_session(engine) as session:
        # Chunks keep each statement under SQLite's and psycopg's bound-parameter limits.
        chunks = range(0, len(rows), _CHUNK)
        return sum(store.insert_entries(session=session, rows=rows[i : i + _CHUNK]) for i in chunks)


def score_ledger(engine: Engine, asset: str, *, now: datetime) -> int:
    """Score unscored entries whose target day's candle is stored; returns how many."""
    with write_session(engine) as session:
        pending = store.unscored(session=session, asset=asset)
        days = {entry.target_date for entry in pending}
        closes = repo.closes_on(session=session, asset=asset, days=days)
        return sum(_score(entry, closes.get(entry.target_date), now) for entry in pending)


def _score(entry: PredictionRow, actual: float | None, now: datetime) -> bool:
    """Fill in an entry's outcome once its day's close is known; whether it was scored."""
    if actual is None:
        return False
    entry.actual, entry.scored_at = actual, now
    entry.abs_error = abs(entry.forecast - actual)
    entry.naive_abs_error = abs(entry.naive - actual)
    entry.inside = entry.lower <= actual <= entry.upper
    return True


def entry_view(row: PredictionRow) -> LedgerEntry:
    """One ledger entry as served by ``GET /api/v1/predictions``."""
    return LedgerEntry.model_validate(row, from_attributes=True)


def list_predictions(engine: Engine, *, asset: str, limit: int = 100) -> list[LedgerEntry]:
    """Newest ledger entries of ``asset`` (by target day, then horizon)."""
    with read_session(engine) as session:
        rows = store.newest_entries(session=session, asset=asset, limit=limit)
    return [entry_view(r) for r in rows]


def live_window(engine: Engine, *, asset: str, end: date, days: int = 30) -> list[WindowStats]:
    """Per horizon and model kind over (end - days, end]: n, MAE, naive MAE, coverage."""
    with read_session(engine) as session:
        rows = store.window_stats(
            session=session, asset=asset, after=end - timedelta(days=days), until=end
        )
    return rows
