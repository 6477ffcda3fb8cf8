"""The original API's endpoints keep their paths and fields."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from btc_predictor.config import Settings
from btc_predictor.storage import worker_store
from btc_predictor.storage.worker_store import WorkerRecord
from tests.api.conftest import AUTH, client_for
from tests.conftest import NOW


def test_root_and_health(client: TestClient) -> None:
    root = client.get("/").json()
    assert {"message", "status", "version", "timestamp", "model_status"} <= root.keys()
    assert root["model_status"].startswith("drift v")
    # An external worker beat a minute ago (DESIGN §7: without one, /health is degraded).
    worker = WorkerRecord("w1", "host", 1, None, False, NOW, NOW)
    worker_store.beat(client.app.state.engine, worker, NOW - timedelta(minutes=1))
    health = client.get("/health").json()
    assert {
        "status",
        "timestamp",
        "version",
        "model_ready",
        "system",
        "components",
    } <= health.keys()
    assert health["model_ready"] is True and health["status"] == "healthy"
    assert set(health["components"]) == {"database", "model_store", "worker", "data"}
    assert health["components"]["data"]["BTC-USD"]["last_date"] == "2025-11-29"
    assert client.get("/health/live").json() == {"status": "alive"}
    assert client.get("/health/ready").json()["migrations_at_head"] is True


def test_fresh_install_is_ready_but_has_no_model(empty_client: TestClient) -> None:
    assert empty_client.get("/health/ready").status_code == 200
    health = empty_client.get("/health").json()
    assert health["model_ready"] is False and health["status"] == "degraded"
    answer = empty_client.get("/predict")
    assert answer.status_code == 409 and answer.json()["code"] == "no_model"
    assert "btc-predictor train --asset BTC-USD" in answer.json()["detail"]
    assert empty_client.get("/evaluate").json()["model_exists"] is False
    assert empty_client.get("/model-info").json()["model_exists"] is False


def test_predict_keeps_the_original_fields(client: TestClient) -> None:
    body = client.get("/predict").json()
    assert {"current_date", "next_day_prediction", "last_known_price"} <= body.keys()
    assert body["current_date"] == "2025-12-01" and body["last_known_price"] == 90832.0
    assert (
        body["target_date"] == "2025-11-30"
        and body["lower"] < body["next_day_prediction"] < body["upper"]
    )
    assert body["level"] == 90 and body["stale"] is False
    forecast = client.get("/api/v1/forecast", params={"horizon": 1}).json()
    assert forecast["points"][0]["value"] == body["next_day_prediction"]


def test_evaluate_model_info_monitoring_metrics(client: TestClient) -> None:
    evaluation = client.get("/evaluate").json()
    assert evaluation["model_exists"] and evaluation["data_points_used"] == 2890
    assert evaluation["naive_mae"] > 0 and 0.9 < evaluation["mase"] < 1.1
    info = client.get("/model-info").json()
    assert (
        info["model_exists"]
        and info["model_path"].endswith("/model.onnx")
        and info["model"] == "drift"
    )
    # Counters are the process's Prometheus metrics (shared by every app in this test run).
    before = client.get("/monitoring").json()
    client.get("/predict")
    monitoring = client.get("/monitoring").json()
    assert monitoring["total_predictions"] == before["total_predictions"] + 1
    assert monitoring["total_requests"] == before["total_requests"] + 2  # /monitoring, /predict
    assert monitoring["memory_usage_mb"] > 10 and monitoring["average_response_time_ms"] > 0
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "text/plain" in metrics.headers["content-type"]


def test_train_needs_the_api_key(client: TestClient) -> None:
    answer = client.post("/train")
    assert answer.status_code == 401 and answer.json()["code"] == "unauthorized"
    wrong = client.post("/train", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


def test_train_answers_202_with_its_job_once_the_wait_is_over(installed: Settings) -> None:
    # No worker runs here: the job stays queued, as behind a busy worker.
    settings = installed.model_copy(update={"legacy_train_wait": timedelta(milliseconds=300)})
    with client_for(settings) as client:
        answer = client.post("/train", params={"model": "naive"}, headers=AUTH)
        assert answer.status_code == 202
        body = answer.json()
        url = f"/api/v1/jobs/{body['job_id']}"
        assert answer.headers["Location"] == url
        assert body == {
            "message": f"training is still queued: follow job {body['job_id']} at {url}",
            "rmse": None,
            "mae": None,
            "r2": None,
            "mase": None,
            "model_saved": False,
            "model_version": None,
            "promoted": False,
            "promotion_reason": "",
            "training_duration": None,
            "job_id": body["job_id"],
        }
        assert client.get(url).json()["status"] == "queued"


def test_bad_parameters_are_422_with_details(client: TestClient) -> None:
    answer = client.get("/predict", params={"asset": "not an asset"})
    assert answer.status_code == 422 and answer.json()["code"] == "invalid_parameter"
    assert answer.json()["errors"][0]["loc"] == "asset"
    unknown = client.get("/predict", params={"asset": "DOGE-USD"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "asset_not_found"
    assert client.get("/nope").json()["code"] == "not_found"


def test_request_ids_and_body_cap(client: TestClient) -> None:
    assert (
        client.get("/health/live", headers={"X-Request-ID": "abc"}).headers["X-Request-ID"] == "abc"
    )
    assert len(client.get("/health/live").headers["X-Request-ID"]) == 32
    big = client.post(
        "/api/v1/train", content=b"x" * 70_000, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert big.status_code == 413 and big.json()["code"] == "too_large"

    def chunks():  # no Content-Length: the cap must hold while the body streams in
        for _ in range(10):
            yield b" " * 10_000

    chunked = client.post(
        "/api/v1/train", content=chunks(), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert "content-length" not in {k.lower() for k in chunked.request.headers}
    assert chunked.status_code == 413, chunked.text
    assert chunked.json()["code"] == "too_large"


def test_the_api_process_never_imports_torch(installed) -> None:
    import subprocess
    import sys

    code = f"""
import sys
from fastapi.testclient import TestClient
from btc_predictor.api.app import create_app
from btc_predictor.config import Settings
settings = Settings(data_dir={str(installed.data_dir)!r}, api_key="k", embedded_worker=False)
with TestClient(create_app(settings)) as client:
    auth = {{"Authorization": "Bearer k"}}
    assert client.get("/predict").status_code == 200
    assert client.get("/api/v1/forecast", params={{"horizon": 30}}).status_code == 200
    assert client.post("/api/v1/train", json={{"model": "lstm"}}, headers=auth).status_code == 202
    assert client.post("/api/v1/backtests", json={{"model": "ensemble"}}, headers=auth).status_code == 202
    assert client.get("/api/v1/models").status_code == 200
    assert client.get("/health").status_code == 200
assert "torch" not in sys.modules, "torch was imported"
print("TORCH-FREE")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "TORCH-FREE" in done.stdout
