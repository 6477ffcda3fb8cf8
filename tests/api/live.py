"""A real server on 127.0.0.1: `btc-predictor serve` (with its embedded worker) in a subprocess."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from btc_predictor.config import Settings
from tests.api.conftest import API_KEY


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def serving(data_dir: Path, log_path: Path, **env: str) -> Iterator[str]:
    """``serve`` on a free port over ``data_dir`` (its own process group); yields its URL."""
    port, worker_port = free_port(), free_port()
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BTCP_DATA_DIR": str(data_dir),
        "BTCP_API_KEY": API_KEY,
        "BTCP_WORKER_PORT": str(worker_port),
        "BTCP_TRAIN_EPOCHS": "3",
        "BTCP_SOURCES": "yahoo",
        "BTCP_WORKER_POLL": "0.2s",
        **env,
    }
    log = log_path.open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "btc_predictor", "serve", "--port", str(port)],
        env=environment,
        start_new_session=True,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, server, log_path)
        yield url
    finally:
        log.close()
        stop(server)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group and wait for it (SIGKILL after 30 s)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture
def live(installed: Settings, tmp_path: Path) -> Iterator[str]:
    """``serve`` over the installed data, ready on a free port."""
    with serving(installed.data_dir, tmp_path / "serve.log") as url:
        yield url


def wait_ready(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``/health/ready`` until it answers 200 (fail if the server exits or 30 s pass)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"serve exited: {log.read_text()[-2000:]}")
        try:
            if requests.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise AssertionError("serve was not ready within 30 s")
