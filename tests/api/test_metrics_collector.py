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
