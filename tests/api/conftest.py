"""API fixtures: a temp SQLite install with real BTC data and a trained model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from btc_predictor.api.app import create_app
from btc_predictor.config import Settings
from btc_predictor.services.ingest import ingest
from btc_predictor.services.training import train
from btc_predictor.shapes.requests import IngestRequest, TrainRequest
from btc_predictor.storage.db import create_db_engine, upgrade
from tests.conftest import NOW

API_KEY = "test-key-0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def api_settings(tmp_path: Path) -> Settings:
    """An embedded install (no worker subprocess; tests run jobs themselves)."""
    return Settings(
        data_dir=tmp_path / "data",
        api_key=API_KEY,
        embedded_worker=False,
        sources=["yahoo"],
        train_epochs=2,
    )


@pytest.fixture
def installed(api_settings: Settings, shared_data: Path) -> Settings:
    """Real BTC history ingested and a drift model active."""
    engine = create_db_engine(api_settings)
    upgrade(engine)
    ingest(
        api_settings,
        engine,
        IngestRequest(asset="BTC-USD", path=shared_data / "Bitstamp_BTCUSD_d.csv"),
        now=NOW,
    )
    train(api_settings, engine, TrainRequest(model="drift", promote="always"), now=NOW)
    engine.dispose()
    return api_settings


def client_for(settings: Settings) -> TestClient:
    app = create_app(settings, clock=lambda: NOW)
    return TestClient(app)


@pytest.fixture
def client(installed: Settings) -> Iterator[TestClient]:
    with client_for(installed) as test_client:
        yield test_client


@pytest.fixture
def empty_client(api_settings: Settings) -> Iterator[TestClient]:
    with client_for(api_settings) as test_client:
        yield test_client
