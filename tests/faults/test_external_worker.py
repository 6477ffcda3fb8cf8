"""Fault campaign, the production shape on PostgreSQL: ``serve`` without an embedded worker
and a separate ``worker`` process. /health reads the worker heartbeat rows; kill -9 of the
worker makes it degraded, and the next worker fails the dead one's job at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from btc_predictor.config import Settings
from btc_predictor.services.ingest import ingest
from btc_predictor.services.training import train
from btc_predictor.shapes.requests import IngestRequest, TrainRequest
from btc_predictor.storage.db import create_db_engine, upgrade
from tests.api.conftest import API_KEY
from tests.api.live import free_port
from tests.conftest import NOW, _reset_postgres
from tests.faults.serve_proc import (
    environment,
    job,
    kill_session,
    long_training,
    serving,
    wait_for,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
STALE = "3s"  # BTCP_JOB_STALE_AFTER: no heartbeat this long and no worker is alive


@pytest.fixture
def pg_installed(pg_database_url: str, shared_data: Path, tmp_path: Path) -> Settings:
    """Real BTC history and a drift model on a fresh PostgreSQL database."""
    _reset_postgres(pg_database_url)
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=pg_database_url,
        api_key=API_KEY,
        embedded_worker=False,
        sources=["yahoo"],
    )
    engine = create_db_engine(settings)
    upgrade(engine)
    request = IngestRequest(asset="BTC-USD", path=shared_data / "Bitstamp_BTCUSD_d.csv")
    ingest(settings, engine, request, now=NOW)
    train(settings, engine, TrainRequest(model="drift", promote="always"), now=NOW)
    engine.dispose()
    return settings


def start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """``btc-predictor worker`` on the database, in its own session."""
    env = environment(
        settings.data_dir,
        free_port(),
        BTCP_DATABASE_URL=str(settings.database_url),
        BTCP_JOB_STALE_AFTER=STALE,
    )
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "btc_predictor", "worker"],
            env=env,
            start_new_session=True,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker processes started by the test; all killed after it."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        kill_session(process.pid)
        process.wait(timeout=10)


def test_external_worker_heartbeats_drive_health_and_a_killed_ones_job_fails_at_once(
    pg_installed: Settings, tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    env = {
        "BTCP_DATABASE_URL": str(pg_installed.database_url),
        "BTCP_EMBEDDED_WORKER": "false",
        "BTCP_JOB_STALE_AFTER": STALE,
    }
    with serving(pg_installed.data_dir, tmp_path / "serve.log", **env) as served:

        def health() -> dict[str, Any]:
            body: dict[str, Any] = requests.get(f"{served.url}/health", timeout=5).json()
            return body

        before = health()
        assert before["components"]["worker"]["status"] == "dead"
        assert before["status"] != "healthy"
        assert {
            "component": "worker",
            "asset": None,
            "detail": "no worker is alive: no worker heartbeat within 3s",
        } in before["reasons"]

        workers.append(start_worker(pg_installed, tmp_path / "worker1.log"))
        wait_for(lambda: health()["components"]["worker"]["status"] == "ok", 60, "a heartbeat")
        assert health()["components"]["worker"]["alive"] == 1

        job_id = long_training(served.url)
        wait_for(lambda: job(served.url, job_id)["progress"] > 0, 120, "training to start")
        doomed = workers[0]
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait()
        wait_for(lambda: health()["components"]["worker"]["status"] == "dead", 10, "no worker")
        assert health()["status"] != "healthy"
        assert job(served.url, job_id)["status"] == "running"  # nobody has looked yet

        workers.append(start_worker(pg_installed, tmp_path / "worker2.log"))
        wait_for(lambda: job(served.url, job_id)["status"] == "failed", 60, "orphan recovery")
        error = str(job(served.url, job_id)["error"])
        assert f"pid {doomed.pid}: its process is gone" in error, error
        wait_for(lambda: health()["components"]["worker"]["status"] == "ok", 30, "the new worker")
