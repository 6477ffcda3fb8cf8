"""The serving state: its background logging (one line per change of state during an outage),
and the load of each active version, where a damaged one is found."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from btc_predictor.api.state import Outage
from btc_predictor.config import Settings
from btc_predictor.errors import UnavailableError
from btc_predictor.storage import model_store as store
from btc_predictor.storage.db import create_db_engine, write_session
from btc_predictor.storage.tables import ModelArtifactRow
from tests.api.conftest import client_for

log = logging.getLogger("tests.outage")


def test_an_outage_is_logged_once_per_change_not_per_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = Outage("state poll", log)
    refused = OperationalError("SELECT 1", {}, Exception("connection refused"))
    with caplog.at_level(logging.INFO, "tests.outage"):
        for _ in range(30):  # 30 polls of a stalled or refused database
            outage.failed(refused)
            outage.failed(UnavailableError("the database did not answer within 10 s"))
        outage.ended()
        outage.ended()
        outage.failed(RuntimeError("a bug"))
        outage.failed(RuntimeError("a bug"))
    lines = [(r.levelname, r.getMessage().split(":")[0], bool(r.exc_info)) for r in caplog.records]
    assert lines == [
        ("WARNING", "state poll failing", False),
        ("WARNING", "state poll recovered after 0.0 s", False),
        ("ERROR", "state poll failing", True),  # not the database: its traceback, once
    ]


def test_a_damaged_active_version_is_found_when_loaded_not_per_request(
    installed: Settings,
) -> None:
    engine = create_db_engine(installed)
    with write_session(engine) as session:
        version = store.active_version_id(session=session, asset="BTC-USD")
        session.execute(
            update(ModelArtifactRow)
            .where(
                ModelArtifactRow.version_id == version,
                ModelArtifactRow.name == "weights.safetensors",
            )
            .values(content=b"damaged")
        )
    engine.dispose()
    with client_for(installed) as client:
        serving = client.app.state.serving  # type: ignore[attr-defined]
        assert serving.load_error(version) and "damaged" in serving.load_error(version)
        body = client.get("/health").json()
        assert body["status"] == "degraded" and body["model_ready"] is False
        # (the worker's own reasons are not this test's: it runs without one)
        mine = [(r["component"], r["asset"]) for r in body["reasons"] if r["component"] != "worker"]
        assert mine == [("model_store", "BTC-USD")]
        answer = client.get("/api/v1/forecast")
        assert answer.status_code == 503 and answer.json()["code"] == "artifact_damaged"
