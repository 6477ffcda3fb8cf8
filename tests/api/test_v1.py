"""The versioned API: forecast, assets, models, ledger."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import AUTH


def test_forecast_is_exactly_predict_json(client: TestClient, installed) -> None:
    from btc_predictor.services.forecast import predict
    from btc_predictor.shapes.requests import ForecastRequest
    from btc_predictor.storage.db import create_db_engine
    from tests.conftest import NOW

    served = client.get("/api/v1/forecast", params={"horizon": 7, "level": 80}).json()
    engine = create_db_engine(installed)
    expected = predict(installed, engine, ForecastRequest(horizon=7, level=80), now=NOW)
    assert served == expected.model_dump(mode="json")
    engine.dispose()


def test_forecast_errors(client: TestClient) -> None:
    assert client.get("/api/v1/forecast", params={"horizon": 0}).status_code == 422
    assert client.get("/api/v1/forecast", params={"level": 100}).status_code == 422
    too_far = client.get("/api/v1/forecast", params={"horizon": 31})
    assert too_far.status_code == 422 and "horizon 31 is out of range" in too_far.json()["detail"]
    gru = client.get("/api/v1/forecast", params={"model": "gru"})
    assert gru.status_code == 409 and gru.json()["code"] == "no_model"


def test_assets_and_candles(client: TestClient) -> None:
    [btc] = client.get("/api/v1/assets").json()
    assert (btc["asset"], btc["rows"], btc["last"]) == ("BTC-USD", 4020, "2025-11-29")
    candles = client.get("/api/v1/assets/BTC-USD/candles", params={"limit": 3}).json()
    assert [c["date"] for c in candles] == ["2025-11-27", "2025-11-28", "2025-11-29"]
    ranged = client.get(
        "/api/v1/assets/BTC-USD/candles", params={"start": "2024-01-01", "end": "2024-01-03"}
    ).json()
    assert [c["date"] for c in ranged] == ["2024-01-01", "2024-01-02"]
    missing = client.get("/api/v1/assets/DOGE-USD/candles")
    assert missing.status_code == 404 and missing.json()["code"] == "asset_not_found"
    assert "BTC-USD" in missing.json()["detail"]


def test_models_promote_and_rollback(client: TestClient, installed) -> None:
    from btc_predictor.services.training import train
    from btc_predictor.shapes.requests import TrainRequest
    from btc_predictor.storage.db import create_db_engine
    from tests.conftest import NOW

    engine = create_db_engine(installed)
    naive = train(installed, engine, TrainRequest(model="naive", promote="never"), now=NOW).version
    engine.dispose()
    models = client.get("/api/v1/models").json()
    assert [(m["model"], m["active"]) for m in models] == [("naive", False), ("drift", True)]
    assert client.post(f"/api/v1/models/{naive}/promote").status_code == 401
    assert client.get("/predict").json()["model_version"] != naive  # cached: the old version
    promoted = client.post(f"/api/v1/models/{naive}/promote", headers=AUTH).json()
    assert promoted["active"] and promoted["model"] == "naive"
    # The process that promoted serves the new version from the very next request.
    assert client.get("/predict").json()["model_version"] == naive
    assert (
        client.get(f"/api/v1/models/{naive}").json()["promotions"][0]["reason"]
        == "promoted by hand (api)"
    )
    back = client.post("/api/v1/models/BTC-USD/rollback", headers=AUTH).json()
    assert back["model"] == "drift"
    assert client.get("/predict").json()["model_version"] == back["id"]
    again = client.post("/api/v1/models/BTC-USD/rollback", headers=AUTH)
    assert again.status_code == 409 and again.json()["code"] == "no_model"
    assert client.get("/api/v1/models/999").json()["code"] == "model_not_found"


@pytest.mark.parametrize("version", [0, 2**31, 2**63, 2**64])
def test_version_ids_beyond_the_database_keys_are_invalid_parameters(
    client: TestClient, version: int
) -> None:
    """One bound for the CLI and the API: the key column's (PostgreSQL refuses 2^31 in it)."""
    for answer in (
        client.get(f"/api/v1/models/{version}"),
        client.post(f"/api/v1/models/{version}/promote", headers=AUTH),
    ):
        assert answer.status_code == 422 and answer.json()["code"] == "invalid_parameter"
    largest = client.get(f"/api/v1/models/{2**31 - 1}")
    assert largest.status_code == 404 and largest.json()["code"] == "model_not_found"


def test_served_forecasts_are_recorded_once_in_the_ledger(client: TestClient) -> None:
    for _ in range(3):
        client.get("/api/v1/forecast", params={"horizon": 3, "level": 80})
    entries = client.get("/api/v1/predictions").json()
    assert [(e["horizon"], e["level"]) for e in entries] == [(3, 90), (2, 90), (1, 90)]
    assert all(e["actual"] is None for e in entries)
