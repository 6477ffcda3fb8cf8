"""Risk health: live range error vs naive range, VaR violations and their Kupiec band, the
adaptive level from stored scores, and the health schedule's risk retrain."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine

from btc_predictor.config import Settings
from btc_predictor.forecasting.metrics import kupiec_pof
from btc_predictor.jobs import queue as jobs
from btc_predictor.jobs.schedules import enqueue_due
from btc_predictor.services import risk_health
from btc_predictor.services.training import train
from btc_predictor.services.versions import active_version_id
from btc_predictor.shapes.requests import TrainRequest
from btc_predictor.storage.db import write_session
from btc_predictor.telemetry import RETRAINS_TRIGGERED_TOTAL
from tests.conftest import NOW
from tests.factories import TODAY, fill_ledger
from tests.risk_rows import fill_interval_scores, fill_risk_ledger, risk_scored


def test_live_range_is_hand_computed(settings: Settings, engine: Engine) -> None:
    with write_session(engine) as session:
        session.add_all(
            [
                risk_scored(TODAY, range_pct=4.0, actual=5.0, naive=8.0),  # |1|, naive |3|
                risk_scored(TODAY - timedelta(days=1), range_pct=3.0, actual=6.0, naive=6.5),
                # outside the 30-day window: ignored
                risk_scored(TODAY - timedelta(days=30), range_pct=1.0, actual=90.0, naive=1.0),
            ]
        )
    live = risk_health.live_range(engine, asset="BTC-USD", end=TODAY)
    assert live[1].n == 2
    assert live[1].mae_by_model == {"har": pytest.approx(2.0)}  # (1 + 3) / 2
    assert live[1].naive_mae == pytest.approx(1.75)  # (3 + 0.5) / 2


def test_the_kupiec_band_is_the_pof_acceptance_region() -> None:
    assert risk_health.kupiec_band(250, 95) == (7, 19)
    assert risk_health.kupiec_band(250, 99) == (1, 6)
    for level, (low, high) in ((95, (7, 19)), (99, (1, 6))):
        p = 1 - level / 100

        def pvalue(x: int, p: float = p) -> float:
            test = kupiec_pof(np.arange(250) < x, p)
            assert test is not None
            return test.pvalue

        assert pvalue(low) >= 0.05 and pvalue(high) >= 0.05
        assert pvalue(low - 1) < 0.05 and pvalue(high + 1) < 0.05


def test_adaptive_level_replays_what_serving_replays(served: Settings, engine: Engine) -> None:
    # Without a σ̂ source (no risk version when the price version was trained) serving is
    # static: no level.
    assert risk_health.adaptive_level(served, engine, "BTC-USD", 1) is None
    train(served, engine, TrainRequest(model="naive-range", promote="always"), now=NOW)
    train(served, engine, TrainRequest(model="naive", promote="always"), now=NOW)
    price = active_version_id(engine, "BTC-USD")
    assert price is not None
    steady = risk_health.adaptive_level(served, engine, "BTC-USD", 1)  # holdout scores only
    assert steady is not None and 0.85 < steady < 0.95
    # The newest 40 live scores (origins up to the last closed day) are all misses.
    fill_interval_scores(engine, [30.0] * 40, price_version=price)
    fill_interval_scores(engine, [0.0] * 600, price_version=price + 100)  # another version
    chasing = risk_health.adaptive_level(served, engine, "BTC-USD", 1)
    assert chasing is not None and chasing > 0.95
    static = served.model_copy(update={"intervals": "static"})
    assert risk_health.adaptive_level(static, engine, "BTC-USD", 1) is None


def test_risk_degradation_needs_every_one_of_the_last_days(
    settings: Settings, engine: Engine
) -> None:
    fill_risk_ledger(engine, 30, actual=4.5, naive=5.5)  # |0.5| vs naive |1.0|: healthy
    assert risk_health.risk_degradation(settings, engine, "BTC-USD", TODAY) is None
    fill_risk_ledger(engine, 2, range_pct=40.0, version=3)  # two awful days
    assert risk_health.risk_degradation(settings, engine, "BTC-USD", TODAY) is None
    fill_risk_ledger(engine, 1, range_pct=40.0, end=TODAY - timedelta(days=2), version=4)
    reason = risk_health.risk_degradation(settings, engine, "BTC-USD", TODAY)
    assert reason is not None and "worse than naive-range" in reason and "for 3 days" in reason


def health_retrains(engine: Engine, settings: Settings, now: datetime) -> list[dict[str, object]]:
    """Run due schedules at ``now``; the health-triggered retrain jobs they queued."""
    queued = [jobs.get_job(engine, j) for j in enqueue_due(engine, settings, now=now)]
    return [j for j in queued if j["kind"] == "retrain" and j["params"].get("trigger") == "health"]


@pytest.fixture
def risk_served(served: Settings, engine: Engine) -> Settings:
    """``served`` plus an active naive-range risk model."""
    train(served, engine, TrainRequest(model="naive-range", promote="always"), now=NOW)
    return served


def test_a_degraded_risk_model_is_retrained_once_per_cooldown(
    risk_served: Settings, engine: Engine
) -> None:
    fill_ledger(engine, 30, error=8.0)  # the price model is fine
    fill_risk_ledger(engine, 30, range_pct=9.0, actual=4.5, naive=5.5)  # 4.5x naive's error
    counted = RETRAINS_TRIGGERED_TOTAL.labels("BTC-USD", "range_error")
    before = counted._value.get()
    first = health_retrains(engine, risk_served, NOW)
    assert len(first) == 1
    assert counted._value.get() == before + 1
    params = first[0]["params"]
    assert params["model"] == "naive-range" and "range MAE" in str(params["reason"])
    jobs.cancel_job(engine, str(first[0]["id"]), now=NOW)
    for hours in (1, 24, 24 * 6):  # still degraded, but within the 7-day cooldown
        assert health_retrains(engine, risk_served, NOW + timedelta(hours=hours, minutes=1)) == []
    later = NOW + risk_served.retrain_cooldown + timedelta(hours=1)
    fill_ledger(engine, 30, error=8.0, end=later.date(), version=5)
    fill_risk_ledger(engine, 30, range_pct=9.0, end=later.date(), version=6)
    again = health_retrains(engine, risk_served, later)
    assert [j["params"]["model"] for j in again] == ["naive-range"]


def test_a_risk_retrain_does_not_hold_back_a_price_retrain(
    risk_served: Settings, engine: Engine
) -> None:
    fill_risk_ledger(engine, 30, range_pct=9.0)
    assert len(health_retrains(engine, risk_served, NOW)) == 1  # the risk model's
    later = NOW + timedelta(days=2)
    fill_ledger(engine, 30, error=20.0, end=later.date())  # now the price model degrades
    retrains = health_retrains(engine, risk_served, later)
    assert len(retrains) == 1 and "model" not in retrains[0]["params"]  # both defaults


def test_a_healthy_risk_model_or_none_active_is_not_retrained(
    served: Settings, engine: Engine
) -> None:
    fill_risk_ledger(engine, 30, range_pct=9.0)
    assert health_retrains(engine, served, NOW) == []  # no active risk model
    train(served, engine, TrainRequest(model="naive-range", promote="always"), now=NOW)
    later = NOW + timedelta(days=40)
    fill_risk_ledger(engine, 30, end=later.date(), version=7)  # healthy month
    assert health_retrains(engine, served, later) == []
