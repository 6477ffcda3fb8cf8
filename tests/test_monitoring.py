"""Forecast health: the degradation rule, the health schedule's retrains, the scrape gauges."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from btc_predictor import jobs
from btc_predictor.config import Settings
from btc_predictor.monitoring import HealthCollector, Live, degradation, summarize, unhealthy
from btc_predictor.schedules import enqueue_due
from btc_predictor.services import IngestRequest, ingest
from btc_predictor.services.forecast import ForecastRequest
from btc_predictor.services.training import TrainRequest, train
from btc_predictor.storage.db import write_session
from btc_predictor.storage.tables import PredictionRow
from btc_predictor.telemetry import HEALTH_METRICS
from tests.conftest import NOW
from tests.factories import FakeSource, make_candles

TODAY = NOW.date()


def scored(day: date, *, error: float, naive_error: float, inside: bool, version: int,
           horizon: int = 1, model: str = "lstm") -> PredictionRow:
    """A ledger entry for ``day`` already scored against an actual close of 100."""
    made = datetime.combine(day - timedelta(days=horizon), datetime.min.time(), NOW.tzinfo)
    return PredictionRow(
        asset="BTC-USD", model=model, model_version=version, as_of=made, horizon=horizon,
        target_date=day, forecast=100 + error, lower=90.0, upper=110.0, level=90,
        naive=100 + naive_error, created_at=made, actual=100.0, abs_error=error,
        naive_abs_error=naive_error, inside=inside, scored_at=made + timedelta(days=horizon),
    )


def fill_ledger(engine: Engine, days: int, *, error: float, naive_error: float = 10.0,
                miss_every: int = 10, end: date = TODAY, version: int = 1) -> None:
    """``days`` consecutive scored next-day forecasts ending at ``end`` (by one version);
    every ``miss_every``-th actual falls outside the interval (10: 90% coverage)."""
    with write_session(engine) as session:
        session.add_all(
            scored(end - timedelta(days=k), error=error, naive_error=naive_error,
                   inside=k % miss_every != 0, version=version)
            for k in range(days)
        )


def test_summarize_weights_models_by_count() -> None:
    rows = [
        {"horizon": 1, "model": "lstm", "n": 3, "mae": 9.0, "naive_mae": 10.0, "coverage": 1.0},
        {"horizon": 1, "model": "gru", "n": 1, "mae": 20.0, "naive_mae": 14.0, "coverage": 0.0},
    ]
    live = summarize(rows)[1]
    assert live.n == 4 and live.mae_by_model == {"lstm": 9.0, "gru": 20.0}
    assert live.naive_mae == pytest.approx(11.0) and live.coverage == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("mae", "coverage", "n", "verdict"),
    [
        (10.9, 0.9, 30, None),  # within the 10% margin
        (11.1, 0.9, 30, "worse than naive"),
        (5.0, 0.5, 30, "coverage 50.0% is outside 80%..97%"),
        (5.0, 0.99, 30, "outside"),
        (50.0, 0.0, 9, None),  # too few scored forecasts to judge
    ],
)
def test_unhealthy_applies_the_margin_band_and_minimum(
    mae: float, coverage: float, n: int, verdict: str | None
) -> None:
    reason = unhealthy(Live(n, {"lstm": mae}, 10.0, coverage), Settings())
    assert (reason is None) if verdict is None else (reason is not None and verdict in reason)


def test_degradation_needs_every_one_of_the_last_days(settings: Settings, engine: Engine) -> None:
    fill_ledger(engine, 30, error=8.0)  # a healthy month: beats naive (10), 90% coverage
    assert degradation(settings, engine, "BTC-USD", TODAY) is None
    fill_ledger(engine, 2, error=400.0, version=2)  # two awful days lift the 30-day MAE
    assert degradation(settings, engine, "BTC-USD", TODAY) is None  # day -2 was still fine
    fill_ledger(engine, 1, error=400.0, end=TODAY - timedelta(days=2), version=3)
    reason = degradation(settings, engine, "BTC-USD", TODAY)
    assert reason is not None and "worse than naive" in reason and "for 3 days" in reason


@pytest.fixture
def served(settings: Settings, engine: Engine) -> Settings:
    """Data and an active model, so a retrain job can be queued."""
    source = FakeSource("yahoo", make_candles(date(2024, 1, 1), 700))
    ingest(settings, engine, IngestRequest("BTC-USD"), now=NOW, source_factory=lambda _: source)
    train(settings, engine, TrainRequest(model="naive", promote="always"), now=NOW)
    return settings


def health_retrains(engine: Engine, settings: Settings, now: datetime) -> list[dict[str, object]]:
    """Run due schedules at ``now``; the health-triggered retrain jobs they queued."""
    queued = [jobs.get_job(engine, j) for j in enqueue_due(engine, settings, now=now)]
    return [j for j in queued if j["kind"] == "retrain" and j["params"].get("trigger") == "health"]


def cancel(engine: Engine, job_id: object) -> None:
    """End a queued job (its cooldown still counts)."""
    jobs.cancel_job(engine, str(job_id), now=NOW)


def test_health_schedule_retrains_once_per_cooldown(served: Settings, engine: Engine) -> None:
    fill_ledger(engine, 30, error=20.0)  # twice naive's error for a month
    first = health_retrains(engine, served, NOW)
    assert len(first) == 1
    params = first[0]["params"]
    assert params["asset"] == "BTC-USD" and "worse than naive" in params["reason"]
    cancel(engine, first[0]["id"])
    # Still degraded: the hourly check runs again but the cooldown (7 days) holds it back.
    for hours in (1, 24, 24 * 6):
        assert health_retrains(engine, served, NOW + timedelta(hours=hours, minutes=1)) == []
    later = NOW + served.retrain_cooldown + timedelta(hours=1)
    fill_ledger(engine, 30, error=20.0, end=later.date(), version=2)
    again = health_retrains(engine, served, later)
    assert len(again) == 1 and again[0]["id"] != first[0]["id"]


def test_health_schedule_is_silent_for_a_fine_model(served: Settings, engine: Engine) -> None:
    fill_ledger(engine, 30, error=9.0)
    assert health_retrains(engine, served, NOW) == []
    # Bad coverage alone also counts as degraded.
    fill_ledger(engine, 30, error=9.0, miss_every=2, end=(NOW + timedelta(days=40)).date(),
                version=2)
    retrains = health_retrains(engine, served, NOW + timedelta(days=40))
    assert len(retrains) == 1 and "coverage" in retrains[0]["params"]["reason"]


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
    age = (NOW - datetime.combine(last_day + timedelta(days=1), datetime.min.time(), NOW.tzinfo))
    assert families["bitcoin_lstm_data_age_seconds"] == [({"asset": "BTC-USD"}, age.total_seconds())]
    bounds = {(s["horizon"], s["bound"]): v for s, v in families["bitcoin_lstm_forecast"]}
    assert bounds == {("1", "point"): 101.0, ("1", "lower"): 90.0, ("1", "upper"): 111.0,
                      ("7", "point"): 107.0, ("7", "lower"): 90.0, ("7", "upper"): 117.0}
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
    families = scrape(HealthCollector(sqlite_settings, broken, forecast=lambda r, n: {},
                                      clock=lambda: NOW))
    assert len(families["bitcoin_lstm_alert_threshold"]) == 7  # thresholds still answer
    assert families["bitcoin_lstm_last_price"] == []
