"""``/health`` tells the truth (issue 12, defect 4), from a real ``serve`` on PostgreSQL: a
damaged active version, year-old data and a failed refresh each make it ``degraded`` with a
reason. Before the fix it said ``healthy`` in all three.

These serve without a worker, so only the components under test are asserted (the worker's
own reason is not theirs).
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.api.live import free_port
from tests.faults.conftest import admin_sql, run_serve, seed

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
MINE = {"database", "model_store", "data"}


def health(base: str) -> tuple[int, dict[str, Any]]:
    """/health's status code and body."""
    answer = requests.get(base + "/health", timeout=10)
    return answer.status_code, answer.json()


def reasons(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The reasons given by the database, model store and data components."""
    return [r for r in body["reasons"] if r["component"] in MINE]


def test_a_damaged_active_version_is_a_degraded_reason(pg_url: str, tmp_path: Path) -> None:
    version = seed(pg_url, tmp_path / "seed")
    admin_sql(
        pg_url,
        "UPDATE model_artifacts SET content = :junk WHERE version_id = :v AND name = 'model.onnx'",
        junk=b"not an onnx graph",
        v=version,
    )
    with run_serve(pg_url, tmp_path) as base:
        code, body = health(base)
        forecast = requests.get(base + "/api/v1/forecast", timeout=10)
    assert forecast.status_code == 503 and forecast.json()["code"] == "artifact_damaged"
    assert code == 200 and body["status"] == "degraded" and body["model_ready"] is False
    [reason] = reasons(body)
    assert reason["component"] == "model_store" and reason["asset"] == "BTC-USD"
    assert f"version {version}" in reason["detail"] and "damaged" in reason["detail"]


def test_year_old_data_is_a_degraded_reason(pg_url: str, tmp_path: Path) -> None:
    year_ago = datetime.now(UTC).date() - timedelta(days=365)
    seed(pg_url, tmp_path / "seed", last_day=year_ago)
    with run_serve(pg_url, tmp_path) as base:
        code, body = health(base)
    assert code == 200 and body["status"] == "degraded"
    [reason] = reasons(body)
    assert reason["component"] == "data" and reason["asset"] == "BTC-USD"
    assert "stale" in reason["detail"] and year_ago.isoformat() in reason["detail"]
    assert body["components"]["data"]["BTC-USD"]["status"] == "stale"


def test_a_failed_refresh_is_a_degraded_reason(pg_url: str, tmp_path: Path) -> None:
    seed(pg_url, tmp_path / "seed")
    with run_serve(pg_url, tmp_path) as base:
        assert reasons(health(base)[1]) == []
        # A real ingest whose only source cannot be reached (nothing listens on the port);
        # --since: the stored days are up to date, and an ingest with nothing to fetch is ok.
        since = (datetime.now(UTC).date() - timedelta(days=7)).isoformat()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "BTCP_DATABASE_URL": pg_url,
            "BTCP_DATA_DIR": str(tmp_path / "data"),
            "BTCP_YAHOO_URL": f"http://127.0.0.1:{free_port()}",
            "BTCP_SOURCE_RETRIES": "0",
        }
        ingest = subprocess.run(
            [
                sys.executable,
                "-m",
                "btc_predictor",
                "ingest",
                "--asset",
                "BTC-USD",
                "--since",
                since,
            ],
            env={**env, "BTCP_SOURCES": "yahoo"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ingest.returncode != 0, ingest.stdout
        code, body = health(base)
    assert code == 200 and body["status"] == "degraded"
    [reason] = reasons(body)
    assert reason["component"] == "data" and reason["asset"] == "BTC-USD"
    assert "last refresh failed" in reason["detail"] and "yahoo" in reason["detail"]
    assert body["components"]["data"]["BTC-USD"]["last_refresh"]["status"] == "failed"
