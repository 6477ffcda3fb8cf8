"""The forecast-health rule: live error vs naive, coverage band, degradation, and the hourly
health schedule that queues a retrain from it."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import Engine

from btc_predictor.config import Settings
from btc_predictor.errors import DataSourceError
from btc_predictor.jobs import queue as jobs
from btc_predictor.jobs.schedules import enqueue_due
from btc_predictor.services import health
from btc_predictor.services.health import Live, degradation, summarize, unhealthy
from btc_predictor.services.ingest import ingest
from btc_predictor.shapes.requests import IngestRequest
from btc_predictor.storage.ledger import WindowStats
from tests.conftest import NOW
from tests.factories import TODAY, FakeSource, fill_ledger


def test_summarize_weights_models_by_count() -> None:
    rows = [
        WindowStats(horizon=1, model="lstm", n=3, mae=9.0, naive_mae=10.0, coverage=1.0),
        WindowStats(horizon=1, model="gru", n=1, mae=20.0, naive_mae=14.0, coverage=0.0),
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
    fill_ledger(
        engine, 30, error=9.0, miss_every=2, end=(NOW + timedelta(days=40)).date(), version=2
    )
    retrains = health_retrains(engine, served, NOW + timedelta(days=40))
    assert len(retrains) == 1 and "coverage" in retrains[0]["params"]["reason"]


# --- the /health rule (DESIGN §7, issue 12) ---------------------------------------------------


def _record(settings: Settings, engine: Engine) -> health.DatabaseRecord:
    return health.read_database(settings, engine)


def test_the_rule_is_healthy_only_without_reasons_and_unhealthy_only_without_a_database(
    served: Settings, engine: Engine
) -> None:
    record = _record(served, engine)
    parts = {
        "database": health.database_component(record),
        "model_store": health.model_component(record, lambda _: None),
        "data": health.data_component(served, record, NOW),
    }
    assert health.verdict(True, parts) == ("healthy", [])
    worker = health.Component({"status": "dead"}, (health.Reason("worker", None, "dead"),))
    status, reasons = health.verdict(True, {**parts, "worker": worker})
    assert status == "degraded" and reasons == [health.Reason("worker", None, "dead")]
    down = {"database": health.database_component(None)}
    status, reasons = health.verdict(False, down)
    assert status == "unhealthy" and [r.component for r in reasons] == ["database"]
    assert "127.0.0.1" not in reasons[0].detail


def test_a_damaged_or_missing_active_model_is_a_reason(served: Settings, engine: Engine) -> None:
    record = _record(served, engine)
    version = record.assets[0].active_version
    assert version is not None
    damaged = health.model_component(record, {version: "model.onnx is damaged"}.get)
    [reason] = damaged.reasons
    assert (reason.component, reason.asset) == ("model_store", "BTC-USD")
    assert f"active version {version}" in reason.detail and "damaged" in reason.detail
    untrained = Settings(**{**served.model_dump(), "assets": ["BTC-USD", "ETH-USD"]})
    [missing] = health.model_component(_record(untrained, engine), lambda _: None).reasons
    assert missing.asset == "ETH-USD" and "train --asset ETH-USD" in missing.detail


def test_stale_data_and_a_failed_refresh_are_reasons(served: Settings, engine: Engine) -> None:
    year_later = NOW + timedelta(days=365)
    [stale] = health.data_component(served, _record(served, engine), year_later).reasons
    assert stale.component == "data" and "stale" in stale.detail and "2025-11-30" in stale.detail
    failing = FakeSource("yahoo", fail="HTTP 503 from query1.finance.yahoo.com")
    with pytest.raises(DataSourceError):
        ingest(
            served,
            engine,
            IngestRequest(asset="BTC-USD", since=date(2025, 11, 20)),
            now=NOW,
            source_factory=lambda _: failing,
        )
    data = health.data_component(served, _record(served, engine), NOW)
    [failed] = data.reasons
    assert failed.component == "data" and "last refresh failed" in failed.detail
    assert "finance.yahoo.com" not in failed.detail  # source names only, never hosts
    assert data.view["BTC-USD"]["last_refresh"]["status"] == "failed"
