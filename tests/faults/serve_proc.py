"""Real ``serve`` processes for the fault campaign: started in their own session, so every
process they start can be found (and counted) after ``serve`` itself is killed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

from tests.api.conftest import API_KEY
from tests.api.live import free_port

AUTH = {"Authorization": f"Bearer {API_KEY}"}
READY_WITHIN = 60.0  # seconds: a start on a loaded 2-core machine (migrations, imports)


@dataclass
class Served:
    """One running ``serve``: its process, URL, log and worker port."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path
    worker_port: int

    @property
    def pid(self) -> int:
        """The serve process's pid (also its session id)."""
        return self.process.pid

    def worker(self) -> psutil.Process | None:
        """Its embedded job worker, if one runs now."""
        return worker_child(self.pid)

    def log_text(self) -> str:
        """The end of its log (for assertion messages)."""
        return self.log.read_text(errors="replace")[-3000:]


def environment(data_dir: Path, worker_port: int, **env: str) -> dict[str, str]:
    """A serve environment over ``data_dir`` (nothing inherited but PATH)."""
    passed = {name: os.environ[name] for name in ("PYTHONPATH",) if name in os.environ}
    return {
        **passed,  # lets the campaign run against another checkout's src (PYTHONPATH=...)
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BTCP_DATA_DIR": str(data_dir),
        "BTCP_API_KEY": API_KEY,
        "BTCP_WORKER_PORT": str(worker_port),
        "BTCP_SOURCES": "yahoo",
        "BTCP_WORKER_POLL": "0.2s",
        **env,
    }


def start(
    data_dir: Path, log: Path, *args: str, worker_port: int | None = None, **env: str
) -> Served:
    """Start ``serve`` (own session) and wait until ``/health/ready`` answers 200."""
    port, worker_port = free_port(), worker_port or free_port()
    out = log.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "btc_predictor", "serve", "--port", str(port), *args],
        env=environment(data_dir, worker_port, **env),
        start_new_session=True,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    out.close()
    served = Served(process, f"http://127.0.0.1:{port}", log, worker_port)
    try:
        wait_for(lambda: _ready(served), READY_WITHIN, "serve to be ready")
    except BaseException:
        finish(served)
        raise
    return served


def _ready(served: Served) -> bool:
    """Whether ``/health/ready`` answers 200 (fail at once if serve exited)."""
    if served.process.poll() is not None:
        raise AssertionError(f"serve exited: {served.log_text()}")
    try:
        return requests.get(f"{served.url}/health/ready", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@contextlib.contextmanager
def serving(data_dir: Path, log: Path, *args: str, **env: str) -> Iterator[Served]:
    """``serve`` for the block; whatever is left of its session is killed after it."""
    served = start(data_dir, log, *args, **env)
    try:
        yield served
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(served.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            served.process.wait(timeout=30)
        finish(served)


def finish(served: Served) -> None:
    """Kill whatever is left of a serve's session and reap serve (no process outlives a test)."""
    kill_session(served.pid)
    with contextlib.suppress(subprocess.TimeoutExpired):
        served.process.wait(timeout=10)


def session_processes(session_id: int) -> list[psutil.Process]:
    """Every live process of a session (zombies excluded: they are already dead)."""
    found = []
    for process in psutil.process_iter(["pid"]):
        try:
            if os.getsid(process.pid) == session_id and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found


def kill_session(session_id: int) -> None:
    """SIGKILL every process left in a session (test clean-up)."""
    for process in session_processes(session_id):
        with contextlib.suppress(psutil.Error):
            process.kill()


def worker_child(serve_pid: int) -> psutil.Process | None:
    """The ``btc-predictor worker`` child of a serve process, if alive."""
    try:
        children = psutil.Process(serve_pid).children()
    except psutil.NoSuchProcess:
        return None
    for child in children:
        try:
            if "worker" in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                return child
        except psutil.Error:
            continue
    return None


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``predicate`` every 50 ms until true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def job(url: str, job_id: str) -> dict[str, object]:
    """A job's JSON from the API."""
    answer = requests.get(f"{url}/api/v1/jobs/{job_id}", timeout=10)
    answer.raise_for_status()
    body: dict[str, object] = answer.json()
    return body


def long_training(url: str) -> str:
    """Queue an LSTM training that runs for minutes; returns its job id."""
    answer = requests.post(
        f"{url}/api/v1/train",
        json={"model": "lstm", "epochs": 500, "start": "2019-01-01", "promote": "always"},
        headers=AUTH,
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])
