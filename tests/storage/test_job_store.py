"""The jobs and schedules SQL on both backends: snapshots, dedupe, transitions, schedule rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine

from btc_predictor.errors import JobRunningError
from btc_predictor.storage import job_store
from btc_predictor.storage.tables import ScheduleRow
from tests.conftest import NOW

MINUTE = timedelta(minutes=1)


def test_due() -> None:
    assert not job_store.due(NOW, ScheduleRow(name="bootstrap", next_run_at=None))
    assert not job_store.due(
        NOW, ScheduleRow(name="refresh", next_run_at=NOW + timedelta(seconds=1))
    )
    assert job_store.due(NOW, ScheduleRow(name="refresh", next_run_at=NOW))


def test_add_get_and_list_return_snapshots(engine: Engine) -> None:
    first = job_store.add_job(engine, kind="ingest", params={"asset": "BTC-USD"}, now=NOW)
    second = job_store.add_job(engine, kind="backtest", params={}, now=NOW + MINUTE)
    assert isinstance(first, job_store.Job)
    assert (first.status, first.progress, first.message) == ("queued", 0.0, "queued")
    assert job_store.get_job(engine, first.id) == first
    assert job_store.get_job(engine, "00000000-0000-4000-8000-000000000000") is None
    assert job_store.list_jobs(engine, limit=10) == [second, first]
    assert job_store.list_jobs(engine, kind="ingest", limit=10) == [first]
    assert job_store.list_jobs(engine, status="running", limit=10) == []
    assert job_store.params_since(engine, kind="ingest", since=NOW) == [{"asset": "BTC-USD"}]
    assert job_store.params_since(engine, kind="ingest", since=NOW + MINUTE) == []


def test_a_dedupe_key_is_held_only_while_queued_or_running(engine: Engine) -> None:
    held = job_store.add_job(engine, kind="ingest", params={}, now=NOW, dedupe_key="ingest:X")
    assert job_store.find_active(engine, "ingest:X") == held
    with pytest.raises(JobRunningError, match=f"ingest job {held.id} is already queued"):
        job_store.add_job(engine, kind="ingest", params={}, now=NOW, dedupe_key="ingest:X")
    outcome = job_store.cancel_job(engine, held.id, now=NOW)
    assert outcome is not None and outcome[1] and outcome[0].status == "cancelled"
    assert job_store.find_active(engine, "ingest:X") is None
    job_store.add_job(engine, kind="ingest", params={}, now=NOW, dedupe_key="ingest:X")


def test_transitions_only_leave_running(engine: Engine) -> None:
    job = job_store.add_job(engine, kind="train", params={"asset": "BTC-USD"}, now=NOW)
    assert job_store.end_job(engine, job.id, status="failed", now=NOW, message="x") is None
    assert job_store.touch(engine, job.id, now=NOW) is True  # not running: stop
    claimed = job_store.claim_next(engine, worker_id="w1", now=NOW + MINUTE)
    assert claimed is not None and (claimed.id, claimed.status) == (job.id, "running")
    assert claimed.started_at == NOW + MINUTE
    assert job_store.claim_next(engine, worker_id="w2", now=NOW) is None  # nothing queued
    assert job_store.touch(engine, job.id, now=NOW, progress=0.5, message="half") is False
    back = job_store.requeue(engine, job.id, now=NOW, reason="worker stopping")
    assert back is not None and (back.status, back.started_at, back.progress) == (
        "queued",
        None,
        0.0,
    )
    job_store.claim_next(engine, worker_id="w1", now=NOW)
    done = job_store.end_job(
        engine, job.id, status="succeeded", now=NOW, message="done", result={"ok": 1}
    )
    assert done is not None and (done.status, done.progress, done.result) == (
        "succeeded",
        1.0,
        {"ok": 1},
    )
    assert job_store.requeue(engine, job.id, now=NOW, reason="late") is None
    assert job_store.cancel_job(engine, "00000000-0000-4000-8000-000000000000", now=NOW) is None


def test_cancelling_a_running_job_only_flags_it(engine: Engine) -> None:
    job = job_store.add_job(engine, kind="backtest", params={}, now=NOW)
    job_store.claim_next(engine, worker_id="w1", now=NOW)
    outcome = job_store.cancel_job(engine, job.id, now=NOW)
    assert outcome is not None and not outcome[1]
    assert (outcome[0].status, outcome[0].message) == ("running", "cancellation requested")
    assert job_store.touch(engine, job.id, now=NOW) is True
    ended = job_store.requeue(engine, job.id, now=NOW, reason="requeued")  # the cancel wins
    assert ended is not None and ended.status == "cancelled"


def test_recover_orphans_spares_live_workers(engine: Engine) -> None:
    dead = job_store.add_job(engine, kind="train", params={}, now=NOW)
    job_store.claim_next(engine, worker_id="dead", now=NOW)
    alive = job_store.add_job(engine, kind="backtest", params={}, now=NOW)
    job_store.claim_next(engine, worker_id="alive", now=NOW)
    stale = 2 * MINUTE
    later = NOW + 3 * MINUTE
    recovered = job_store.recover_orphans(
        engine, now=later, stale_after=stale, alive_worker_ids=["alive"]
    )
    assert [job.id for job in recovered] == [dead.id]
    assert recovered[0].status == "failed" and recovered[0].finished_at == later
    assert recovered[0].error is not None and "worker dead" in recovered[0].error
    spared = job_store.get_job(engine, alive.id)
    assert spared is not None and spared.status == "running"
    assert [j.id for j in job_store.recover_orphans(engine, now=later, stale_after=stale)] == [
        alive.id
    ]


def test_schedule_claims_happen_once_per_due_time(engine: Engine) -> None:
    claim = {"now": NOW, "first_run_at": NOW, "next_run_at": NOW + MINUTE}
    assert job_store.claim_schedule(engine, "refresh", **claim)
    assert not job_store.claim_schedule(engine, "refresh", **claim)  # next run is later
    assert job_store.claim_schedule(engine, "refresh", **claim, force=True)
    assert not job_store.claim_schedule(
        engine, "retrain", now=NOW, first_run_at=NOW + MINUTE, next_run_at=None
    )  # created, not yet due
    job_store.record_schedule_job(engine, "refresh", "job-1")
    stored = job_store.schedules(engine)
    assert sorted(stored) == ["refresh", "retrain"]
    assert stored["refresh"] == job_store.Schedule("refresh", NOW, NOW + MINUTE, "job-1")
    assert stored["retrain"] == job_store.Schedule("retrain", None, NOW + MINUTE, None)


def test_replan_stores_only_changed_plans(engine: Engine) -> None:
    for name in ("refresh", "retrain"):
        job_store.claim_schedule(engine, name, now=NOW, first_run_at=NOW, next_run_at=NOW + MINUTE)
    changed = job_store.replan_schedules(
        engine,
        lambda row: NOW + 5 * MINUTE if row.name == "retrain" else row.next_run_at,
    )
    assert changed == {"retrain": NOW + 5 * MINUTE}
    assert job_store.schedules(engine)["retrain"].next_run_at == NOW + 5 * MINUTE
    assert job_store.schedules(engine)["refresh"].next_run_at == NOW + MINUTE
