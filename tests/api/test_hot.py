"""The hot read paths answer exactly like their FastAPI declarations (the documented contract)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from btc_predictor.api.app import create_app
from btc_predictor.config import Settings
from btc_predictor.services.ingest import ingest
from btc_predictor.shapes.requests import IngestRequest
from btc_predictor.storage.db import create_db_engine
from tests.conftest import NOW
from tests.factories import strict_json

QUERIES = [
    "/predict",
    "/predict?asset=btc-usd&level=80",
    "/predict?asset=BTC/USD",
    "/predict?level=49",
    "/predict?level=abc",
    "/predict?level=90.5",
    "/predict?asset=ETH-USD",
    "/predict?asset=not-an-asset-at-all",
    "/predict?asset=",
    "/predict?unknown=1",
    "/api/v1/forecast",
    "/api/v1/forecast?horizon=1&level=95",
    "/api/v1/forecast?horizon=30",
    "/api/v1/forecast?horizon=31",
    "/api/v1/forecast?horizon=0",
    "/api/v1/forecast?horizon=x&level=y",
    "/api/v1/forecast?model=drift&horizon=3",
    "/api/v1/forecast?model=gru",
    "/api/v1/forecast?model=nope",
    "/api/v1/forecast?asset=DOGE-USD",
    "/api/v1/risk",  # no risk version here: 409 no_model (test_risk.py compares answers)
    "/api/v1/risk?horizon=31",
    "/api/v1/risk?horizon=2&level=x",
    "/api/v1/risk?model=lstm",
    "/api/v1/risk?model=nope",
    "/api/v1/risk?asset=DOGE-USD",
]


@pytest.fixture
def pair(installed: Settings) -> Iterator[tuple[TestClient, TestClient]]:
    """The app as served (hot routes first) and the app with only the FastAPI routes."""
    hot = TestClient(create_app(installed, clock=lambda: NOW))
    plain = TestClient(create_app(installed, clock=lambda: NOW, hot_paths=False))
    with hot, plain:
        yield hot, plain


@pytest.mark.parametrize("url", QUERIES)
def test_hot_route_equals_its_declaration(pair: tuple[TestClient, TestClient], url: str) -> None:
    hot, plain = pair
    fast, reference = hot.get(url), plain.get(url)
    assert fast.status_code == reference.status_code, fast.text
    # Each request has its own id (a problem carries it); everything else is identical.
    assert {**fast.json(), "request_id": None} == {**reference.json(), "request_id": None}
    assert fast.headers["content-type"] == reference.headers["content-type"]


def test_hot_routes_are_the_ones_serving(installed: Settings) -> None:
    app = create_app(installed, clock=lambda: NOW)
    served = [getattr(route, "path", None) for route in app.router.routes]
    # Ahead of every included router (no path of its own), so FastAPI's matching never runs.
    first_router = served.index(None)
    assert served.index("/predict") < first_router
    assert served.index("/api/v1/forecast") < first_router
    assert served.index("/api/v1/risk") < first_router


def test_answers_are_strict_json_and_a_non_finite_forecast_is_an_error(
    installed: Settings, tmp_path: Path
) -> None:
    """orjson would write NaN/inf as null: the forecast refuses them before it gets there."""
    hot = TestClient(create_app(installed, clock=lambda: NOW))
    plain = TestClient(create_app(installed, clock=lambda: NOW, hot_paths=False))
    with hot, plain:
        for client in (hot, plain):
            for url in ("/predict", "/api/v1/forecast?horizon=3", "/api/v1/models"):
                answer = client.get(url)
                assert answer.status_code == 200 and strict_json(answer.content), url
        # A close near the float maximum is valid data, but its interval overflows.
        huge = tmp_path / "huge.csv"
        huge.write_text(
            "Date,Open,High,Low,Close,Adj Close,Volume\n"
            "2025-11-30,1e308,1.79e308,1e308,1.79e308,0,1\n"
        )
        engine = create_db_engine(installed)
        ingest(installed, engine, IngestRequest(asset="BTC-USD", path=huge), now=NOW)
        engine.dispose()
        for client in (hot, plain):
            client.app.state.serving.refresh()
            for url in ("/predict", "/api/v1/forecast?horizon=3"):
                answer = client.get(url)
                body = strict_json(answer.content)
                assert (answer.status_code, body["code"]) == (503, "artifact_damaged"), url
                assert "forecast is not finite" in body["detail"]
