"""Train / predict / models / backtest use cases on a real database with real data."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, update

from btc_predictor.config import Settings
from btc_predictor.errors import (
    ArtifactError,
    HorizonExceedsModelError,
    InvalidInputError,
    NoDataError,
    NoModelError,
    NotEnoughDataError,
)
from btc_predictor.forecasting.executors import SerialExecutor
from btc_predictor.services.backtest import run_backtest
from btc_predictor.services.forecast import predict
from btc_predictor.services.ingest import ingest
from btc_predictor.services.training import train
from btc_predictor.services.versions import list_models, promote_model, rollback_model
from btc_predictor.shapes.requests import (
    BacktestRequest,
    ForecastRequest,
    IngestRequest,
    TrainRequest,
)
from btc_predictor.shapes.results import TrainResult
from btc_predictor.storage.db import write_session
from btc_predictor.storage.tables import ModelArtifactRow
from tests.conftest import NOW

FORECAST_KEYS = {
    "asset",
    "model",
    "model_version",
    "as_of",
    "last_close",
    "last_date",
    "data_age_seconds",
    "stale",
    "level",
    "interval_method",
    "risk_model_version",
    "interval_note",
    "points",
}
TRAIN_KEYS = {
    "asset",
    "model",
    "version",
    "promoted",
    "promotion_reason",
    "training_duration",
    "data_points_used",
    "train_start",
    "train_end",
    "metrics",
    "baseline",
    "calibration",
}


@pytest.fixture
def btc(settings: Settings, engine: Engine, shared_data: Path) -> Engine:
    """The real Bitstamp BTC/USD history ingested."""
    ingest(
        settings,
        engine,
        IngestRequest(asset="BTC-USD", path=shared_data / "Bitstamp_BTCUSD_d.csv"),
        now=NOW,
    )
    return engine


def test_train_reports_against_naive_and_first_real_model_is_promoted(
    settings: Settings, btc: Engine
) -> None:
    # The `train --json` object.
    report = train(settings, btc, TrainRequest(model="drift", promote="always"), now=NOW)
    report = report.model_dump(mode="json")
    assert report.keys() >= TRAIN_KEYS
    assert (report["train_start"], report["train_end"], report["data_points_used"]) == (
        "2018-01-01",
        "2025-11-29",
        2890,
    )
    assert report["baseline"]["naive"]["mae"] == pytest.approx(1487.10, abs=0.01)  # BASELINES.md
    assert report["metrics"]["mase"] == pytest.approx(
        report["metrics"]["mae"] / report["baseline"]["naive"]["mae"]
    )
    assert len(report["calibration"]["residuals_per_horizon"]) == 30
    assert report["promoted"] and "always" in report["promotion_reason"]


def test_baselines_are_never_auto_promoted(settings: Settings, btc: Engine) -> None:
    report = train(settings, btc, TrainRequest(model="naive"), now=NOW)
    assert not report.promoted and "baseline" in report.promotion_reason
    with pytest.raises(NoModelError, match="run `btc-predictor train --asset BTC-USD`"):
        predict(settings, btc, ForecastRequest(), now=NOW)


def test_forecast_object_and_model_choice(settings: Settings, btc: Engine) -> None:
    first = train(settings, btc, TrainRequest(model="naive", promote="always"), now=NOW)
    drift = train(settings, btc, TrainRequest(model="drift", promote="never"), now=NOW)
    # The `predict --json` object.
    forecast = predict(settings, btc, ForecastRequest(horizon=5, level=80), now=NOW)
    forecast = forecast.model_dump(mode="json")
    assert forecast.keys() == FORECAST_KEYS
    assert (forecast["model"], forecast["model_version"], forecast["last_date"]) == (
        "naive",
        first.version,
        "2025-11-29",
    )
    assert forecast["as_of"] == "2025-11-30T00:00:00+00:00" and forecast["stale"] is False
    assert forecast["data_age_seconds"] == 30 * 3600
    points = forecast["points"]
    assert [p["horizon"] for p in points] == [1, 2, 3, 4, 5]
    assert [p["target_date"] for p in points] == [f"2025-11-{d}" for d in (30,)] + [
        f"2025-12-0{d}" for d in range(1, 5)
    ]
    assert all(p["value"] == p["naive"] == forecast["last_close"] == 90832.0 for p in points)
    widths = [p["upper"] - p["lower"] for p in points]
    assert all(p["lower"] < p["value"] < p["upper"] for p in points) and widths == sorted(widths)
    wider = predict(settings, btc, ForecastRequest(horizon=5, level=95), now=NOW)
    wider = wider.model_dump(mode="json")["points"]
    assert all(
        w["upper"] - w["lower"] > p["upper"] - p["lower"]
        for w, p in zip(wider, points, strict=True)
    )
    other = predict(settings, btc, ForecastRequest(horizon=2, model="drift"), now=NOW)
    assert other.model_version == drift.version and other.points[1].value != 90832.0


@pytest.mark.parametrize(
    "fields",
    [{"horizon": 0}, {"horizon": 366}, {"level": 49}, {"level": 100}, {"asset": "BTC_USD"}],
)
def test_the_request_shape_states_the_bounds(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ForecastRequest.model_validate(fields)


@pytest.mark.parametrize(
    ("request_", "error", "message"),
    [
        (ForecastRequest(horizon=31), InvalidInputError, "horizon 31 is out of range"),
        (ForecastRequest(model="gru"), NoModelError, "no gru version for BTC-USD"),
    ],
)
def test_bad_forecast_requests(
    settings: Settings, btc: Engine, request_: ForecastRequest, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        predict(settings, btc, request_, now=NOW)


def test_bad_training_requests(settings: Settings, btc: Engine) -> None:
    with pytest.raises(NoDataError, match="no data for ETH-USD"):
        train(settings, btc, TrainRequest(asset="ETH-USD", model="naive"), now=NOW)
    with pytest.raises(NotEnoughDataError, match="needs at least 295"):
        train(settings, btc, TrainRequest(model="naive", start=date(2025, 6, 1)), now=NOW)
    for bad in ({"model": "prophet"}, {"promote": "maybe"}):
        with pytest.raises(ValidationError):  # the request shape refuses them
            TrainRequest.model_validate(bad)


def test_horizon_beyond_the_model(settings: Settings, btc: Engine) -> None:
    short = settings.model_copy(update={"max_horizon": 7})
    train(short, btc, TrainRequest(model="naive", promote="always"), now=NOW)
    with pytest.raises(HorizonExceedsModelError, match="horizon 10 exceeds this model's 7 days"):
        predict(settings, btc, ForecastRequest(horizon=10), now=NOW)


def test_damaged_active_model_fails_clearly_and_rollback_restores_service(
    settings: Settings, btc: Engine
) -> None:
    good = train(settings, btc, TrainRequest(model="naive", promote="always"), now=NOW).version
    bad = train(settings, btc, TrainRequest(model="drift", promote="always"), now=NOW).version
    with write_session(btc) as session:
        session.execute(
            update(ModelArtifactRow)
            .where(ModelArtifactRow.version_id == bad, ModelArtifactRow.name == "model.onnx")
            .values(content=b"\x08\x01truncated")
        )
    with pytest.raises(ArtifactError, match=f"model.onnx of version {bad} is damaged"):
        predict(settings, btc, ForecastRequest(), now=NOW)
    assert rollback_model(btc, "BTC-USD", now=NOW).id == good
    assert predict(settings, btc, ForecastRequest(), now=NOW).model_version == good
    with pytest.raises(ArtifactError):
        promote_model(btc, bad, now=NOW, reason="test")
    assert predict(settings, btc, ForecastRequest(), now=NOW).model_version == good


def test_keep_versions_prunes_old_ones_but_not_the_active(settings: Settings, btc: Engine) -> None:
    keep2 = settings.model_copy(update={"keep_versions": 2})
    active = train(keep2, btc, TrainRequest(model="naive", promote="always"), now=NOW).version
    for _ in range(3):
        train(keep2, btc, TrainRequest(model="naive", promote="never"), now=NOW)
    rows = list_models(btc, asset="BTC-USD")
    assert [(r.id, r.active, r.pruned) for r in rows] == [
        (active + 3, False, False),
        (active + 2, False, False),
        (active + 1, False, True),
        (active, True, False),
    ]


def test_backtest_json_shape(settings: Settings, btc: Engine) -> None:
    request = BacktestRequest(model="drift", days=120, refit_every=30, horizon=3)
    # The `backtest --json` object.
    report = run_backtest(settings, btc, request, executor=SerialExecutor()).model_dump(mode="json")
    assert (report["asset"], report["model"], report["start"], report["end"]) == (
        "BTC-USD",
        "drift",
        "2025-08-02",
        "2025-11-29",
    )
    assert report["folds"] == 4 and [h["h"] for h in report["horizons"]] == [1, 2, 3]
    h1 = report["horizons"][0]
    assert {
        "n",
        "mae",
        "rmse",
        "mape",
        "mase",
        "directional_accuracy",
        "coverage",
        "interval_width",
        "naive_mae",
        "dm_pvalue",
    } <= h1.keys()
    assert h1["n"] == 120 and 0.8 < h1["mase"] < 1.2
    row = report["series"][0]
    assert row.keys() >= {
        "origin",
        "target_date",
        "h",
        "actual",
        "forecast",
        "lower",
        "upper",
        "naive",
    }
    with pytest.raises(ValidationError, match="give days or start, not both"):
        BacktestRequest(days=10, start=date(2025, 1, 1))


def test_predict_in_a_fresh_process_never_imports_torch(
    sqlite_settings: Settings, shared_data: Path
) -> None:
    from btc_predictor.storage.db import create_db_engine, upgrade

    engine = create_db_engine(sqlite_settings)
    upgrade(engine)
    ingest(
        sqlite_settings,
        engine,
        IngestRequest(asset="BTC-USD", path=shared_data / "Bitstamp_BTCUSD_d.csv"),
        now=NOW,
    )
    train(sqlite_settings, engine, TrainRequest(model="drift", promote="always"), now=NOW)
    code = (
        "import sys\n"
        "from btc_predictor.cli import main\n"
        "sys.argv = ['btc-predictor', 'predict', '--json', '--horizon', '3']\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('TORCH-FREE', file=sys.stderr)\n"
    )
    env = {"BTCP_DATA_DIR": str(sqlite_settings.data_dir), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "TORCH-FREE" in done.stderr
    assert json.loads(done.stdout)["model"] == "drift"


def test_default_lstm_trains_promotes_and_serves_through_onnx(
    settings: Settings, btc: Engine
) -> None:
    """The real default model, capped at 2 epochs: stored, verified, promoted, served."""
    from btc_predictor.services.training import bootstrap_models

    quick = settings.model_copy(update={"train_epochs": 2})
    results = bootstrap_models(quick, btc, now=NOW)
    risk, report = results["BTC-USD"]  # the default risk model first, then the price model
    assert isinstance(risk, TrainResult) and (risk.model, risk.family) == ("har", "risk")
    assert isinstance(report, TrainResult) and report.model == "lstm" and report.promoted
    assert report.promotion_reason == "promoted: no version is active"
    assert report.metrics.mase is not None and 0.9 < report.metrics.mase < 1.1
    assert bootstrap_models(quick, btc, now=NOW) == {
        "BTC-USD": [
            f"risk version {risk.version} is active",
            f"price version {report.version} is active",
        ]
    }
    forecast = predict(quick, btc, ForecastRequest(horizon=30), now=NOW)
    assert forecast.model == "lstm" and len(forecast.points) == 30
    again = train(quick, btc, TrainRequest(model="lstm", seed=1), now=NOW)
    assert "on the same 578 days" in again.promotion_reason
