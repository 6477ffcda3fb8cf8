"""Fault campaign, processes: kill -9 of ``serve`` and of its worker, a taken worker port, and
the metrics directory a killed ``serve`` leaves behind (issue 12, defect 2)."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from btc_predictor.config import Settings
from tests.api.conftest import api_settings, installed
from tests.faults.serve_proc import (
    AUTH,
    finish,
    job,
    long_training,
    serving,
    session_processes,
    start,
    wait_for,
    worker_child,
)

__all__ = ["api_settings", "installed"]  # fixtures: imported so pytest finds them here

pytestmark = pytest.mark.slow
ORPHAN_WINDOW = 5.0  # seconds after kill -9 of serve by which none of its processes may run
REPLACED_WITHIN = 5.0  # seconds after kill -9 of the worker by which a new one runs


@pytest.mark.parametrize("workers", ["1", "2"])
def test_kill_9_of_serve_leaves_no_process_and_its_metrics_dir_is_cleaned_next_start(
    installed: Settings, tmp_path: Path, workers: str
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    first = start(installed.data_dir, tmp_path / "serve.log", "--workers", workers, TMPDIR=str(tmp))
    try:
        wait_for(first.worker, 30, "the embedded worker to start")
        assert len(session_processes(first.pid)) >= 2  # serve, its worker (and uvicorn's)
        left_dirs = list(tmp.glob("btcp-metrics-*"))
        assert len(left_dirs) == 1
        os.kill(first.pid, signal.SIGKILL)
        first.process.wait()
        time.sleep(ORPHAN_WINDOW)
        orphans = session_processes(first.pid)
        assert orphans == [], [p.cmdline() for p in orphans]
    finally:
        finish(first)
    assert left_dirs[0].exists()  # killed: it could not clean up

    with serving(installed.data_dir, tmp_path / "serve2.log", TMPDIR=str(tmp)):
        assert not left_dirs[0].exists()
        assert len(list(tmp.glob("btcp-metrics-*"))) == 1  # its own


def test_kill_9_of_serve_during_a_backtest_leaves_no_fold_process(
    installed: Settings, tmp_path: Path
) -> None:
    served = start(installed.data_dir, tmp_path / "serve.log")
    try:
        answer = requests.post(
            f"{served.url}/api/v1/backtests",
            json={"model": "lstm", "epochs": 200, "days": 365},
            headers=AUTH,
            timeout=10,
        )
        assert answer.status_code == 202, answer.text

        def folds_running() -> bool:
            worker = served.worker()
            return worker is not None and len(worker.children()) >= 2  # tracker + a fold

        wait_for(folds_running, 120, "the backtest's fold processes")
        os.kill(served.pid, signal.SIGKILL)
        served.process.wait()
        time.sleep(ORPHAN_WINDOW)
        orphans = session_processes(served.pid)
        assert orphans == [], [p.cmdline() for p in orphans]
    finally:
        finish(served)


Sample = tuple[float, float, dict[str, Any]]


def _watch_health(url: str, stop: threading.Event, seen: list[Sample]) -> None:
    """Sample /health until ``stop``: (asked at, answered at, body), wall-clock seconds."""
    while not stop.is_set():
        asked = time.time()
        try:
            body = requests.get(f"{url}/health", timeout=5).json()
        except requests.RequestException:
            continue
        seen.append((asked, time.time(), body))
        time.sleep(0.05)


def test_kill_9_of_the_worker_replaces_it_fails_its_job_and_health_tells(
    installed: Settings, tmp_path: Path
) -> None:
    with serving(installed.data_dir, tmp_path / "serve.log") as served:
        wait_for(served.worker, 30, "the embedded worker to start")
        assert requests.get(f"{served.url}/health", timeout=5).json()["components"]["worker"] == {
            "status": "ok",
            "mode": "embedded",
            "restarts": 0,
        }
        job_id = long_training(served.url)
        wait_for(lambda: job(served.url, job_id)["progress"] > 0, 120, "training to start")
        doomed = served.worker()
        assert doomed is not None
        seen: list[Sample] = []
        stop = threading.Event()
        watcher = threading.Thread(target=_watch_health, args=(served.url, stop, seen))
        watcher.start()
        try:
            killed_at = time.time()
            doomed.kill()
            replaced: list[psutil.Process] = []

            def new_worker() -> bool:
                worker = served.worker()
                if worker is not None and worker.pid != doomed.pid:
                    replaced.append(worker)
                return bool(replaced)

            wait_for(new_worker, REPLACED_WITHIN, "a new worker process")
            spawned_at = replaced[0].create_time()
            assert spawned_at - killed_at <= REPLACED_WITHIN
            # The new worker fails its predecessor's job at once (no 2-minute heartbeat wait).
            wait_for(lambda: job(served.url, job_id)["status"] != "running", 60, "orphan recovery")
            time.sleep(0.5)
        finally:
            stop.set()
            watcher.join()
        ended = job(served.url, job_id)
        assert ended["status"] == "failed", ended
        assert "worker died while running this job" in str(ended["error"]), ended
        assert f"pid {doomed.pid}" in str(ended["error"])
        # While no worker ran, /health never said it was fine.
        # Asked once the kill had surely landed, answered before the replacement existed.
        dead = [b for asked, done, b in seen if killed_at + 0.3 <= asked and done <= spawned_at]
        assert dead, "no /health sample while the worker was dead"
        for body in dead:
            assert body["status"] != "healthy"
            assert body["components"]["worker"]["status"] in ("restarting", "dead"), body
            assert any(reason["component"] == "worker" for reason in body["reasons"]), body
        after = requests.get(f"{served.url}/health", timeout=5).json()["components"]["worker"]
        assert after["status"] == "ok" and after["restarts"] >= 1, after


def test_a_taken_worker_port_is_a_clear_failure_retried_until_free(
    installed: Settings, tmp_path: Path
) -> None:
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    port = squatter.getsockname()[1]
    log = tmp_path / "serve.log"
    try:
        with serving(installed.data_dir, log, BTCP_WORKER_PORT=str(port)) as served:

            def worker_state() -> dict[str, Any]:
                body = requests.get(f"{served.url}/health", timeout=5).json()
                return dict(body["components"]["worker"])

            wait_for(lambda: worker_state()["restarts"] >= 1, 60, "a failed worker start")
            assert f"worker port 127.0.0.1:{port} is taken" in log.read_text()
            wait_for(lambda: not zombies(served.pid), 2, "the dead worker to be reaped")
            squatter.close()
            # A later restart (backoff 1, 2, 4, ... s) finds the port free and serves on it.
            wait_for(lambda: _side_answers(port), 60, "the worker's side server")
            assert worker_child(served.pid) is not None
            assert worker_state()["status"] == "ok"
    finally:
        squatter.close()


def zombies(pid: int) -> list[psutil.Process]:
    """The dead, unreaped children of ``pid``."""
    return [c for c in psutil.Process(pid).children() if c.status() == psutil.STATUS_ZOMBIE]


def _side_answers(port: int) -> bool:
    """Whether a worker's side server answers on ``port``."""
    try:
        return requests.get(f"http://127.0.0.1:{port}/health/live", timeout=1).status_code == 200
    except requests.RequestException:
        return False
