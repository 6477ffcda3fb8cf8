"""The forecast-health gauges of /metrics, built from the database at scrape time."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from btc_predictor.api.metrics import HealthCollector
from btc_predictor.config import Settings
from btc_predictor.shapes.requests import ForecastRequest
from btc_predictor.telemetry import HEALTH_METRICS
from tests.conftest import NOW
from tests.factories import fill_ledger


def scrape(collector: HealthCollector) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The collector's exposition, parsed back: name -> [(labels, value)]."""
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        family.name: [(s.labels, s.value) for s in family.samples]
        for family in text_string_to_metric_families(text)
    }


def test_health_gauges_come_from_the_database(served: Settings, engine: Engine) -> None:
    fill_ledger(engine, 30, error=8.0, naive_error=10.0)

    def forecast(request: ForecastRequest, now: datetime) -> dict[str, object]:
        points = [
            {"horizon": h, "value": 100.0 + h, "lower": 90.0, "upper": 110.0 + h}
            for h in range(1, request.horizon + 1)
        ]
        return {"points": points}

    families = scrape(HealthCollector(served, engine, forecast=forecast, clock=lambda: NOW))
    assert set(families) == set(HEALTH_METRICS)
    info = families["bitcoin_lstm_model_info"]
    assert info == [({"asset": "BTC-USD", "model": "naive", "version": "1"}, 1.0)]
    last_day = date(2024, 1, 1) + timedelta(days=699)
    age = NOW - datetime.combine(last_day + timedelta(days=1), datetime.min.time(), NOW.tzinfo)
    assert families["bitcoin_lstm_data_age_seconds"] == [
        ({"asset": "BTC-USD"}, age.total_seconds())
    ]
    bounds = {(s["horizon"], s["bound"]): v for s, v in families["bitcoin_lstm_forecast"]}
    assert bounds == {
        ("1", "point"): 101.0,
        ("1", "lower"): 90.0,
        ("1", "upper"): 111.0,
        ("7", "point"): 107.0,
        ("7", "lower"): 90.0,
        ("7", "upper"): 117.0,
    }
    errors = {s["model"]: v for s, v in families["bitcoin_lstm_live_abs_error"]}
    assert errors == {"lstm": 8.0, "naive": 10.0}
    coverage = families["bitcoin_lstm_live_interval_coverage"]
    assert coverage == [({"asset": "BTC-USD", "horizon": "1"}, pytest.approx(0.9))]
    thresholds = {s["name"]: v for s, v in families["bitcoin_lstm_alert_threshold"]}
    assert thresholds["live_error_margin"] == served.alert_live_error_margin
    assert thresholds["max_data_age_seconds"] == 2 * 86400


def test_health_gauges_survive_a_database_outage(sqlite_settings: Settings) -> None:
    from sqlalchemy import create_engine

    broken = create_engine("sqlite:////nonexistent/dir/db.sqlite")
    families = scrape(
        HealthCollector(sqlite_settings, broken, forecast=lambda r, n: {}, clock=lambda: NOW)
    )
    assert len(families["bitcoin_lstm_alert_threshold"]) == 7  # thresholds still answer
    assert families["bitcoin_lstm_last_price"] == []


def test_risk_gauges_come_from_the_risk_ledger_and_interval_scores(
    served: Settings, engine: Engine
) -> None:
    from btc_predictor.services.training import train
    from btc_predictor.shapes.requests import TrainRequest
    from tests.risk_rows import fill_risk_ledger

    # 260 scored next days: the newest 250 hold 25 VaR 95 and 5 VaR 99 violations.
    fill_risk_ledger(
        engine, 260, range_pct=4.0, actual=4.5, naive=5.5, violate_95_every=10, violate_99_every=50
    )
    fill_risk_ledger(engine, 20, range_pct=6.0, actual=5.0, naive=7.5, horizon=7)
    # A price version trained while a risk version is active: adaptive (σ̂ from it).
    train(served, engine, TrainRequest(model="naive-range", promote="always"), now=NOW)
    train(served, engine, TrainRequest(model="naive", promote="always"), now=NOW)

    families = scrape(
        HealthCollector(served, engine, forecast=lambda r, n: {"points": []}, clock=lambda: NOW)
    )
    errors = {
        (s["horizon"], s["model"]): v for s, v in families["bitcoin_lstm_live_range_abs_error"]
    }
    # The 30-day window (NOW is TODAY 06:00): 30 next-day entries and 20 seven-day ones.
    assert errors == {
        ("1", "har"): pytest.approx(0.5),
        ("1", "naive-range"): pytest.approx(1.0),
        ("7", "har"): pytest.approx(1.0),
        ("7", "naive-range"): pytest.approx(2.5),
    }
    scored = {s["horizon"]: v for s, v in families["bitcoin_lstm_live_range_scored_forecasts"]}
    assert scored == {"1": 30.0, "7": 20.0}
    ratios = {s["level"]: v for s, v in families["bitcoin_lstm_live_var_violation_ratio"]}
    assert ratios == {"95": pytest.approx(25 / 250), "99": pytest.approx(5 / 250)}
    days = {s["level"]: v for s, v in families["bitcoin_lstm_live_var_scored_days"]}
    assert days == {"95": 250.0, "99": 250.0}
    # The newest scored next day (TODAY, k = 0): a VaR 99 (and 95) violation.
    ranges = {s["series"]: v for s, v in families["bitcoin_lstm_live_range_pct"]}
    assert ranges == {"forecast": 4.0, "lower": 2.0, "upper": 8.0, "naive": 5.5, "realised": 4.5}
    losses = {s["series"]: v for s, v in families["bitcoin_lstm_live_var_loss_pct"]}
    assert losses == {"var_95": 3.0, "var_99": 5.0, "realised_loss": 6.0}
    levels = {s["horizon"]: v for s, v in families["bitcoin_lstm_interval_adaptive_level"]}
    # Replayed from the holdout's scores. h=1: near the nominal 90% (measured 0.901); h=7: the
    # synthetic closes rise every day, so naive's week-ahead forecasts miss on one side and
    # the correction chases them (measured 0.993).
    assert set(levels) == {"1", "7"}
    assert 0.85 < levels["1"] < 0.95 < levels["7"], levels
