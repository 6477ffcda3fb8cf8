"""Training risk models through the train use case: holdout metrics, a stored risk version
(no model.onnx) whose parameters rebuild the model, the promotion rule per family, both
defaults trained when no model is named, and inconsistent candles refused."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load
from sqlalchemy import Engine, update

from btc_predictor.config import Settings
from btc_predictor.errors import NoDataError
from btc_predictor.forecasting.registry import get_risk_model_class
from btc_predictor.services.forecast import predict
from btc_predictor.services.ingest import ingest
from btc_predictor.services.risk_training import risk_data
from btc_predictor.services.training import admit_fit, bootstrap_models, train
from btc_predictor.services.training_common import load_window
from btc_predictor.services.versions import active_version_id, list_models
from btc_predictor.shapes.requests import ForecastRequest, IngestRequest, TrainRequest
from btc_predictor.shapes.results import RiskMetrics, TrainResult
from btc_predictor.storage import model_store as store
from btc_predictor.storage.db import read_session, write_session
from btc_predictor.storage.tables import CandleRow
from tests.conftest import NOW

RISK_METRICS = {"mase", "range_mae", "qlike", "dm_pvalue", "coverage"}


@pytest.fixture
def quick(settings: Settings) -> Settings:
    """BTC from 2021 (~1,800 days) with a cheap price default, so tests stay fast."""
    return settings.model_copy(
        update={"train_start": datetime(2021, 1, 1).date(), "default_model": "drift"}
    )


@pytest.fixture
def btc(quick: Settings, engine: Engine, shared_data: Path) -> Engine:
    """The real Bitstamp BTC/USD history ingested."""
    request = IngestRequest(asset="BTC-USD", path=shared_data / "Bitstamp_BTCUSD_d.csv")
    ingest(quick, engine, request, now=NOW)
    return engine


def test_har_trains_a_risk_version_that_rebuilds_from_its_artifacts(
    quick: Settings, btc: Engine
) -> None:
    report = train(quick, btc, TrainRequest(model="har"), now=NOW)
    assert (report.family, report.model, report.promoted) == ("risk", "har", True)
    assert report.promotion_reason == "promoted: no version is active"
    assert isinstance(report.metrics, RiskMetrics)
    assert set(report.metrics.model_dump()) == RISK_METRICS
    # HAR beats naive-range on the holdout (NOTES-RISK: range MASE ~0.80-0.84 at h=1).
    assert report.metrics.mase is not None and report.metrics.mase < 0.95
    assert report.baseline.naive.mae is not None and report.metrics.range_mae is not None
    assert report.metrics.range_mae < report.baseline.naive.mae
    assert report.calibration is not None
    assert len(report.calibration.residuals_per_horizon) == quick.max_horizon
    # A risk version leaves the price family alone: nothing serves prices yet.
    assert active_version_id(btc, "BTC-USD") is None
    assert active_version_id(btc, "BTC-USD", "risk") == report.version
    with read_session(btc) as session:
        artifacts = store.load_artifacts(session=session, version_id=report.version)
        row = store.get_version(session=session, version_id=report.version)
    assert artifacts.onnx is None and row.family == "risk"
    assert artifacts.meta["family"] == "risk" and artifacts.meta["model"] == "har"
    rebuilt = get_risk_model_class("har").from_artifacts(
        artifacts.meta["config"], load(artifacts.weights)
    )
    data = risk_data("BTC-USD", load_window(btc, "BTC-USD", quick.train_start))
    fitted = get_risk_model_class("har")(max_horizon=quick.max_horizon).fit(data.ohlc, seed=0)
    want, got = fitted.forecast(data.ohlc, 30), rebuilt.forecast(data.ohlc, 30)
    np.testing.assert_allclose(got.volatility, want.volatility, rtol=1e-9, atol=0)
    np.testing.assert_allclose(got.range_pct, want.range_pct, rtol=1e-9, atol=0)


def test_promotion_rule_for_risk_versions(quick: Settings, btc: Engine) -> None:
    first = train(quick, btc, TrainRequest(model="har"), now=NOW)
    again = train(quick, btc, TrainRequest(model="har"), now=NOW)
    # The same model on the same days ties: 0.5% lower range MASE is required.
    assert not again.promoted
    assert (
        "holdout MASE" in again.promotion_reason and "0.5% lower required" in again.promotion_reason
    )
    baseline = train(quick, btc, TrainRequest(model="naive-range"), now=NOW)
    assert not baseline.promoted and "baseline" in baseline.promotion_reason
    assert active_version_id(btc, "BTC-USD", "risk") == first.version
    listed = {v.id: (v.family, v.active) for v in list_models(btc, family="risk")}
    assert listed == {
        first.version: ("risk", True),
        again.version: ("risk", False),
        baseline.version: ("risk", False),
    }


def test_no_model_trains_the_risk_default_first_then_price(quick: Settings, btc: Engine) -> None:
    # drift is a baseline (never auto-promoted): `always` makes it serve.
    report = train(quick, btc, TrainRequest(promote="always"), now=NOW)
    assert (report.model, report.family) == ("drift", "price")
    assert report.risk is not None and (report.risk.model, report.risk.family) == ("har", "risk")
    assert report.risk.version < report.version  # risk first
    assert set(report.risk.model_dump()) == set(report.model_dump())  # the same keys
    assert active_version_id(btc, "BTC-USD") == report.version
    assert active_version_id(btc, "BTC-USD", "risk") == report.risk.version
    assert predict(quick, btc, ForecastRequest(), now=NOW).model_version == report.version
    # A later risk promotion does not move the price forecast.
    forced = train(quick, btc, TrainRequest(model="ewma-vol", promote="always"), now=NOW)
    assert forced.promoted and active_version_id(btc, "BTC-USD", "risk") == forced.version
    assert predict(quick, btc, ForecastRequest(), now=NOW).model_version == report.version


def test_bootstrap_trains_each_family_that_has_no_active_version(
    quick: Settings, btc: Engine
) -> None:
    price = train(quick, btc, TrainRequest(model="drift", promote="always"), now=NOW)
    results = bootstrap_models(quick, btc, now=NOW)["BTC-USD"]
    risk, price_state = results
    assert isinstance(risk, TrainResult) and (risk.model, risk.promoted) == ("har", True)
    assert price_state == f"price version {price.version} is active"
    assert bootstrap_models(quick, btc, now=NOW)["BTC-USD"] == [
        f"risk version {risk.version} is active",
        f"price version {price.version} is active",
    ]


def test_a_candle_with_high_below_low_is_refused_and_nothing_is_stored(
    quick: Settings, btc: Engine
) -> None:
    day = datetime(2023, 3, 5, tzinfo=UTC)
    with write_session(btc) as session:
        session.execute(
            update(CandleRow).where(CandleRow.ts == day).values(high=CandleRow.low * 0.99)
        )
    for request in (TrainRequest(model="har"), TrainRequest()):
        with pytest.raises(NoDataError, match=r"candle 2023-03-05 has high .* below low"):
            admit_fit(quick, btc, request, now=NOW)
        with pytest.raises(NoDataError, match="--since 2023-03-05 --force"):
            train(quick, btc, request, now=NOW)
    assert list_models(btc) == []
    # Price models train on closes only; a window after the bad day trains risk models too.
    assert train(quick, btc, TrainRequest(model="drift"), now=NOW).family == "price"
    later = TrainRequest(model="har", start=datetime(2023, 3, 6).date())
    assert train(quick, btc, later, now=NOW).family == "risk"
