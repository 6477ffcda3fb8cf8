"""The production shape on one real PostgreSQL database: two API processes (no embedded worker)
and one worker process, as Compose and Kubernetes run them. A promotion made through one API is
served by the other, and a job submitted to one API is run by the worker."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from btc_predictor.config import Settings
from btc_predictor.services.ingest import ingest
from btc_predictor.services.training import train
from btc_predictor.shapes.requests import IngestRequest, TrainRequest
from btc_predictor.storage.db import create_db_engine, upgrade, write_session
from btc_predictor.storage.tables import JobRow, ScheduleRow
from tests.conftest import NOW, _reset_postgres
from tests.deploy.common import DOCKERFILE

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

API_KEY = "deploy-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], timeout: float) -> Any:
    """Poll ``check`` until it returns something truthy (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def answers(self, url: str) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited ({self.process.returncode}):\n{self.tail()}")
        try:
            return requests.get(url, timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    def stop(self) -> None:
        """SIGTERM the process group (serve's uvicorn, the worker's job processes), then KILL."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@dataclass
class Stack:
    api1: str
    api2: str
    worker: str
    worker_port: int
    api_port: int
    database_url: str
    active: int
    other: int


def seed(url: str, data_dir: Path, csv: Path) -> tuple[int, int]:
    """Migrate, ingest real BTC history, train drift (active) and naive (stored only)."""
    settings = Settings(
        data_dir=data_dir,
        database_url=url,
        api_key=API_KEY,
        embedded_worker=False,
        sources=["yahoo"],
        train_epochs=2,
    )
    engine = create_db_engine(settings)
    try:
        upgrade(engine)
        ingest(settings, engine, IngestRequest(asset="BTC-USD", path=csv), now=NOW)
        drift = train(settings, engine, TrainRequest(model="drift", promote="always"), now=NOW)
        naive = train(settings, engine, TrainRequest(model="naive", promote="never"), now=NOW)
        # The worker's first start would queue an online refresh at once (tests never reach
        # the internet): record that refresh as already done, next due tomorrow.
        with write_session(engine) as session:
            session.add(
                ScheduleRow(
                    name="refresh",
                    last_run_at=datetime.now(UTC),
                    next_run_at=datetime.now(UTC) + timedelta(days=1),
                )
            )
    finally:
        engine.dispose()
    return drift.version, naive.version


def spawn(name: str, args: list[str], env: dict[str, str], tmp: Path) -> Proc:
    log = tmp / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "btc_predictor", *args],
            env=env,
            cwd=tmp,
            start_new_session=True,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Proc(name, process, log)


@pytest.fixture(scope="module")
def stack(
    pg_database_url: str, shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("multiprocess")
    _reset_postgres(pg_database_url)
    active, other = seed(pg_database_url, tmp / "seed", shared_data / "Bitstamp_BTCUSD_d.csv")
    base_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "BTCP_DATABASE_URL": pg_database_url,
        "BTCP_API_KEY": API_KEY,
        "BTCP_EMBEDDED_WORKER": "false",
        "BTCP_STATE_POLL": "0.2s",
        "BTCP_WORKER_POLL": "0.2s",
        "BTCP_ASSETS": "BTC-USD",
        "BTCP_SOURCES": "yahoo",
        "BTCP_TRAIN_EPOCHS": "2",
    }
    ports = [free_port(), free_port()]
    worker_port = free_port()
    procs = [
        spawn(
            f"api{i + 1}",
            ["serve", "--port", str(port)],
            {**base_env, "BTCP_DATA_DIR": str(tmp / f"api{i + 1}")},
            tmp,
        )
        for i, port in enumerate(ports)
    ]
    procs.append(
        spawn(
            "worker",
            ["worker"],
            {
                **base_env,
                "BTCP_DATA_DIR": str(tmp / "worker"),
                "BTCP_WORKER_PORT": str(worker_port),
            },
            tmp,
        )
    )
    urls = [f"http://127.0.0.1:{port}" for port in ports] + [f"http://127.0.0.1:{worker_port}"]
    try:
        for proc, url in zip(procs, urls, strict=True):
            probe = "/health/live" if proc.name == "worker" else "/health/ready"
            wait_for(f"{proc.name} ready", lambda p=proc, u=url + probe: p.answers(u), 60)
        yield Stack(
            urls[0], urls[1], urls[2], worker_port, ports[0], pg_database_url, active, other
        )
    finally:
        for proc in procs:
            proc.stop()
        for proc in procs:
            # A crash or traceback in any process fails the test even if the HTTP answers looked fine.
            assert "Traceback" not in proc.log.read_text(errors="replace"), (
                f"{proc.name}:\n{proc.tail()}"
            )


def served_version(api: str) -> int:
    response = requests.get(
        f"{api}/api/v1/forecast", params={"asset": "BTC-USD", "horizon": 1}, timeout=10
    )
    assert response.status_code == 200, response.text
    return int(response.json()["model_version"])


def test_apis_share_promotions_and_the_worker_runs_their_jobs(stack: Stack) -> None:
    assert served_version(stack.api1) == stack.active
    assert served_version(stack.api2) == stack.active

    promoted = requests.post(
        f"{stack.api1}/api/v1/models/{stack.other}/promote", headers=AUTH, timeout=10
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["id"] == stack.other and promoted.json()["active"] is True
    # API 2 learns of it from the database (it polls every BTCP_STATE_POLL = 0.2 s). So does
    # API 1 itself: it serves from its polled state too, so it is waited for as well.
    wait_for(
        "API 2 serving the promoted version", lambda: served_version(stack.api2) == stack.other, 5
    )
    wait_for(
        "API 1 serving the promoted version", lambda: served_version(stack.api1) == stack.other, 5
    )

    submitted = requests.post(
        f"{stack.api2}/api/v1/train",
        headers=AUTH,
        timeout=10,
        json={"asset": "BTC-USD", "model": "drift", "promote": "never"},
    )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    assert submitted.headers["Location"] == f"/api/v1/jobs/{job_id}"

    def finished() -> dict[str, Any] | None:
        # Asked through the other API: job state lives in the database, not in a process.
        job = requests.get(f"{stack.api1}/api/v1/jobs/{job_id}", timeout=10).json()
        assert job["status"] in ("queued", "running", "succeeded"), job
        return job if job["status"] == "succeeded" else None

    job = wait_for("the training job to succeed", finished, 120)
    version = job["result"]["version"]
    assert job["result"]["model"] == "drift" and job["result"]["promoted"] is False
    listed = requests.get(
        f"{stack.api2}/api/v1/models", params={"asset": "BTC-USD"}, timeout=10
    ).json()
    assert {row["id"] for row in listed} >= {stack.active, stack.other, version}
    # It was the worker process (the APIs run no jobs): its id is on the job row.
    worker_id = requests.get(f"{stack.worker}/health/live", timeout=5).json()["worker_id"]
    engine = create_db_engine(Settings(database_url=stack.database_url))
    try:
        with engine.connect() as conn:
            assert (
                conn.execute(select(JobRow.worker_id).where(JobRow.id == job_id)).scalar_one()
                == worker_id
            )
    finally:
        engine.dispose()
    # promote "never": the hand-promoted version is still the one served.
    assert served_version(stack.api2) == stack.other


def _dockerfile_healthcheck(target: str) -> list[str]:
    """The HEALTHCHECK command of a Dockerfile target, as Docker would exec it."""
    stage = DOCKERFILE.read_text().split(f" AS {target}\n", 1)[1].split("\nFROM ", 1)[0]
    joined = stage.replace("\\\n", " ")
    line = next(ln for ln in joined.splitlines() if ln.startswith("HEALTHCHECK"))
    return list(json.loads(line.split("CMD", 1)[1]))


def test_the_images_healthchecks_pass_against_the_real_processes(stack: Stack) -> None:
    # The images' HEALTHCHECK commands, run with this interpreter against the live processes
    # (the API's port is fixed to 8000 in the image; here it is the test's free port).
    api = _dockerfile_healthcheck("api")
    assert api[0] == "python"
    api_cmd = [sys.executable, api[1], api[2].replace(":8000/", f":{stack.api_port}/")]
    assert subprocess.run(api_cmd, timeout=30, check=False).returncode == 0
    worker = _dockerfile_healthcheck("worker")
    env = {"PATH": os.environ.get("PATH", ""), "BTCP_WORKER_PORT": str(stack.worker_port)}
    assert (
        subprocess.run([sys.executable, *worker[1:]], env=env, timeout=30, check=False).returncode
        == 0
    )
    # ...and they fail when nothing answers, so an unhealthy container is reported as such.
    env["BTCP_WORKER_PORT"] = str(free_port())
    done = subprocess.run(
        [sys.executable, *worker[1:]], env=env, timeout=30, check=False, capture_output=True
    )
    assert done.returncode != 0
