"""Ledger storage on SQLite and PostgreSQL: idempotent inserts, unscored and newest entries,
and the windowed aggregates live error and coverage are computed from."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from btc_predictor.storage import ledger
from btc_predictor.storage.db import read_session, write_session
from tests.conftest import NOW
from tests.factories import TODAY, fill_ledger


def entry(horizon: int, *, version: int = 1, as_of: datetime = NOW) -> dict[str, Any]:
    """An unscored ledger row dict for BTC-USD."""
    return {
        "asset": "BTC-USD",
        "model": "lstm",
        "model_version": version,
        "as_of": as_of,
        "horizon": horizon,
        "target_date": as_of.date() + timedelta(days=horizon - 1),
        "forecast": 101.0,
        "lower": 95.0,
        "upper": 105.0,
        "level": 90,
        "naive": 100.0,
        "created_at": NOW,
    }


def insert(engine: Engine, rows: list[dict[str, Any]]) -> int:
    with write_session(engine) as session:
        return ledger.insert_entries(session=session, rows=rows)


def test_repeats_are_skipped_and_not_counted(engine: Engine) -> None:
    assert insert(engine, [entry(1), entry(2)]) == 2
    assert insert(engine, [entry(1), entry(2)]) == 0
    assert insert(engine, [entry(1, version=2), entry(2)]) == 1  # another version is new
    with read_session(engine) as session:
        assert len(ledger.unscored(session=session, asset="BTC-USD")) == 3
        assert ledger.unscored(session=session, asset="ETH-USD") == []


def test_unscored_leaves_out_scored_entries(engine: Engine) -> None:
    fill_ledger(engine, 3, error=5.0)
    insert(engine, [entry(1)])
    with read_session(engine) as session:
        pending = ledger.unscored(session=session, asset="BTC-USD")
    assert [(p.horizon, p.as_of, p.scored_at) for p in pending] == [(1, NOW, None)]


def test_newest_entries_by_target_day_then_horizon(engine: Engine) -> None:
    insert(engine, [entry(h) for h in (1, 2, 3)])
    insert(engine, [entry(1, as_of=NOW + timedelta(days=1))])
    with read_session(engine) as session:
        rows = ledger.newest_entries(session=session, asset="BTC-USD", limit=3)
    assert [(r.target_date, r.horizon) for r in rows] == [
        (date(2025, 12, 3), 3),
        (date(2025, 12, 2), 1),
        (date(2025, 12, 2), 2),
    ]


def test_window_stats_aggregate_scored_entries_in_the_window(engine: Engine) -> None:
    fill_ledger(engine, 30, error=8.0, naive_error=10.0)  # every 10th outside: 90% coverage
    fill_ledger(engine, 10, error=20.0, version=2, end=TODAY - timedelta(days=30))
    insert(engine, [entry(1)])  # unscored: never counted
    with read_session(engine) as session:
        stats = ledger.window_stats(
            session=session, asset="BTC-USD", after=TODAY - timedelta(days=30), until=TODAY
        )
        older = ledger.window_stats(
            session=session, asset="BTC-USD", after=TODAY - timedelta(days=40), until=TODAY
        )
    assert stats == [ledger.WindowStats(1, "lstm", 30, 8.0, 10.0, 0.9)]
    assert len(older) == 1 and older[0].n == 40 and older[0].mae == 11.0
