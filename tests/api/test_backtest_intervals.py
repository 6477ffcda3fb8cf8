"""``POST /api/v1/backtests``: the job's report carries the issue-16 interval keys."""

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


def test_backtest_job_reports_interval_method_var_and_p_up(
    client: TestClient, worker: Worker
) -> None:
    body = {"model": "naive", "days": 200, "horizon": 1}
    job = client.post("/api/v1/backtests", json=body, headers=AUTH).json()
    assert worker.run_once()
    report = client.get(f"/api/v1/backtests/{job['id']}").json()
    assert (report["interval_method"], report["risk_model"]) == ("adaptive", "har")
    [h1] = report["horizons"]
    assert {"winkler", "worst_90d_coverage", "coverage_by_vol_tercile", "var"} <= set(h1)
    assert set(h1["var"]["99"]) == {"rate", "kupiec_p", "christoffersen_p"}
    assert {"brier", "brier_skill", "calibration_error"} <= set(h1)
    assert {"p_up", "var_95", "var_99"} <= set(report["series"][-1])
    assert report["series"][-1]["var_95"] > 0
