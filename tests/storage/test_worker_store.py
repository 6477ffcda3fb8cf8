"""The worker heartbeat rows on both backends: register, beat, scope, prune, count."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from btc_predictor.storage import worker_store
from btc_predictor.storage.worker_store import WorkerRecord
from tests.conftest import NOW

MINUTE = timedelta(minutes=1)


def record(worker_id: str, scope: str | None = "boot:1", pid: int = 10) -> WorkerRecord:
    return WorkerRecord(worker_id, "host", pid, scope, False, NOW, NOW)


def test_a_beat_registers_then_moves_the_heartbeat(engine: Engine) -> None:
    worker_store.beat(engine, record("a"), NOW)
    worker_store.beat(engine, record("a"), NOW + MINUTE)
    assert worker_store.in_scope(engine, "boot:1") == [
        WorkerRecord("a", "host", 10, "boot:1", False, NOW, NOW + MINUTE)
    ]
    assert worker_store.beaten_since(engine, NOW + MINUTE) == (1, NOW + MINUTE)
    assert worker_store.beaten_since(engine, NOW + 2 * MINUTE) == (0, NOW + MINUTE)


def test_scope_prune_and_remove(engine: Engine) -> None:
    assert worker_store.beaten_since(engine, NOW) == (0, None)
    worker_store.beat(engine, record("a"), NOW)
    worker_store.beat(engine, record("b", scope="boot:2"), NOW - 30 * MINUTE)
    worker_store.beat(engine, record("c"), NOW - MINUTE)
    assert {r.id for r in worker_store.in_scope(engine, "boot:1")} == {"a", "c"}
    assert worker_store.prune_silent(engine, NOW - 10 * MINUTE) == 1
    assert worker_store.in_scope(engine, "boot:2") == []
    worker_store.remove(engine, ["c"])
    worker_store.remove(engine, [])
    assert [r.id for r in worker_store.in_scope(engine, "boot:1")] == ["a"]
    # A pruned worker that beats again is registered again.
    worker_store.remove(engine, ["a"])
    worker_store.beat(engine, record("a"), NOW + MINUTE)
    assert worker_store.beaten_since(engine, NOW) == (1, NOW + MINUTE)
