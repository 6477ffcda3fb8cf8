"""The job worker: real use cases as jobs, progress, cancellation, failures, side server, crashes."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine

from btc_predictor.config import Settings
from btc_predictor.errors import UnavailableError
from btc_predictor.forecasting.executors import SerialExecutor
from btc_predictor.jobs import handlers, worker
from btc_predictor.jobs import queue as jobs
from btc_predictor.jobs.handlers import JobContext, Progress
from btc_predictor.jobs.side_server import SideServer
from btc_predictor.jobs.worker import Worker, run_worker
from btc_predictor.services import ledger
from btc_predictor.services.forecast import predict
from btc_predictor.services.ingest import ingest
from btc_predictor.services.training import train
from btc_predictor.shapes.requests import ForecastRequest, IngestRequest, TrainRequest
from btc_predictor.storage.db import create_db_engine, read_session, upgrade
from btc_predictor.storage.model_store import list_versions
from btc_predictor.telemetry import JOBS_TOTAL
from tests.conftest import NOW
from tests.factories import FakeSource, make_candles
from tests.services import test_risk_ledger


def quiet(settings: Settings, **changes: Any) -> Settings:
    """The settings with no tracked assets, so no schedule adds jobs behind the test's back."""
    return settings.model_copy(update={"assets": [], **changes})


def make_worker(settings: Settings, engine: Engine, **kwargs: Any) -> Worker:
    return Worker(quiet(settings), engine, clock=lambda: NOW, worker_id="test-worker", **kwargs)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def status(engine: Engine, job_id: str) -> str:
    return str(jobs.get_job(engine, job_id)["status"])


def ended(kind: str, state: str) -> float:
    return (
        REGISTRY.get_sample_value("bitcoin_lstm_jobs_total", {"kind": kind, "status": state}) or 0.0
    )


@pytest.fixture
def btc(settings: Settings, engine: Engine, shared_data: Path) -> Engine:
    """The real Bitstamp BTC/USD history ingested."""
    ingest(
        settings,
        engine,
        IngestRequest(asset="BTC-USD", path=shared_data / "Bitstamp_BTCUSD_d.csv"),
        now=NOW,
    )
    return engine


@pytest.fixture
def sqlite_btc(sqlite_settings: Settings, shared_data: Path) -> Iterator[Engine]:
    """A migrated SQLite engine holding the real BTC/USD history."""
    engine = create_db_engine(sqlite_settings)
    upgrade(engine)
    ingest(
        sqlite_settings,
        engine,
        IngestRequest(asset="BTC-USD", path=shared_data / "Bitstamp_BTCUSD_d.csv"),
        now=NOW,
    )
    yield engine
    engine.dispose()


def test_ingest_job_fetches_through_the_source_factory(settings: Settings, engine: Engine) -> None:
    source = FakeSource("yahoo", make_candles(date(2025, 10, 1), 61))
    runner = make_worker(settings, engine, source_factory=lambda spec: source)
    job = jobs.submit(engine, settings, kind="ingest", params={"asset": "btc-usd"}, now=NOW)
    assert runner.run_once() and not runner.run_once()
    done = jobs.get_job(engine, job["id"])
    assert (done["status"], done["progress"], done["error"]) == ("succeeded", 1.0, None)
    result = done["result"]
    assert (result["asset"], result["source"], result["inserted"], result["last"]) == (
        "BTC-USD",
        "yahoo",
        61,
        "2025-11-30",
    )
    assert "ledger" in result and "follow_up_job_id" not in result
    assert source.calls == [(None, date(2025, 12, 1))]


def test_ingest_job_never_reads_a_server_file(sqlite_settings: Settings, shared_data: Path) -> None:
    engine = create_db_engine(sqlite_settings)
    upgrade(engine)
    # Even a job that bypassed ``submit`` is checked again by the worker.
    path = str(shared_data / "Bitstamp_BTCUSD_d.csv")
    job = jobs.enqueue(engine, kind="ingest", params={"asset": "BTC-USD", "path": path}, now=NOW)
    make_worker(sqlite_settings, engine).run_once()
    failed = jobs.get_job(engine, job["id"])
    assert failed["status"] == "failed" and "`path`: is not accepted" in failed["error"]
    engine.dispose()


def test_a_ledger_scoring_bug_does_not_fail_the_ingest(
    monkeypatch: pytest.MonkeyPatch, sqlite_settings: Settings
) -> None:
    engine = create_db_engine(sqlite_settings)
    upgrade(engine)

    def score_ledger(engine: Engine, asset: str, *, now: Any) -> int:
        raise ValueError("bad row")

    monkeypatch.setattr(ledger, "score_ledger", score_ledger)
    monkeypatch.setattr(ledger, "score_risk_ledger", score_ledger)
    source = FakeSource("yahoo", make_candles(date(2025, 11, 1), 30))
    job = jobs.submit(engine, sqlite_settings, kind="ingest", params={}, now=NOW)
    make_worker(sqlite_settings, engine, source_factory=lambda spec: source).run_once()
    done = jobs.get_job(engine, job["id"])
    # The candles are stored by then: a scoring bug is reported, not turned into a failed ingest.
    assert done["status"] == "succeeded" and done["result"]["inserted"] == 30
    assert done["result"]["ledger"] == {"error": "ValueError: bad row"}
    assert done["result"]["risk_ledger"] == {"error": "ValueError: bad row"}
    engine.dispose()


def test_an_ingest_job_scores_the_risk_ledger(sqlite_settings: Settings) -> None:
    engine = create_db_engine(sqlite_settings)
    upgrade(engine)
    first, second = test_risk_ledger.risk().points  # moved a day back: 11-30 and 12-01
    served = test_risk_ledger.risk().model_copy(
        update={
            "as_of": NOW.replace(day=30, month=11, hour=0),
            "points": [
                first.model_copy(update={"target_date": date(2025, 11, 30)}),
                second.model_copy(update={"target_date": date(2025, 12, 1)}),
            ],
        }
    )
    rows = ledger.risk_entry_rows(served, price_version=None, p_up=[None, None], now=NOW)
    ledger.record_risk_rows(engine, rows)
    source = FakeSource("yahoo", make_candles(date(2025, 11, 1), 30))  # through 11-30
    job = jobs.submit(engine, sqlite_settings, kind="ingest", params={}, now=NOW)
    make_worker(sqlite_settings, engine, source_factory=lambda spec: source).run_once()
    done = jobs.get_job(engine, job["id"])
    assert done["status"] == "succeeded" and done["result"]["risk_ledger"] == 1
    scored = [
        r.horizon for r in ledger.list_risk_predictions(engine, asset="BTC-USD") if r.scored_at
    ]
    assert scored == [1]
    engine.dispose()


def test_train_retrain_and_backtest_jobs_on_real_data(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, btc: Engine
) -> None:
    runner = make_worker(settings, btc, executor=SerialExecutor())
    job = jobs.submit(
        btc, settings, kind="train", params={"model": "drift", "promote": "always"}, now=NOW
    )
    runner.run_once()
    done = jobs.get_job(btc, job["id"])
    assert done["status"] == "succeeded", done["error"]
    result = done["result"]
    assert (result["model"], result["promoted"], result["data_points_used"]) == (
        "drift",
        True,
        2890,
    )
    assert (
        result["metrics"]["mase"] > 0 and "calibration" not in result
    )  # residuals stay in meta.json

    retrain = jobs.submit(
        btc, settings, kind="retrain", params={"model": "drift", "reason": "weekly"}, now=NOW
    )
    runner.run_once()
    again = jobs.get_job(btc, retrain["id"])["result"]
    assert again["reason"] == "weekly" and again["version"] == result["version"] + 1
    assert not again["promoted"] and "baseline" in again["promotion_reason"]  # promote=auto rule

    writes: list[tuple[float, str]] = []
    real = jobs.report_progress

    def recording(engine: Engine, job_id: str, progress: float, message: str, now: Any) -> bool:
        writes.append((progress, message))
        return real(engine, job_id, progress, message, now)

    monkeypatch.setattr(worker, "report_progress", recording)
    monkeypatch.setattr(worker, "MIN_WRITE_INTERVAL", 0.0)
    params = {"model": "naive", "days": 20, "horizon": 3, "refit_every": 10}
    backtest = jobs.submit(btc, settings, kind="backtest", params=params, now=NOW)
    runner.run_once()
    report = jobs.get_job(btc, backtest["id"])
    assert report["status"] == "succeeded", report["error"]
    assert (report["result"]["model"], report["result"]["folds"]) == ("naive", 2)
    assert {row["h"] for row in report["result"]["series"]} == {1, 2, 3}
    assert writes == [(0.0, "backtesting naive on BTC-USD"), (0.5, "fold 1/2"), (1.0, "fold 2/2")]


def test_progress_writes_are_throttled(
    monkeypatch: pytest.MonkeyPatch, sqlite_settings: Settings
) -> None:
    engine = create_db_engine(sqlite_settings)
    upgrade(engine)
    writes: list[str] = []
    monkeypatch.setattr(worker, "report_progress", lambda *args: writes.append(args[3]) or False)

    def chatty(ctx: JobContext, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
        for step in range(2000):
            progress(step / 2000, f"step {step}")
        return {"steps": 2000}

    jobs.enqueue(engine, kind="backtest", params={"asset": "BTC-USD"}, now=NOW)
    make_worker(sqlite_settings, engine, handlers={"backtest": chatty}).run_once()
    assert writes[0] == "step 0" and len(writes) <= 3  # 2000 reports, at most 2 writes a second
    engine.dispose()


def test_cancelling_a_running_job_stops_it_at_the_next_report(
    settings: Settings, engine: Engine
) -> None:
    steps: list[int] = []

    def slow(ctx: JobContext, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
        jobs.cancel_job(ctx.engine, ctx.job_id, now=NOW)  # as the API would, from elsewhere
        for step in range(500):
            steps.append(step)
            progress(step / 500, f"step {step}")
            time.sleep(0.01)
        return {}

    job = jobs.enqueue(engine, kind="backtest", params={"asset": "BTC-USD"}, now=NOW)
    before = ended("backtest", "cancelled")
    make_worker(settings, engine, handlers={"backtest": slow}).run_once()
    done = jobs.get_job(engine, job["id"])
    assert (done["status"], done["message"], done["result"]) == (
        "cancelled",
        "cancelled while running",
        None,
    )
    assert len(steps) < 200
    assert ended("backtest", "cancelled") == before + 1


def test_failing_jobs_store_a_clear_error(
    settings: Settings, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(ctx: JobContext, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
        raise RuntimeError("boom")

    # Queued directly: submit now refuses a training with no data at the door (409).
    params = {"asset": "BTC-USD", "model": "naive"}
    no_data = jobs.enqueue(engine, kind="train", params=params, now=NOW)
    crash = jobs.enqueue(
        engine, kind="ingest", params={"asset": "BTC-USD"}, now=NOW + timedelta(seconds=1)
    )
    unknown = jobs.enqueue(
        engine, kind="retrain", params={"asset": "BTC-USD"}, now=NOW + timedelta(seconds=2)
    )
    runner = make_worker(settings, engine, handlers={"train": handlers.run_train, "ingest": broken})
    with caplog.at_level(logging.ERROR, logger="btc_predictor.jobs.worker"):
        while runner.run_once():
            pass
    errors = {
        job_id: jobs.get_job(engine, job_id)
        for job_id in (no_data["id"], crash["id"], unknown["id"])
    }
    assert all(job["status"] == "failed" for job in errors.values())
    assert (
        errors[no_data["id"]]["error"]
        == "no data for BTC-USD from 2018-01-01: run `btc-predictor ingest --asset BTC-USD`"
    )
    assert errors[crash["id"]]["error"] == "unexpected error: RuntimeError: boom"
    assert errors[unknown["id"]]["error"] == "this worker cannot run retrain jobs"
    assert (
        "Traceback" in caplog.text and "RuntimeError: boom" in caplog.text
    )  # logged with traceback


def test_a_worker_frozen_past_staleness_cannot_overwrite_the_verdict(
    sqlite_settings: Settings,
) -> None:
    engine = create_db_engine(sqlite_settings)
    upgrade(engine)

    def frozen(ctx: JobContext, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
        # Another worker decides this one died while it was unresponsive.
        jobs.recover_orphans(engine, now=NOW + timedelta(hours=1), stale_after=timedelta(minutes=2))
        return {"late": True}

    job = jobs.enqueue(engine, kind="backtest", params={"asset": "BTC-USD"}, now=NOW)
    runner = make_worker(sqlite_settings, engine, handlers={"backtest": frozen})
    assert runner._execute(jobs.claim_next(engine, worker_id=runner.worker_id, now=NOW)) == "failed"  # type: ignore[arg-type]
    done = jobs.get_job(engine, job["id"])
    assert done["result"] is None and done["error"].startswith("worker died while running this job")
    engine.dispose()


def test_a_stopping_worker_requeues_its_running_job(sqlite_settings: Settings) -> None:
    engine = create_db_engine(sqlite_settings)
    upgrade(engine)
    stop = threading.Event()

    def interrupted(ctx: JobContext, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
        stop.set()  # SIGTERM arrives mid-job
        progress(0.5, "halfway")
        return {}

    job = jobs.enqueue(engine, kind="backtest", params={"asset": "BTC-USD"}, now=NOW)
    make_worker(sqlite_settings, engine, handlers={"backtest": interrupted}).run_forever(stop)
    back = jobs.get_job(engine, job["id"])
    assert (back["status"], back["started_at"], back["message"]) == (
        "queued",
        None,
        "requeued: its worker was stopped",
    )
    engine.dispose()


def test_a_failing_tick_is_logged_and_retried(
    monkeypatch: pytest.MonkeyPatch, sqlite_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_db_engine(sqlite_settings)
    upgrade(engine)
    stop, calls = threading.Event(), []

    def flaky(*args: Any, **kwargs: Any) -> list[str]:
        calls.append(kwargs["starting"])
        if len(calls) == 1:
            raise UnavailableError("database unreachable: connection refused")
        stop.set()
        return []

    monkeypatch.setattr(worker, "enqueue_due", flaky)
    runner = Worker(
        quiet(sqlite_settings, worker_poll=timedelta(seconds=0.01)), engine, clock=lambda: NOW
    )
    with caplog.at_level(logging.ERROR, logger="btc_predictor.jobs.worker"):
        runner.run_forever(stop)
    assert calls == [True, True]  # the start-up tick is retried as a start-up tick
    assert "worker tick failed" in caplog.text and "connection refused" in caplog.text
    engine.dispose()


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_side_server_answers_liveness_and_metrics() -> None:
    JOBS_TOTAL.labels("backtest", "succeeded").inc(0)  # make sure the series exists
    server = SideServer("w-test", port=0)
    try:
        base = f"http://127.0.0.1:{server.port}"
        code, kind, body = get(f"{base}/health/live")
        assert (code, kind, json.loads(body)) == (
            200,
            "application/json",
            {"status": "ok", "worker_id": "w-test"},
        )
        code, kind, body = get(f"{base}/metrics")
        assert code == 200 and kind.startswith("text/plain")
        assert b'bitcoin_lstm_jobs_total{kind="backtest",status="succeeded"}' in body
        assert b"process_cpu_seconds_total" in body
        code, _, body = get(f"{base}/admin")
        assert code == 404 and json.loads(body)["code"] == "not_found"
    finally:
        server.close()


def test_run_worker_runs_jobs_until_stopped(sqlite_settings: Settings) -> None:
    settings = quiet(sqlite_settings, worker_port=0, worker_poll=timedelta(seconds=0.05))
    engine = create_db_engine(settings)
    upgrade(engine)
    # Queued directly: submit refuses a training with no data at the door (409).
    params = {"asset": "BTC-USD", "model": "naive"}
    job = jobs.enqueue(engine, kind="train", params=params, now=NOW)
    stop = threading.Event()
    thread = threading.Thread(target=run_worker, args=(settings,), kwargs={"stop": stop})
    thread.start()
    try:
        wait_for(lambda: status(engine, job["id"]) == "failed", 20, "the job to run")
    finally:
        stop.set()
        thread.join(timeout=20)
    assert not thread.is_alive()
    assert "no data for BTC-USD" in jobs.get_job(engine, job["id"])["error"]
    engine.dispose()


WORKER_SCRIPT = """
from btc_predictor.config import Settings
from btc_predictor.logs import configure_logging
from btc_predictor.jobs.worker import run_worker

settings = Settings()
configure_logging(settings)
run_worker(settings)
"""


def start_worker(data_dir: Path, **env: str) -> subprocess.Popen[bytes]:
    """``btc-predictor worker`` in a separate process on the test's SQLite database."""
    environment = {
        **os.environ,
        "BTCP_DATA_DIR": str(data_dir),
        "BTCP_ASSETS": "",
        "BTCP_WORKER_PORT": "0",
        "BTCP_WORKER_POLL": "0.1s",
        **env,
    }
    environment.pop("BTCP_DATABASE_URL", None)
    return subprocess.Popen(
        [sys.executable, "-c", WORKER_SCRIPT], env=environment, stderr=subprocess.PIPE
    )


@pytest.mark.slow
def test_a_worker_killed_mid_training_leaves_a_failed_job_and_the_old_model(
    sqlite_settings: Settings, sqlite_btc: Engine
) -> None:
    engine = sqlite_btc
    active = train(sqlite_settings, engine, TrainRequest(model="naive", promote="always"), now=NOW)
    # Early stopping (patience 5) makes ≥ 12 epochs of ~2000 windows: seconds past the kill.
    params = {"model": "lstm", "epochs": 500, "start": "2020-01-01", "promote": "always"}
    job = jobs.submit(engine, sqlite_settings, kind="train", params=params, now=NOW)
    doomed = start_worker(sqlite_settings.data_dir, BTCP_JOB_STALE_AFTER="1s")
    try:
        wait_for(lambda: jobs.get_job(engine, job["id"])["progress"] > 0, 90, "training to start")
    finally:
        doomed.kill()  # SIGKILL: no cleanup of any kind
        doomed.communicate()
    assert status(engine, job["id"]) == "running", "training ended before the kill"

    survivor = start_worker(sqlite_settings.data_dir, BTCP_JOB_STALE_AFTER="1s")
    try:
        wait_for(lambda: status(engine, job["id"]) == "failed", 60, "orphan recovery")
    finally:
        survivor.send_signal(signal.SIGTERM)
        _, stderr = survivor.communicate(timeout=30)
    assert survivor.returncode == 0, stderr.decode()[-2000:]
    assert b"stopped" in stderr
    assert jobs.get_job(engine, job["id"])["error"].startswith("worker died while running this job")
    forecast = predict(sqlite_settings, engine, ForecastRequest(), now=NOW)
    assert (forecast.model, forecast.model_version) == ("naive", active.version)
    with read_session(engine) as session:
        assert [v.id for v in list_versions(session=session)] == [active.version]


# --- worker rows: heartbeats, dead neighbours, a taken port (issue 12) --------------------


def exited_pid() -> int:
    """The pid of a process that has already ended (and was reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_worker_fails_the_job_of_a_dead_neighbour_at_once(
    sqlite_settings: Settings, engine: Engine
) -> None:
    from datetime import UTC, datetime

    from btc_predictor.services.workers import pid_scope
    from btc_predictor.storage import job_store, worker_store
    from btc_predictor.storage.worker_store import WorkerRecord

    params = {"asset": "BTC-USD", "model": "naive"}
    jobs.enqueue(engine, kind="train", params=params, now=NOW)
    jobs.enqueue(engine, kind="backtest", params={"asset": "BTC-USD"}, now=NOW)
    lost = job_store.claim_next(engine, worker_id="dead-w", now=NOW)
    kept = job_store.claim_next(engine, worker_id="live-w", now=NOW)
    assert lost is not None and kept is not None
    dead_pid = exited_pid()
    # Both beat just now: the heartbeat-age rule alone would wait job_stale_after (2 min).
    dead = WorkerRecord("dead-w", "h", dead_pid, pid_scope(), True, NOW, NOW)
    alive = WorkerRecord("live-w", "h", os.getpid(), pid_scope(), True, datetime.now(UTC), NOW)
    elsewhere = WorkerRecord("far-w", "h", dead_pid, "other-boot:1", False, NOW, NOW)
    for row in (dead, alive, elsewhere):
        worker_store.beat(engine, row, NOW)
    recovered = make_worker(sqlite_settings, engine).recover_orphans()
    assert recovered == [lost.id]
    failed = jobs.get_job(engine, lost.id)
    assert failed["status"] == "failed"
    assert failed["error"] == (
        f"worker died while running this job (worker dead-w, pid {dead_pid}: its process is "
        "gone); submit it again"
    )
    assert jobs.get_job(engine, kept.id)["status"] == "running"
    assert {r.id for r in worker_store.in_scope(engine, pid_scope())} == {"live-w"}
    assert [r.id for r in worker_store.in_scope(engine, "other-boot:1")] == ["far-w"]


def test_a_running_worker_beats_its_row_and_removes_it_when_stopped(
    sqlite_settings: Settings,
) -> None:
    from btc_predictor.services.workers import pid_scope
    from btc_predictor.storage import worker_store

    settings = quiet(sqlite_settings, worker_port=0, worker_poll=timedelta(seconds=0.05))
    engine = create_db_engine(settings)
    upgrade(engine)
    stop = threading.Event()
    thread = threading.Thread(target=run_worker, args=(settings,), kwargs={"stop": stop})
    thread.start()
    try:
        wait_for(lambda: worker_store.in_scope(engine, pid_scope()), 20, "the worker row")
        (row,) = worker_store.in_scope(engine, pid_scope())
        assert (row.pid, row.embedded) == (os.getpid(), False)
        wait_for(
            lambda: worker_store.in_scope(engine, pid_scope())[0].heartbeat_at > row.heartbeat_at,
            10,
            "a second heartbeat",
        )
    finally:
        stop.set()
        thread.join(timeout=20)
    assert not thread.is_alive()
    assert worker_store.in_scope(engine, pid_scope()) == []
    engine.dispose()


def test_a_taken_worker_port_is_one_clear_error(sqlite_settings: Settings) -> None:
    import socket

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        settings = quiet(sqlite_settings, worker_port=port)
        with pytest.raises(UnavailableError, match=rf"worker port 127.0.0.1:{port} is taken"):
            run_worker(settings, stop=threading.Event())
