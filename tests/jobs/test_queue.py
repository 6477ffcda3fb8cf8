"""The persisted job queue on both backends: enqueue, dedupe, claim, progress, cancel, orphans."""

from __future__ import annotations

import threading
import uuid
from datetime import date, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine

from btc_predictor.config import Settings
from btc_predictor.errors import InvalidInputError, JobNotFoundError, JobRunningError
from btc_predictor.jobs import params as job_params
from btc_predictor.jobs import queue as jobs
from btc_predictor.services.ingest import ingest
from btc_predictor.shapes.requests import BacktestRequest, IngestJob, IngestRequest
from btc_predictor.storage.db import create_db_engine
from tests.conftest import NOW
from tests.factories import FakeSource, make_candles

JOB_KEYS = {
    "id",
    "kind",
    "status",
    "progress",
    "message",
    "params",
    "created_at",
    "started_at",
    "finished_at",
    "result",
    "error",
}
MINUTE = timedelta(minutes=1)


def ended(kind: str, status: str) -> float:
    """Current value of bitcoin_lstm_jobs_total{kind, status}."""
    return (
        REGISTRY.get_sample_value("bitcoin_lstm_jobs_total", {"kind": kind, "status": status})
        or 0.0
    )


def test_enqueue_get_and_json_shape(engine: Engine) -> None:
    job = jobs.enqueue(engine, kind="backtest", params={"asset": "BTC-USD", "days": 30}, now=NOW)
    assert job.keys() == JOB_KEYS
    assert uuid.UUID(job["id"]).version == 4
    assert (job["kind"], job["status"], job["progress"], job["params"]) == (
        "backtest",
        "queued",
        0.0,
        {"asset": "BTC-USD", "days": 30},
    )
    assert job["created_at"] == "2025-12-01T06:00:00+00:00"
    assert job["started_at"] is job["finished_at"] is job["result"] is job["error"] is None
    assert jobs.get_job(engine, job["id"]) == job
    assert jobs.get_job(engine, job["id"].upper().replace("-", "")) == job  # any UUID spelling


def test_unknown_or_malformed_ids_are_not_found(engine: Engine) -> None:
    for job_id in (str(uuid.uuid4()), "not-a-uuid", "../etc/passwd", ""):
        with pytest.raises(JobNotFoundError, match="no job"):
            jobs.get_job(engine, job_id)
        with pytest.raises(JobNotFoundError):
            jobs.cancel_job(engine, job_id, now=NOW)


def test_unknown_kind_is_rejected(sqlite_settings: Settings) -> None:
    engine = create_db_engine(sqlite_settings)  # rejected before any query
    with pytest.raises(InvalidInputError, match="unknown job kind `deploy`"):
        jobs.enqueue(engine, kind="deploy", params={}, now=NOW)
    engine.dispose()


@pytest.fixture
def stored(settings: Settings, engine: Engine) -> Engine:
    """BTC-USD and ETH-USD candles stored, so trainings of either can be queued."""
    for asset in ("BTC-USD", "ETH-USD"):
        source = FakeSource("yahoo", make_candles(date(2024, 1, 1), 400))
        request = IngestRequest(asset=asset, source="yahoo")
        ingest(settings, engine, request, now=NOW, source_factory=lambda _, s=source: s)
    return engine


def test_submit_normalises_params_and_dedupes_training_per_asset_and_model(
    settings: Settings, stored: Engine
) -> None:
    engine = stored
    first = jobs.submit(
        engine, settings, kind="train", params={"asset": "btc-usd", "epochs": 3}, now=NOW
    )
    # No model: the defaults (risk, then price), recorded as such and deduped as one key.
    assert first["params"] == {"asset": "BTC-USD", "epochs": 3}
    for kind, params in (
        ("train", {}),
        ("retrain", {"asset": "BTC/USD", "reason": "weekly"}),
    ):
        with pytest.raises(
            JobRunningError,
            match=f"train job {first['id']} is already queued for `train:BTC-USD:default`",
        ):
            jobs.submit(engine, settings, kind=kind, params=params, now=NOW)
    lstm = jobs.submit(engine, settings, kind="train", params={"model": "lstm"}, now=NOW)
    with pytest.raises(JobRunningError, match=f"{lstm['id']} is already queued for `train:BTC-"):
        jobs.submit(engine, settings, kind="retrain", params={"model": "lstm"}, now=NOW)
    jobs.submit(engine, settings, kind="train", params={"model": "drift"}, now=NOW)  # other model
    jobs.submit(engine, settings, kind="train", params={"asset": "ETH-USD"}, now=NOW)  # other asset
    jobs.submit(engine, settings, kind="backtest", params={}, now=NOW)
    jobs.submit(engine, settings, kind="backtest", params={}, now=NOW)  # backtests never collide
    jobs.cancel_job(engine, first["id"], now=NOW)
    again = jobs.submit(engine, settings, kind="train", params={}, now=NOW)  # slot freed
    assert again["id"] != first["id"]


def test_dedupe_keys() -> None:
    assert jobs.dedupe_key_for("train", {"asset": "BTC-USD", "model": "gru"}) == "train:BTC-USD:gru"
    assert (
        jobs.dedupe_key_for("retrain", {"asset": "BTC-USD", "model": "gru"}) == "train:BTC-USD:gru"
    )
    assert jobs.dedupe_key_for("ingest", {"asset": "ETH-USD", "force": True}) == "ingest:ETH-USD"
    assert jobs.dedupe_key_for("backtest", {"asset": "BTC-USD"}) is None


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("ingest", {"asset": "BTC-USD", "path": "/etc/passwd"}, "`path`: is not accepted"),
        ("ingest", {"asset": "BTC-USD", "source": "csv"}, "csv reads a file on the server"),
        ("ingest", {"asset": "BTC-USD", "source": "ftp"}, "unknown source `ftp`"),
        (
            "ingest",
            {"asset": "BTC-USD", "since": "2024-13-01"},
            "`since`: `2024-13-01` is not a day",
        ),
        ("ingest", {"asset": "BTC-USD", "since": 0}, "`since`: `0` is not a day"),
        ("ingest", {"asset": "BTC-USD", "force": "yes"}, "`force`: Input should be a valid bool"),
        ("ingest", {"force": 0}, "`force`: Input should be a valid bool"),
        ("train", {"asset": "BTCUSD"}, "`asset`: `BTCUSD` is not of the form BASE-QUOTE"),
        ("train", {"model": "prophet"}, "`model`: unknown model `prophet` \\(valid models: naive"),
        ("train", {"epochs": 0}, "`epochs`: Input should be greater than or equal to 1"),
        ("train", {"seed": True}, "`seed`: Input should be a valid integer"),
        ("train", {"seed": 2**31}, "`seed`: Input should be less than or equal to 2147483647"),
        ("train", {"seed": 2**70}, "`seed`: Input should be less than or equal to 2147483647"),
        ("train", {"promote": "sometimes"}, "`promote`: Input should be 'auto', 'always'"),
        ("retrain", {"promote": "always"}, "retrain parameter `promote`: is not accepted"),
        ("backtest", {"level": 100}, "`level`: Input should be less than or equal to 99"),
        ("backtest", {"days": 30, "start": "2024-01-01"}, "give days or start, not both"),
        ("backtest", {"window": 3, "zeta": 1}, "`window`: is not accepted \\(accepted: asset"),
        ("launch", {}, "unknown job kind `launch`"),
    ],
)
def test_params_are_refused_with_the_field_named(
    sqlite_settings: Settings, kind: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        job_params.normalize_params(sqlite_settings, kind, params)


def test_params_fill_the_model_default_and_normalise_the_asset(sqlite_settings: Settings) -> None:
    clean = job_params.normalize_params(
        sqlite_settings,
        "backtest",
        {"model": None, "start": "2024-01-05", "days": None, "level": 80},
    )
    assert clean == BacktestRequest.model_validate(
        {"model": "lstm", "start": "2024-01-05", "level": 80}
    )
    ingest = job_params.normalize_params(sqlite_settings, "ingest", {"asset": "eth-usd"})
    assert ingest == IngestJob(asset="ETH-USD")


def test_every_job_kind_has_a_params_shape_and_a_handler() -> None:
    from btc_predictor.jobs.handlers import HANDLERS
    from btc_predictor.shapes.jobs import JOB_KINDS, JOB_PARAMS

    assert set(JOB_PARAMS) == set(HANDLERS) == set(JOB_KINDS)


def test_list_jobs_newest_first_with_filters(engine: Engine) -> None:
    ids = [
        jobs.enqueue(engine, kind=kind, params={}, now=NOW + i * MINUTE)["id"]
        for i, kind in enumerate(["ingest", "backtest", "ingest"])
    ]
    assert [j["id"] for j in jobs.list_jobs(engine)] == ids[::-1]
    assert [j["id"] for j in jobs.list_jobs(engine, kind="ingest")] == [ids[2], ids[0]]
    assert [j["id"] for j in jobs.list_jobs(engine, limit=1)] == [ids[2]]
    jobs.cancel_job(engine, ids[1], now=NOW)
    assert [j["id"] for j in jobs.list_jobs(engine, status="cancelled")] == [ids[1]]
    for bad in ({"kind": "nope"}, {"status": "done"}, {"limit": 0}, {"limit": 5000}):
        with pytest.raises(InvalidInputError):
            jobs.list_jobs(engine, **bad)


def test_claim_runs_oldest_first_and_finish_records_the_result(engine: Engine) -> None:
    late = jobs.enqueue(engine, kind="backtest", params={}, now=NOW + MINUTE)
    early = jobs.enqueue(engine, kind="backtest", params={}, now=NOW)
    claimed = jobs.claim_next(engine, worker_id="w1", now=NOW + 2 * MINUTE)
    assert claimed is not None and (claimed.id, claimed.kind, claimed.worker_id) == (
        early["id"],
        "backtest",
        "w1",
    )
    running = jobs.get_job(engine, early["id"])
    assert (
        running["status"] == "running" and running["started_at"] == (NOW + 2 * MINUTE).isoformat()
    )
    assert jobs.report_progress(engine, claimed.id, 1.7, "fold 3/2", NOW + 3 * MINUTE) is False
    assert jobs.get_job(engine, claimed.id)["progress"] == 1.0  # clamped
    before = ended("backtest", "succeeded")
    assert jobs.finish(engine, claimed.id, {"mase": 0.98}, NOW + 4 * MINUTE)
    done = jobs.get_job(engine, claimed.id)
    assert (done["status"], done["result"], done["finished_at"]) == (
        "succeeded",
        {"mase": 0.98},
        (NOW + 4 * MINUTE).isoformat(),
    )
    assert ended("backtest", "succeeded") == before + 1
    assert not jobs.fail(engine, claimed.id, "late", NOW)  # ended jobs stay ended
    assert jobs.get_job(engine, late["id"])["status"] == "queued"


def test_cancel_queued_running_and_finished_jobs(engine: Engine) -> None:
    queued = jobs.enqueue(engine, kind="ingest", params={}, now=NOW)
    cancelled = jobs.cancel_job(engine, queued["id"], now=NOW + MINUTE)
    assert (cancelled["status"], cancelled["finished_at"]) == (
        "cancelled",
        (NOW + MINUTE).isoformat(),
    )
    assert jobs.claim_next(engine, worker_id="w1", now=NOW) is None

    running = jobs.enqueue(engine, kind="train", params={}, now=NOW)
    assert jobs.claim_next(engine, worker_id="w1", now=NOW) is not None
    asked = jobs.cancel_job(engine, running["id"], now=NOW)
    assert (asked["status"], asked["message"]) == ("running", "cancellation requested")
    assert jobs.heartbeat(engine, running["id"], NOW) is True  # the worker learns it must stop
    assert jobs.mark_cancelled(engine, running["id"], NOW + MINUTE)
    assert jobs.get_job(engine, running["id"])["status"] == "cancelled"
    assert jobs.cancel_job(engine, running["id"], now=NOW) == jobs.get_job(
        engine, running["id"]
    )  # unchanged, no error


def test_failed_job_keeps_its_error(engine: Engine) -> None:
    job = jobs.enqueue(engine, kind="ingest", params={}, now=NOW)
    jobs.claim_next(engine, worker_id="w1", now=NOW)
    assert jobs.fail(engine, job["id"], "yahoo: HTTP 503", NOW)
    failed = jobs.get_job(engine, job["id"])
    assert (failed["status"], failed["error"], failed["result"]) == (
        "failed",
        "yahoo: HTTP 503",
        None,
    )


def test_two_threads_submitting_the_same_training_at_once_exactly_one_wins(
    settings: Settings, stored: Engine
) -> None:
    engine = stored
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def submit() -> None:
        barrier.wait()
        try:
            outcomes.append(
                jobs.submit(engine, settings, kind="train", params={"asset": "BTC-USD"}, now=NOW)
            )
        except JobRunningError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    won = [o for o in outcomes if isinstance(o, dict)]
    lost = [o for o in outcomes if isinstance(o, JobRunningError)]
    assert len(won) == len(lost) == 1
    assert won[0]["id"] in str(lost[0])
    assert len(jobs.list_jobs(engine)) == 1


def test_the_unique_index_alone_rejects_a_duplicate(engine: Engine) -> None:
    # enqueue has no pre-check: the partial unique index decides, also across replicas.
    first = jobs.enqueue(engine, kind="ingest", params={}, now=NOW, dedupe_key="ingest:BTC-USD")
    jobs.claim_next(engine, worker_id="w1", now=NOW)
    with pytest.raises(JobRunningError, match=f"ingest job {first['id']} is already running"):
        jobs.enqueue(engine, kind="ingest", params={}, now=NOW, dedupe_key="ingest:BTC-USD")
    jobs.finish(engine, first["id"], {}, NOW)
    jobs.enqueue(
        engine, kind="ingest", params={}, now=NOW, dedupe_key="ingest:BTC-USD"
    )  # ended jobs do not hold it


def test_concurrent_claimers_never_get_the_same_job(engine: Engine) -> None:
    queued = {
        jobs.enqueue(engine, kind="backtest", params={}, now=NOW + i * MINUTE)["id"]
        for i in range(8)
    }
    barrier = threading.Barrier(3)
    claimed: list[str] = []

    def claim(worker_id: str) -> None:
        barrier.wait()
        while (job := jobs.claim_next(engine, worker_id=worker_id, now=NOW)) is not None:
            claimed.append(job.id)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(queued)  # each exactly once


def test_orphans_of_dead_workers_are_failed_with_a_reason(engine: Engine) -> None:
    dead = jobs.enqueue(engine, kind="train", params={}, now=NOW)
    jobs.claim_next(engine, worker_id="dead-worker", now=NOW)
    alive = jobs.enqueue(engine, kind="backtest", params={}, now=NOW)
    jobs.claim_next(engine, worker_id="live-worker", now=NOW)
    stale = timedelta(minutes=2)
    assert (
        jobs.recover_orphans(engine, now=NOW + MINUTE, stale_after=stale) == []
    )  # heartbeats are fresh
    jobs.heartbeat(engine, alive["id"], NOW + 2 * MINUTE)
    before = ended("train", "failed")
    recovered = jobs.recover_orphans(
        engine, now=NOW + 3 * MINUTE, stale_after=stale, alive_worker_ids=["live-worker"]
    )
    assert recovered == [dead["id"]]
    failed = jobs.get_job(engine, dead["id"])
    assert failed["status"] == "failed" and failed["finished_at"] == (NOW + 3 * MINUTE).isoformat()
    assert failed["error"].startswith(
        "worker died while running this job (worker dead-worker, last heartbeat 2025-12-01T06:00:00+00:00"
    )
    assert ended("train", "failed") == before + 1
    assert jobs.get_job(engine, alive["id"])["status"] == "running"
    # The "dead" worker was only frozen: it is told to stop and cannot resurrect the job.
    assert jobs.report_progress(engine, dead["id"], 0.5, "epoch 9", NOW + 4 * MINUTE) is True
    assert not jobs.finish(engine, dead["id"], {}, NOW + 4 * MINUTE)
    assert jobs.get_job(engine, dead["id"])["status"] == "failed"
    # Without the liveness hint a silent worker's job is recovered too.
    assert jobs.recover_orphans(engine, now=NOW + 10 * MINUTE, stale_after=stale) == [alive["id"]]


def test_requeue_puts_a_running_job_back_unless_cancelled(engine: Engine) -> None:
    job = jobs.enqueue(engine, kind="backtest", params={}, now=NOW)
    jobs.claim_next(engine, worker_id="w1", now=NOW)
    assert jobs.requeue(engine, job["id"], NOW, "requeued: its worker was stopped")
    back = jobs.get_job(engine, job["id"])
    assert (back["status"], back["started_at"], back["message"]) == (
        "queued",
        None,
        "requeued: its worker was stopped",
    )
    jobs.claim_next(engine, worker_id="w2", now=NOW)
    jobs.cancel_job(engine, job["id"], now=NOW)
    assert jobs.requeue(engine, job["id"], NOW, "requeued")
    assert jobs.get_job(engine, job["id"])["status"] == "cancelled"
