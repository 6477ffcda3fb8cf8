"""POST /api/v1/backtests with a risk model: the same body, the risk report as the result."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from btc_predictor.config import Settings
from btc_predictor.forecasting.executors import SerialExecutor
from btc_predictor.jobs.worker import Worker
from btc_predictor.storage.db import create_db_engine
from tests.api.conftest import AUTH
from tests.conftest import NOW


@pytest.fixture
def worker(installed: Settings) -> Iterator[Worker]:
    engine = create_db_engine(installed)
    yield Worker(installed, engine, clock=lambda: NOW, executor=SerialExecutor())
    engine.dispose()


def test_risk_backtest_runs_as_a_job(client: TestClient, worker: Worker) -> None:
    body = {"model": "har", "days": 60, "horizon": 2, "refit_every": 30}
    job = client.post("/api/v1/backtests", json=body, headers=AUTH)
    assert job.status_code == 202 and job.json()["params"]["model"] == "har"
    assert worker.run_once()
    report = client.get(f"/api/v1/backtests/{job.json()['id']}").json()
    assert report["family"] == "risk" and report["model"] == "har"
    h1 = report["horizons"][0]
    assert h1["n"] == 60 and {"qlike", "qlike_garch", "dm_pvalue_garch", "winkler"} <= set(h1)
    assert len(report["series"]) == 60 + 59 and "volatility" in report["series"][0]
    # the price family is untouched: the active drift version still serves /predict
    assert client.get("/predict").status_code == 200


def test_risk_backtest_bad_horizon_is_refused_before_queueing(client: TestClient) -> None:
    body = {"model": "har", "days": 60, "horizon": 31}
    answer = client.post("/api/v1/backtests", json=body, headers=AUTH)
    assert answer.status_code in (409, 422) and "horizon" in answer.json()["detail"]
