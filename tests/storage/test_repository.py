"""Candle storage on SQLite and PostgreSQL: idempotent upserts, ownership modes, races."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from btc_predictor.config import Settings
from btc_predictor.storage import repository as repo
from btc_predictor.storage.db import create_db_engine, read_session, upgrade, write_session
from tests.conftest import _reset_postgres
from tests.factories import make_candles

NOW = datetime(2024, 3, 1, tzinfo=UTC)


def upsert(
    engine: Engine, candles: list, source: str = "csv", mode: repo.UpsertMode = "overwrite"
) -> repo.UpsertCounts:
    with write_session(engine) as session:
        return repo.upsert_candles(
            session=session, asset="BTC-USD", candles=candles, source=source, mode=mode, now=NOW
        )


def test_upsert_is_idempotent_and_counts_changes(engine: Engine) -> None:
    candles = make_candles(date(2024, 1, 1), 30)
    assert upsert(engine, candles) == repo.UpsertCounts(30, 0, 0)
    assert upsert(engine, candles) == repo.UpsertCounts(0, 0, 30)
    revised = [*candles[:-1], replace(candles[-1], close=candles[-1].close + 0.5)]
    assert upsert(engine, revised) == repo.UpsertCounts(0, 1, 29)
    with read_session(engine) as session:
        stored = repo.load_candles(session=session, asset="BTC-USD")
    assert stored == revised
    assert stored[0].ts.tzinfo is not None and stored[0].ts == candles[0].ts


def test_insert_missing_never_overwrites(engine: Engine) -> None:
    candles = make_candles(date(2024, 1, 1), 10)
    upsert(engine, candles[:3] + candles[5:])
    other = [replace(c, close=c.close + 1, high=c.high + 1) for c in candles]
    counts = upsert(engine, other, source="yahoo", mode="insert_missing")
    assert counts == repo.UpsertCounts(2, 0, 8)
    with read_session(engine) as session:
        stored = repo.load_candles(session=session, asset="BTC-USD")
        spans = repo.asset_spans(session=session)
        owner = repo.source_of_record(session=session, asset="BTC-USD")
    assert [c.close for c in stored] == [
        candles[i].close if i not in (3, 4) else other[i].close for i in range(10)
    ]
    assert spans == [
        repo.AssetSpan("BTC-USD", 10, candles[0].ts, candles[-1].ts, {"csv": 8, "yahoo": 2})
    ]
    assert owner == "csv"


def test_load_candles_range_and_limit(engine: Engine) -> None:
    candles = make_candles(date(2024, 1, 1), 10)
    upsert(engine, candles)
    with read_session(engine) as session:
        assert (
            repo.load_candles(
                session=session, asset="BTC-USD", start=candles[2].ts, end=candles[5].ts
            )
            == candles[2:5]
        )
        assert repo.load_candles(session=session, asset="BTC-USD", limit=3) == candles[-3:]
        assert repo.load_candles(session=session, asset="ETH-USD") == []


def test_closes_on_given_days(engine: Engine) -> None:
    candles = make_candles(date(2024, 1, 1), 5)
    upsert(engine, candles)
    with read_session(engine) as session:
        closes = repo.closes_on(
            session=session, asset="BTC-USD", days=[date(2024, 1, 2), date(2024, 2, 1)]
        )
        assert repo.closes_on(session=session, asset="BTC-USD", days=[]) == {}
    assert closes == {date(2024, 1, 2): candles[1].close}  # days without a candle are left out


def test_newest_candles_one_per_asset(engine: Engine) -> None:
    btc = make_candles(date(2024, 1, 1), 10)
    eth = make_candles(date(2024, 1, 1), 4, price=50.0)
    upsert(engine, btc)
    with write_session(engine) as session:
        repo.upsert_candles(
            session=session, asset="ETH-USD", candles=eth, source="csv", mode="overwrite", now=NOW
        )
    with read_session(engine) as session:
        assert repo.newest_candles(session=session) == {"BTC-USD": btc[-1], "ETH-USD": eth[-1]}


def test_two_ingests_of_one_asset_at_once_both_succeed(settings: Settings, engine: Engine) -> None:
    candles = make_candles(date(2020, 1, 1), 1500)
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        own = create_db_engine(settings)  # a separate pool, like a second process
        try:
            barrier.wait()
            for chunk in range(0, len(candles), 250):
                upsert(own, candles[chunk : chunk + 250])
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            own.dispose()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with read_session(engine) as session:
        assert repo.load_candles(session=session, asset="BTC-USD") == candles


@pytest.mark.postgres
def test_two_racing_ingests_count_each_day_inserted_once(
    pg_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both read "not stored" before either writes (the barrier), as two API replicas can;
    # the second writer's rows conflict, so only the first counts them as inserted.
    _reset_postgres(pg_database_url)  # the session database: start empty
    settings = Settings(data_dir=tmp_path, database_url=pg_database_url)
    engine = create_db_engine(settings)
    upgrade(engine)
    candles = make_candles(date(2021, 1, 1), 300)
    barrier = threading.Barrier(2, timeout=30)
    read = repo._stored_values

    def read_then_wait(*args: Any) -> Any:
        stored = read(*args)
        barrier.wait()
        return stored

    monkeypatch.setattr(repo, "_stored_values", read_then_wait)
    counts: list[repo.UpsertCounts] = []

    def run() -> None:
        own = create_db_engine(settings)
        try:
            counts.append(upsert(own, candles))
        finally:
            own.dispose()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(c.inserted for c in counts) == [0, 300]
    assert sum(c.inserted + c.updated + c.unchanged for c in counts) == 600
    engine.dispose()
