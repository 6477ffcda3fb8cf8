"""A real server on 127.0.0.1: `btc-predictor serve` with its embedded worker."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.api.conftest import API_KEY
from tests.api.live import live

__all__ = ["live"]  # a fixture: imported so pytest finds it in this module


def test_the_original_readme_example_works_with_only_the_auth_header(
    live: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    BASE_URL = live  # the example's own name
    # --- the original README's example; only the Authorization header is new ---
    response = requests.post(
        f"{BASE_URL}/train", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120
    )
    print(json.dumps(response.json(), indent=2))
    response = requests.get(f"{BASE_URL}/predict", timeout=10)
    prediction = response.json()
    print(f"Preço atual: ${prediction['last_known_price']:.2f}")
    print(f"Predição: ${prediction['next_day_prediction']:.2f}")
    change = prediction["next_day_prediction"] - prediction["last_known_price"]
    change_pct = (change / prediction["last_known_price"]) * 100
    print(f"Variação esperada: {change_pct:+.2f}%")
    # --- end of the example ---
    out = capsys.readouterr().out
    assert (
        '"model_saved": true' in out
        and "Preço atual: $90832.00" in out
        and "Variação esperada:" in out
    )
    health = requests.get(f"{BASE_URL}/health", timeout=5).json()
    assert health["components"]["worker"]["status"] == "ok"


def test_predictions_keep_answering_while_a_training_runs(live: str) -> None:
    job = requests.post(
        f"{live}/api/v1/train",
        json={"model": "lstm", "epochs": 30},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    ).json()
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: requests.get(f"{live}/predict", timeout=10), range(50)))
    assert [a.status_code for a in answers] == [200] * 50
    assert len({a.json()["next_day_prediction"] for a in answers}) == 1
    status = requests.get(f"{live}/api/v1/jobs/{job['id']}", timeout=5).json()["status"]
    assert status in ("queued", "running", "succeeded")
    second = requests.post(
        f"{live}/api/v1/train",
        json={"model": "lstm"},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    )
    assert second.status_code in (202, 409)  # 409 while the first still runs


def test_postgres_without_api_key_refuses_to_start(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BTCP_DATA_DIR": str(tmp_path),
        "BTCP_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    }
    done = subprocess.run(
        [sys.executable, "-m", "btc_predictor", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == "error: BTCP_API_KEY is required when the database is PostgreSQL (refusing to start)"
    )
