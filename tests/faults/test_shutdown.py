"""Fault campaign, bounded waits: the original's POST /train under a deadline, a client that
goes away, and SIGTERM with a train pending (issue 12, defect 3)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from btc_predictor.config import Settings
from tests.api.conftest import api_settings, installed
from tests.faults.serve_proc import (
    AUTH,
    finish,
    job,
    serving,
    session_processes,
    start,
    wait_for,
)

__all__ = ["api_settings", "installed"]  # fixtures: imported so pytest finds them here

pytestmark = pytest.mark.slow
GRACE = 4.0  # BTCP_SHUTDOWN_GRACE in these tests (seconds)
EXIT_MARGIN = 1.5  # seconds past the grace for the interpreter to leave (loaded machine)


def _train_in_background(url: str, answers: list[requests.Response | Exception]) -> None:
    """The original's blocking POST /train (LSTM: minutes of work), answer kept."""
    try:
        answers.append(
            requests.post(
                f"{url}/train",
                params={"model": "lstm", "epochs": 500},
                headers=AUTH,
                timeout=120,
            )
        )
    except requests.RequestException as exc:
        answers.append(exc)


def _pending_train(url: str) -> str:
    """The id of the one queued or running train job."""
    rows = requests.get(f"{url}/api/v1/jobs", params={"kind": "train"}, timeout=10).json()
    items = rows["items"] if isinstance(rows, dict) else rows
    active = [row for row in items if row["status"] in ("queued", "running")]
    return str(active[0]["id"]) if active else ""


def test_the_legacy_train_answers_202_with_its_job_after_the_wait(
    installed: Settings, tmp_path: Path
) -> None:
    with serving(installed.data_dir, tmp_path / "serve.log", BTCP_LEGACY_TRAIN_WAIT="1s") as s:
        began = time.monotonic()
        answer = requests.post(
            f"{s.url}/train", params={"model": "lstm", "epochs": 500}, headers=AUTH, timeout=60
        )
        took = time.monotonic() - began
        assert answer.status_code == 202, answer.text
        assert took < 10, took
        body = answer.json()
        location = f"/api/v1/jobs/{body['job_id']}"
        assert answer.headers["Location"] == location
        assert location in body["message"]
        assert body["model_saved"] is False
        assert (body["rmse"], body["mae"], body["r2"]) == (None, None, None)
        assert job(s.url, body["job_id"])["status"] in ("queued", "running", "succeeded")


def test_sigterm_with_a_legacy_train_pending_ends_serve_within_the_grace(
    installed: Settings, tmp_path: Path
) -> None:
    served = start(
        installed.data_dir,
        tmp_path / "serve.log",
        BTCP_LEGACY_TRAIN_WAIT="600s",
        BTCP_SHUTDOWN_GRACE=f"{GRACE:g}s",
    )
    answers: list[requests.Response | Exception] = []
    client = threading.Thread(target=_train_in_background, args=(served.url, answers))
    try:
        client.start()
        wait_for(lambda: _pending_train(served.url), 30, "the legacy train's job")
        job_id = _pending_train(served.url)
        wait_for(lambda: job(served.url, job_id)["status"] == "running", 60, "training to run")
        time.sleep(0.5)
        assert answers == [], "the legacy train answered before the SIGTERM"
        began = time.monotonic()
        os.kill(served.pid, signal.SIGTERM)
        try:
            code = served.process.wait(timeout=GRACE + 30)
        except subprocess.TimeoutExpired:
            code = None
        took = time.monotonic() - began
        assert code is not None and took <= GRACE + EXIT_MARGIN, (took, served.log_text())
        time.sleep(0.5)
        assert session_processes(served.pid) == []  # the worker went with it
        client.join(timeout=10)
        # The waiting client was answered, not cut off: its job, where to follow it.
        assert isinstance(answers[0], requests.Response), answers
        assert answers[0].status_code == 202
        assert answers[0].headers["Location"] == f"/api/v1/jobs/{job_id}"
    finally:
        finish(served)
        client.join(timeout=130)


def test_a_legacy_train_whose_client_left_does_not_hold_a_graceful_stop(
    installed: Settings, tmp_path: Path
) -> None:
    # No worker: the job stays queued, so only the waiting request could hold serve up.
    served = start(
        installed.data_dir,
        tmp_path / "serve.log",
        BTCP_EMBEDDED_WORKER="false",
        BTCP_LEGACY_TRAIN_WAIT="600s",
        BTCP_SHUTDOWN_GRACE="60s",
    )
    try:
        with pytest.raises(requests.ReadTimeout):
            requests.post(f"{served.url}/train", headers=AUTH, timeout=2)
        time.sleep(1.0)  # the server notices the closed connection at its next look (0.25 s)
        began = time.monotonic()
        os.kill(served.pid, signal.SIGTERM)
        try:
            code = served.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            code = None
        took = time.monotonic() - began
        # Far below the 60 s grace: nothing was pending any more.
        assert code == 0 and took < 10, (code, took, served.log_text())
    finally:
        finish(served)
