"""The worker component of /health: the embedded worker as its supervisor sees it, external
workers by their heartbeat rows, and how a dead process is recognised."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import psutil
from sqlalchemy import Engine

from btc_predictor.config import Settings
from btc_predictor.services import workers
from btc_predictor.services.workers import SupervisorState
from btc_predictor.storage import worker_store
from btc_predictor.storage.worker_store import WorkerRecord
from tests.conftest import NOW


def exited_pid() -> int:
    """The pid of a process that has already ended (and was reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_external_workers_are_alive_only_with_a_recent_heartbeat(
    settings: Settings, engine: Engine
) -> None:
    external = settings.model_copy(update={"embedded_worker": False})
    dead = workers.worker_component(external, engine, NOW)
    assert dead == {"status": "dead", "mode": "external", "alive": 0, "last_heartbeat": None}
    assert workers.worker_reason(dead, external) == (
        "no worker is alive: no worker heartbeat within 120s"
    )
    beat_at = NOW - external.job_stale_after - timedelta(seconds=1)
    worker_store.beat(engine, WorkerRecord("w", "h", 1, None, False, NOW, NOW), beat_at)
    assert workers.worker_component(external, engine, NOW)["status"] == "dead"
    worker_store.beat(engine, WorkerRecord("w", "h", 1, None, False, NOW, NOW), NOW)
    alive = workers.worker_component(external, engine, NOW)
    assert alive == {
        "status": "ok",
        "mode": "external",
        "alive": 1,
        "last_heartbeat": NOW.isoformat(),
    }
    assert workers.worker_reason(alive, external) is None


def test_the_embedded_worker_is_read_from_its_supervisor(
    sqlite_settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    embedded = sqlite_settings.model_copy(update={"metrics_dir": tmp_path})
    path = workers.state_path(embedded)
    assert path == tmp_path / workers.STATE_FILE
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        workers.write_state(path, SupervisorState(os.getpid(), "ok", 2, child.pid))
        ok = workers.worker_component(embedded, engine, NOW)
        assert ok == {"status": "ok", "mode": "embedded", "restarts": 2}
    finally:
        child.kill()
        child.wait()
    # Dead before its supervisor noticed: restarting, not ok.
    restarting = workers.worker_component(embedded, engine, NOW)
    assert restarting["status"] == "restarting"
    assert workers.worker_reason(restarting, embedded) == (
        "no worker is alive: the embedded worker is restarting (restarts: 2)"
    )
    workers.write_state(path, SupervisorState(os.getpid(), "dead", 3, None))
    assert workers.worker_component(embedded, engine, NOW)["status"] == "dead"
    # A state file left by a supervisor that is gone says nothing: heartbeats decide.
    workers.write_state(path, SupervisorState(exited_pid(), "ok", 0, os.getpid()))
    assert workers.worker_component(embedded, engine, NOW)["mode"] == "external"
    path.write_text("{half a fi")
    assert workers.read_state(path) is None


def test_a_process_is_gone_when_ended_or_its_pid_reused() -> None:
    me = psutil.Process()
    started = NOW.fromtimestamp(me.create_time() + 5, tz=NOW.tzinfo)
    assert not workers.process_gone(me.pid, started)
    assert workers.process_running(me.pid)
    # A row registered before this process was created names some earlier process.
    assert workers.process_gone(me.pid, started - timedelta(hours=1))
    gone = exited_pid()
    assert workers.process_gone(gone, NOW) and not workers.process_running(gone)
    assert not workers.process_running(None)
    assert workers.pid_scope() == workers.pid_scope() != ""


def test_without_a_database_only_the_embedded_worker_is_known(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    external = sqlite_settings.model_copy(update={"embedded_worker": False})
    assert workers.worker_component(external, None, NOW) == {
        "status": "unknown",
        "mode": "external",
    }
    embedded = sqlite_settings.model_copy(update={"metrics_dir": tmp_path})
    workers.write_state(
        tmp_path / workers.STATE_FILE, SupervisorState(os.getpid(), "dead", 1, None)
    )
    assert workers.worker_component(embedded, None, NOW)["status"] == "dead"
