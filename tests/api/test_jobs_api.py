"""Job-backed endpoints: train, refresh, backtests, jobs, schedules (worker run in-process)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest
from fastapi.testclient import TestClient

from btc_predictor.config import Settings
from btc_predictor.forecasting.executors import SerialExecutor
from btc_predictor.jobs.worker import Worker
from btc_predictor.storage.db import create_db_engine
from tests.api.conftest import AUTH
from tests.conftest import NOW
from tests.factories import FakeSource, make_candles


@pytest.fixture
def worker(installed: Settings) -> Iterator[Worker]:
    engine = create_db_engine(installed)
    online = FakeSource("yahoo", make_candles(date(2025, 11, 30), 1, price=91_000.0))
    yield Worker(
        installed,
        engine,
        clock=lambda: NOW,
        source_factory=lambda spec: online,
        executor=SerialExecutor(),
    )
    engine.dispose()


def test_train_job_lifecycle(client: TestClient, worker: Worker) -> None:
    answer = client.post(
        "/api/v1/train", json={"model": "naive", "promote": "always"}, headers=AUTH
    )
    assert answer.status_code == 202
    job = answer.json()
    assert answer.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert (job["kind"], job["status"], job["params"]["asset"]) == ("train", "queued", "BTC-USD")
    assert worker.run_once()
    done = client.get(f"/api/v1/jobs/{job['id']}").json()
    assert done["status"] == "succeeded" and done["progress"] == 1.0
    assert done["result"]["model"] == "naive" and done["result"]["promoted"] is True
    assert client.get("/api/v1/models").json()[0]["model"] == "naive"
    assert [j["id"] for j in client.get("/api/v1/jobs", params={"kind": "train"}).json()] == [
        job["id"]
    ]


def test_one_training_per_asset_and_model(client: TestClient) -> None:
    def post() -> tuple[int, dict]:
        answer = client.post("/api/v1/train", json={"model": "lstm"}, headers=AUTH)
        return answer.status_code, answer.json()

    with ThreadPoolExecutor(2) as pool:
        results = sorted(pool.map(lambda _: post(), range(2)), key=lambda r: r[0])
    (ok, job), (conflict, error) = results
    assert (ok, conflict) == (202, 409) and error["code"] == "job_running"
    assert job["id"] in error["detail"]
    other_model = client.post("/api/v1/train", json={"model": "gru"}, headers=AUTH)
    assert other_model.status_code == 202


def test_bad_training_requests(client: TestClient) -> None:
    assert client.post("/api/v1/train", json={"model": "naive"}).status_code == 401
    unknown = client.post("/api/v1/train", json={"model": "prophet"}, headers=AUTH)
    assert unknown.status_code == 422 and unknown.json()["code"] == "invalid_parameter"
    assert "lstm" in unknown.json()["detail"]
    extra = client.post("/api/v1/train", json={"modle": "lstm"}, headers=AUTH)
    assert extra.status_code == 422 and extra.json()["errors"][0]["loc"] == "modle"
    broken = client.post(
        "/api/v1/train", content=b"{not json", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert broken.status_code == 422


def test_cancel_and_unknown_jobs(client: TestClient) -> None:
    job = client.post("/api/v1/train", json={"model": "drift"}, headers=AUTH).json()
    assert client.delete(f"/api/v1/jobs/{job['id']}").status_code == 401
    cancelled = client.delete(f"/api/v1/jobs/{job['id']}", headers=AUTH).json()
    assert cancelled["status"] == "cancelled"
    missing = client.get("/api/v1/jobs/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and missing.json()["code"] == "job_not_found"
    assert client.get("/api/v1/jobs/not-a-uuid").json()["code"] == "job_not_found"


def test_backtest_runs_as_a_job(client: TestClient, worker: Worker) -> None:
    body = {"model": "drift", "days": 60, "horizon": 2, "refit_every": 30}
    job = client.post("/api/v1/backtests", json=body, headers=AUTH).json()
    pending = client.get(f"/api/v1/backtests/{job['id']}")
    assert pending.status_code == 202 and pending.json()["status"] == "queued"
    assert worker.run_once()
    report = client.get(f"/api/v1/backtests/{job['id']}").json()
    assert report["model"] == "drift" and [h["h"] for h in report["horizons"]] == [1, 2]
    assert len(report["series"]) == 60 + 59
    [listed] = client.get("/api/v1/backtests", params={"asset": "BTC-USD"}).json()
    assert listed["id"] == job["id"] and "series" not in listed["result"]


def test_refresh_ingests_and_scores_the_ledger(client: TestClient, worker: Worker) -> None:
    client.get("/api/v1/forecast", params={"horizon": 1})
    job = client.post("/api/v1/assets/BTC-USD/refresh", headers=AUTH)
    assert job.status_code == 202 and job.json()["kind"] == "ingest"
    assert (
        client.post("/api/v1/assets/DOGE-USD/refresh", headers=AUTH).json()["code"]
        == "asset_not_found"
    )
    assert worker.run_once()
    assert client.get(f"/api/v1/jobs/{job.json()['id']}").json()["status"] == "succeeded"
    [entry] = client.get("/api/v1/predictions").json()
    assert entry["target_date"] == "2025-11-30" and entry["actual"] == 91_000.0
    assert entry["inside"] is True


def test_legacy_train_waits_for_the_job(client: TestClient, worker: Worker) -> None:
    stop = threading.Event()
    runner = threading.Thread(target=worker.run_forever, args=(stop,), daemon=True)
    runner.start()
    try:
        answer = client.post("/train", params={"model": "lstm", "epochs": 2}, headers=AUTH)
    finally:
        stop.set()
        runner.join(timeout=30)
    body = answer.json()
    assert answer.status_code == 200, body
    assert {
        "message",
        "rmse",
        "mae",
        "r2",
        "model_saved",
        "mase",
        "model_version",
        "promoted",
        "job_id",
    } <= body.keys()
    assert body["model_saved"] is True and body["rmse"] > 0


def test_schedules_are_listed(client: TestClient) -> None:
    names = {s["name"] for s in client.get("/api/v1/schedules").json()}
    assert {"refresh", "retrain"} <= names
