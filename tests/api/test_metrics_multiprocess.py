"""``serve --workers 2``: one scrape of /metrics sums every process of the server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from btc_predictor.config import Settings
from tests.api.conftest import API_KEY
from tests.api.live import free_port, wait_ready


@pytest.fixture
def two_workers(installed: Settings, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """``serve --workers 2`` (embedded job worker on) over the installed data; (url, pid)."""
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BTCP_DATA_DIR": str(installed.data_dir),
        "BTCP_API_KEY": API_KEY,
        "BTCP_WORKER_PORT": str(free_port()),
        "BTCP_SOURCES": "yahoo",
        "BTCP_YAHOO_URL": f"http://127.0.0.1:{free_port()}",  # refused at once: no network
        "BTCP_SOURCE_RETRIES": "0",
    }
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "btc_predictor", "serve", "--port", str(port), "--workers", "2"],
            env=env,
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, server, log_path)
            yield url, server.pid
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


def scrape(url: str) -> dict[str, float]:
    """Sample name -> value summed over label sets, from one scrape."""
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(requests.get(f"{url}/metrics", timeout=10).text):
        for sample in family.samples:
            key = sample.name + (
                f"|{sample.labels['endpoint']}" if "endpoint" in sample.labels else ""
            )
            sums[key] = sums.get(key, 0.0) + sample.value
    return sums


def test_one_scrape_sums_both_api_workers(two_workers: tuple[str, int]) -> None:
    url, pid = two_workers
    pids: set[int] = set()
    health_calls = 0
    while len(pids) < 2 and health_calls < 500:
        # A new connection per call: the two workers take turns accepting them.
        pids.add(requests.get(f"{url}/health", timeout=10).json()["system"]["pid"])
        health_calls += 1
    assert len(pids) == 2, "traffic never reached the second worker"
    for _ in range(25):
        assert requests.get(f"{url}/predict", timeout=10).status_code == 200

    first, second = scrape(url), scrape(url)
    for sums in (first, second):  # whichever worker answers, the totals are the server's
        assert sums["bitcoin_lstm_requests_total|/health"] == health_calls
        assert sums["bitcoin_lstm_request_duration_seconds_count|/health"] == health_calls
        assert sums["bitcoin_lstm_predictions_total"] == 25
        assert sums["bitcoin_lstm_requests_total|/predict"] == 25

    # Memory is a live sum over the server's processes: both API workers + the job worker.
    processes = psutil.Process(pid).children(recursive=True)
    python = [p for p in processes if "python" in p.name().lower()]
    rss = sum(p.memory_info().rss for p in python)
    assert 0.5 * rss < first["bitcoin_lstm_memory_usage_bytes"] < 1.5 * rss
