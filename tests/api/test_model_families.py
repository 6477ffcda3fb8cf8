"""Model families over HTTP: a risk promotion or rollback never changes the price version that
/predict and /api/v1/forecast serve; listings carry ``family``; rollback's body picks one."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from btc_predictor.config import Settings
from btc_predictor.jobs.worker import Worker
from btc_predictor.storage import model_store as store
from btc_predictor.storage.db import create_db_engine, write_session
from btc_predictor.storage.tables import CandleRow
from tests.api.conftest import AUTH
from tests.conftest import NOW


def stored_risk_version(settings: Settings) -> int:
    """A risk version as the store keeps it (no model.onnx), not yet promoted."""
    engine = create_db_engine(settings)
    version = store.NewVersion(
        asset="BTC-USD",
        model="har",
        family="risk",
        created_at=NOW,
        train_start=date(2018, 1, 1),
        train_end=date(2025, 11, 30),
        data_points=2891,
        data_sha256="cd" * 32,
        seed=0,
        training_duration=0.2,
        holdout_mase=0.82,
        summary={"metrics": {"mase": 0.82, "range_mae": 1.1, "qlike": 0.3}},
    )
    artifacts = store.ArtifactSet(None, b"risk-weights", {"model": "har"})
    with write_session(engine) as session:
        vid = store.save_version(session=session, version=version, artifacts=artifacts)
    engine.dispose()
    return vid


def served_versions(client: TestClient) -> tuple[int, int]:
    """The version behind /predict and behind /api/v1/forecast."""
    predict = client.get("/predict").json()["model_version"]
    forecast = client.get("/api/v1/forecast", params={"horizon": 1}).json()["model_version"]
    return predict, forecast


def test_a_risk_promotion_leaves_predict_and_forecast_on_the_price_version(
    client: TestClient, installed: Settings
) -> None:
    price = client.get("/api/v1/models").json()[0]["id"]
    assert served_versions(client) == (price, price)
    first, second = stored_risk_version(installed), stored_risk_version(installed)
    for risk in (first, second):
        promoted = client.post(f"/api/v1/models/{risk}/promote", headers=AUTH).json()
        assert promoted["family"] == "risk" and promoted["active"]
        assert served_versions(client) == (price, price)
    listed = {m["id"]: (m["family"], m["active"]) for m in client.get("/api/v1/models").json()}
    assert listed == {price: ("price", True), first: ("risk", False), second: ("risk", True)}
    risk_only = client.get("/api/v1/models", params={"family": "risk"}).json()
    assert [m["id"] for m in risk_only] == [second, first]
    assert client.get(f"/api/v1/models/{second}").json()["metrics"]["qlike"] == 0.3
    info = client.get("/model-info").json()
    assert (info["model_version"], info["model"]) == (price, "drift")

    back = client.post("/api/v1/models/BTC-USD/rollback", headers=AUTH, json={"family": "risk"})
    assert back.status_code == 200 and (back.json()["id"], back.json()["family"]) == (first, "risk")
    assert served_versions(client) == (price, price)
    # No body: the price family, which has nothing earlier to go back to.
    price_back = client.post("/api/v1/models/BTC-USD/rollback", headers=AUTH)
    assert price_back.status_code == 409 and "(price family)" in price_back.json()["detail"]
    assert served_versions(client) == (price, price)


def test_rollback_body_family_must_be_price_or_risk(client: TestClient) -> None:
    bad = client.post("/api/v1/models/BTC-USD/rollback", headers=AUTH, json={"family": "vol"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_parameter"
    extra = client.post("/api/v1/models/BTC-USD/rollback", headers=AUTH, json={"famly": "risk"})
    assert extra.status_code == 422


@pytest.fixture
def fast_worker(installed: Settings) -> Iterator[Worker]:
    """A worker whose defaults are quick to train: drift (price) and har (risk), from 2021."""
    settings = installed.model_copy(
        update={"default_model": "drift", "train_start": date(2021, 1, 1)}
    )
    engine = create_db_engine(settings)
    yield Worker(settings, engine, clock=lambda: NOW)
    engine.dispose()


def test_train_without_a_model_reports_price_on_top_and_risk_inside(
    client: TestClient, fast_worker: Worker
) -> None:
    answer = client.post("/api/v1/train", json={}, headers=AUTH)
    assert answer.status_code == 202 and "model" not in answer.json()["params"]
    assert fast_worker.run_once()
    job = client.get(f"/api/v1/jobs/{answer.json()['id']}").json()
    assert job["status"] == "succeeded", job["error"]
    price, risk = job["result"], job["result"]["risk"]
    assert (price["model"], price["family"], risk["model"], risk["family"]) == (
        "drift",
        "price",
        "har",
        "risk",
    )
    assert set(risk) == set(price) and risk["risk"] is None  # the same keys
    assert "calibration" not in price and "calibration" not in risk  # residuals stay in meta
    assert set(risk["metrics"]) == {"mase", "range_mae", "qlike", "dm_pvalue", "coverage"}
    assert risk["promoted"] and risk["version"] < price["version"]
    models = client.get("/api/v1/models").json()
    active = {m["family"]: m["id"] for m in models if m["active"]}
    assert active["risk"] == risk["version"]
    assert served_versions(client) == (active["price"], active["price"])


def test_legacy_train_reports_the_price_model_only(client: TestClient, fast_worker: Worker) -> None:
    stop = threading.Event()
    runner = threading.Thread(target=fast_worker.run_forever, args=(stop,), daemon=True)
    runner.start()
    try:
        answer = client.post("/train", headers=AUTH)
    finally:
        stop.set()
        runner.join(timeout=30)
    body = answer.json()
    assert answer.status_code == 200, body
    assert body["model_saved"] is True and body["rmse"] > 0  # a price metric, from drift
    assert "risk" not in body
    job = client.get(f"/api/v1/jobs/{body['job_id']}").json()
    assert job["result"]["risk"]["model"] == "har"
    assert body["model_version"] == job["result"]["version"]


def test_a_risk_training_on_a_candle_with_high_below_low_is_refused_at_the_door(
    client: TestClient, installed: Settings
) -> None:
    engine = create_db_engine(installed)
    with write_session(engine) as session:
        session.execute(
            update(CandleRow)
            .where(CandleRow.ts == datetime(2024, 2, 1, tzinfo=UTC))
            .values(high=CandleRow.low / 2)
        )
    engine.dispose()
    for body in ({"model": "har"}, {}):
        answer = client.post("/api/v1/train", json=body, headers=AUTH)
        assert answer.status_code == 409 and answer.json()["code"] == "no_data", answer.text
        assert "candle 2024-02-01 has high" in answer.json()["detail"]
    assert client.get("/api/v1/jobs").json() == []
    # Price models train on closes only.
    assert client.post("/api/v1/train", json={"model": "drift"}, headers=AUTH).status_code == 202
