"""Requests that can only fail are refused at the door, with the error table's codes: no job
is queued for an unknown asset, a tracked one with no data, a future start, a horizon beyond
the trained ones, or lax scalars; a forecast of an unknown asset is 404, not "train it"."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import AUTH, client_for

# ``NOW`` (the app's clock in these tests) is 2025-12-01.
REFUSED = [
    ("/api/v1/train", {"asset": "DOGE-USD"}, 404, "asset_not_found"),
    ("/api/v1/backtests", {"asset": "DOGE-USD", "days": 60}, 404, "asset_not_found"),
    ("/api/v1/train", {"start": "2025-12-01"}, 422, "invalid_parameter"),
    ("/api/v1/train", {"start": "2026-06-01"}, 422, "invalid_parameter"),
    ("/api/v1/backtests", {"start": "2030-01-01"}, 422, "invalid_parameter"),
    ("/api/v1/backtests", {"horizon": 31}, 422, "invalid_parameter"),  # BTCP_MAX_HORIZON 30
    ("/api/v1/backtests", {"horizon": 365}, 422, "invalid_parameter"),
    ("/api/v1/backtests", {"days": 30, "start": "2024-01-01"}, 422, "invalid_parameter"),
    ("/api/v1/train", {"seed": False}, 422, "invalid_parameter"),
    ("/api/v1/train", {"start": 0}, 422, "invalid_parameter"),
    ("/api/v1/train", {"seed": "3"}, 422, "invalid_parameter"),
    ("/api/v1/assets/BTC-USD/refresh", {"force": 0}, 422, "invalid_parameter"),
]


@pytest.mark.parametrize(("path", "body", "status", "code"), REFUSED)
def test_doomed_jobs_are_refused_and_nothing_is_queued(
    client: TestClient, path: str, body: dict[str, Any], status: int, code: str
) -> None:
    answer = client.post(path, json=body, headers=AUTH)
    assert (answer.status_code, answer.json()["code"]) == (status, code), answer.json()
    assert client.get("/api/v1/jobs").json() == []


def test_the_unknown_asset_message_lists_the_known_ones(client: TestClient) -> None:
    detail = client.post("/api/v1/train", json={"asset": "DOGE-USD"}, headers=AUTH).json()
    assert "BTC-USD" in detail["detail"] and "btc-predictor ingest" in detail["detail"]


def test_a_tracked_asset_without_data_cannot_be_trained(installed: Any) -> None:
    tracked = installed.model_copy(update={"assets": ["BTC-USD", "ETH-USD"]})
    with client_for(tracked) as client:
        answer = client.post("/api/v1/train", json={"asset": "ETH-USD"}, headers=AUTH)
        assert (answer.status_code, answer.json()["code"]) == (409, "no_data")
        assert client.post("/api/v1/assets/ETH-USD/refresh", headers=AUTH).status_code == 202


def test_sound_requests_still_pass(client: TestClient) -> None:
    for path, body in (
        ("/api/v1/train", {"model": "naive", "start": "2024-01-01", "seed": 5.0}),
        ("/api/v1/backtests", {"model": "naive", "days": 60, "horizon": 30}),
    ):
        assert client.post(path, json=body, headers=AUTH).status_code == 202


@pytest.mark.parametrize("path", ["/api/v1/forecast?asset=DOGE-USD", "/predict?asset=DOGE-USD"])
def test_a_forecast_of_an_unknown_asset_is_404(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert (answer.status_code, answer.json()["code"]) == (404, "asset_not_found")


def test_a_known_asset_without_a_model_is_still_409(installed: Any) -> None:
    tracked = installed.model_copy(update={"assets": ["BTC-USD", "ETH-USD"]})
    with client_for(tracked) as client:
        answer = client.get("/api/v1/forecast", params={"asset": "ETH-USD"})
        assert (answer.status_code, answer.json()["code"]) == (409, "no_model")
