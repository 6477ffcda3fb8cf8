"""Schedules with a fake clock: daily refresh, weekly retrain, first-start bootstrap, restarts."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine

from btc_predictor.config import Settings
from btc_predictor.errors import InvalidInputError
from btc_predictor.jobs import queue as jobs
from btc_predictor.jobs.schedules import enqueue_due, list_schedules, next_run
from btc_predictor.jobs.worker import Worker
from btc_predictor.services.ingest import ingest
from btc_predictor.services.training import train
from btc_predictor.shapes.requests import IngestRequest, TrainRequest
from tests.conftest import NOW
from tests.factories import FakeSource, make_candles

DAY = timedelta(days=1)
TOMORROW_REFRESH = datetime(2025, 12, 2, 0, 5, tzinfo=UTC)  # NOW is 2025-12-01 06:00 UTC
SCHEDULE_KEYS = {"name", "description", "every", "next_run_at", "last_run_at", "last_job_id"}


def listed(engine: Engine, settings: Settings, *, now: datetime) -> list[dict[str, Any]]:
    """``GET /api/v1/schedules``'s JSON."""
    return [s.model_dump(mode="json") for s in list_schedules(engine, settings, now=now)]


def fake_yahoo() -> FakeSource:
    """426 closed days up to 2025-11-30 (enough to train)."""
    return FakeSource("yahoo", make_candles(date(2024, 10, 1), 426))


@pytest.fixture
def trained(settings: Settings, engine: Engine) -> Engine:
    """BTC-USD has data and active (naive, naive-range) models, so bootstrap has nothing to do."""
    price_only(settings, engine)
    train(settings, engine, TrainRequest(model="naive-range", promote="always"), now=NOW)
    return engine


def price_only(settings: Settings, engine: Engine) -> Engine:
    """BTC-USD has data and an active price model (naive) but no risk model."""
    source = fake_yahoo()
    ingest(
        settings,
        engine,
        IngestRequest(asset="BTC-USD"),
        now=NOW,
        source_factory=lambda spec: source,
    )
    train(settings, engine, TrainRequest(model="naive", promote="always"), now=NOW)
    return engine


def test_bootstrap_trains_the_risk_default_where_only_a_price_model_is_active(
    settings: Settings, engine: Engine
) -> None:
    price_only(settings, engine)
    started = enqueue_due(engine, settings, now=NOW, starting=True)
    assert kinds(engine, started) == [
        ("train", {"asset": "BTC-USD", "model": "har"}),
        ("ingest", {"asset": "BTC-USD"}),
    ]


def kinds(engine: Engine, job_ids: list[str]) -> list[tuple[str, dict[str, Any]]]:
    return [(job["kind"], job["params"]) for job in (jobs.get_job(engine, i) for i in job_ids)]


def settle(engine: Engine) -> None:
    """Cancel every queued job, as if a worker had run them."""
    for job in jobs.list_jobs(engine, status="queued"):
        jobs.cancel_job(engine, job["id"], now=NOW)


def test_next_run_rules(sqlite_settings: Settings) -> None:
    assert next_run("refresh", NOW, sqlite_settings) == TOMORROW_REFRESH
    assert next_run(
        "refresh", datetime(2025, 12, 1, 0, 3, tzinfo=UTC), sqlite_settings
    ) == datetime(2025, 12, 1, 0, 5, tzinfo=UTC)
    assert (
        next_run("refresh", datetime(2025, 12, 1, 0, 5, tzinfo=UTC), sqlite_settings)
        == TOMORROW_REFRESH
    )
    tokyo = timezone(timedelta(hours=9))
    assert next_run(
        "refresh", datetime(2025, 12, 1, 8, 0, tzinfo=tokyo), sqlite_settings
    ) == datetime(2025, 12, 1, 0, 5, tzinfo=UTC)
    hourly = sqlite_settings.model_copy(
        update={"refresh_delay": timedelta(hours=2), "retrain_every": timedelta(days=3)}
    )
    assert next_run("refresh", NOW, hourly) == datetime(2025, 12, 2, 2, 0, tzinfo=UTC)
    assert next_run("retrain", NOW, sqlite_settings) == NOW + 7 * DAY
    assert next_run("retrain", NOW, hourly) == NOW + 3 * DAY
    assert next_run("bootstrap", NOW, sqlite_settings) is None  # only at the next worker start
    with pytest.raises(InvalidInputError, match="unknown schedule `cleanup`"):
        next_run("cleanup", NOW, sqlite_settings)


def test_first_start_on_an_empty_install_ingests_then_trains(
    settings: Settings, engine: Engine
) -> None:
    source = fake_yahoo()
    worker = Worker(settings, engine, clock=lambda: NOW, source_factory=lambda spec: source)
    assert worker.tick()  # enqueues the bootstrap ingest and runs it
    by_kind = {job["kind"]: job for job in jobs.list_jobs(engine)}
    assert by_kind.keys() == {"ingest", "train"}
    ingest_job, train_job = by_kind["ingest"], by_kind["train"]
    assert (ingest_job["kind"], ingest_job["status"]) == ("ingest", "succeeded")
    assert ingest_job["params"] == {"asset": "BTC-USD", "bootstrap": True, "then_train": True}
    assert ingest_job["result"]["inserted"] == 426
    # Training is queued by the finished ingest, so it can never start before its data.
    assert (train_job["kind"], train_job["status"]) == ("train", "queued")
    # No model named: the job trains the default risk model, then the default price model.
    assert train_job["params"] == {"asset": "BTC-USD", "promote": "auto"}
    assert ingest_job["result"]["follow_up_job_id"] == train_job["id"]
    # The refresh due on first start was covered by the bootstrap ingest (same asset slot).
    assert enqueue_due(engine, settings, now=NOW + timedelta(hours=1), starting=True) == []


def test_bootstrap_trains_directly_when_data_exists(settings: Settings, engine: Engine) -> None:
    source = fake_yahoo()
    ingest(
        settings,
        engine,
        IngestRequest(asset="BTC-USD"),
        now=NOW,
        source_factory=lambda spec: source,
    )
    started = enqueue_due(engine, settings, now=NOW, starting=True)
    assert kinds(engine, started) == [
        ("train", {"asset": "BTC-USD"}),
        ("ingest", {"asset": "BTC-USD"}),
    ]


def test_restart_does_not_rerun_what_already_ran(settings: Settings, trained: Engine) -> None:
    first = enqueue_due(trained, settings, now=NOW, starting=True)
    assert kinds(trained, first) == [("ingest", {"asset": "BTC-USD"})]  # refresh once on start
    settle(trained)
    for restart in (NOW + timedelta(minutes=1), NOW + timedelta(hours=17)):
        assert enqueue_due(trained, settings, now=restart, starting=True) == []


def test_refresh_runs_after_each_close_and_not_twice_a_day(
    settings: Settings, trained: Engine
) -> None:
    enqueue_due(trained, settings, now=NOW, starting=True)
    settle(trained)
    assert enqueue_due(trained, settings, now=TOMORROW_REFRESH - timedelta(seconds=1)) == []
    refreshed = enqueue_due(trained, settings, now=TOMORROW_REFRESH)
    assert kinds(trained, refreshed) == [("ingest", {"asset": "BTC-USD"})]
    settle(trained)
    assert enqueue_due(trained, settings, now=TOMORROW_REFRESH + timedelta(hours=12)) == []
    # A worker down for three days catches up once, not three times.
    assert (
        len(
            enqueue_due(
                trained,
                settings,
                now=TOMORROW_REFRESH + 3 * DAY + timedelta(hours=4),
                starting=True,
            )
        )
        == 1
    )


def test_a_pending_equivalent_job_counts_as_the_run(settings: Settings, trained: Engine) -> None:
    manual = jobs.submit(trained, settings, kind="ingest", params={"asset": "BTC-USD"}, now=NOW)
    assert enqueue_due(trained, settings, now=NOW, starting=True) == []
    assert jobs.get_job(trained, manual["id"])["status"] == "queued"
    assert enqueue_due(trained, settings, now=NOW + timedelta(hours=1)) == []  # ran, not retried


def test_retrain_runs_every_period_through_the_promotion_rule(
    settings: Settings, trained: Engine
) -> None:
    enqueue_due(trained, settings, now=NOW, starting=True)
    settle(trained)
    week = settings.retrain_every
    assert not [
        j
        for j in enqueue_due(trained, settings, now=NOW + week - timedelta(seconds=1))
        if jobs.get_job(trained, j)["kind"] == "retrain"
    ]
    retrained = [
        j
        for j in enqueue_due(trained, settings, now=NOW + week)
        if jobs.get_job(trained, j)["kind"] == "retrain"
    ]
    assert kinds(trained, retrained) == [
        (
            "retrain",
            {
                "asset": "BTC-USD",
                "reason": "scheduled retrain (every 7d)",
                "trigger": "schedule",
            },
        )
    ]
    assert (
        jobs.get_job(trained, retrained[0])["params"].get("promote") is None
    )  # retrain = promote auto
    settle(trained)
    assert [
        s["next_run_at"] for s in listed(trained, settings, now=NOW) if s["name"] == "retrain"
    ] == [(NOW + 2 * week).isoformat()]


def test_two_workers_ticking_at_once_enqueue_once(settings: Settings, trained: Engine) -> None:
    barrier = threading.Barrier(2)
    queued: list[str] = []

    def tick() -> None:
        barrier.wait()
        queued.extend(enqueue_due(trained, settings, now=NOW, starting=True))

    threads = [threading.Thread(target=tick) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert kinds(trained, queued) == [("ingest", {"asset": "BTC-USD"})]


def test_list_schedules_before_and_after_a_run(settings: Settings, engine: Engine) -> None:
    planned = listed(engine, settings, now=NOW)
    assert [s["name"] for s in planned] == ["bootstrap", "refresh", "health", "retrain"]
    assert all(
        s.keys() == SCHEDULE_KEYS and s["last_run_at"] is None and s["last_job_id"] is None
        for s in planned
    )
    assert [s["every"] for s in planned] == [
        "at worker start",
        "daily at 00:05 UTC",
        "every 1h",
        "every 7d",
    ]
    assert [s["next_run_at"] for s in planned] == [
        NOW.isoformat(),
        NOW.isoformat(),
        NOW.isoformat(),
        (NOW + 7 * DAY).isoformat(),
    ]
    queued = enqueue_due(engine, settings, now=NOW, starting=True)
    after = {s["name"]: s for s in listed(engine, settings, now=NOW + timedelta(hours=1))}
    assert (
        after["bootstrap"]["last_job_id"] == queued[-1]
        and after["bootstrap"]["next_run_at"] is None
    )
    assert after["refresh"]["last_run_at"] == NOW.isoformat()
    assert after["refresh"]["next_run_at"] == TOMORROW_REFRESH.isoformat()
    assert after["refresh"]["last_job_id"] is None  # skipped: the bootstrap ingest covers it
    assert after["retrain"]["last_run_at"] is None


def test_a_cadence_change_applies_at_the_next_worker_start(
    settings: Settings, trained: Engine
) -> None:
    enqueue_due(trained, settings, now=NOW, starting=True)
    settle(trained)

    def planned(config: Settings, at: datetime) -> str | None:
        return {s["name"]: s["next_run_at"] for s in listed(trained, config, now=at)}["retrain"]

    assert planned(settings, NOW) == (NOW + 7 * DAY).isoformat()
    daily = settings.model_copy(update={"retrain_every": DAY})
    restart = NOW + timedelta(hours=2)
    enqueue_due(trained, daily, now=restart, starting=True)  # never ran: brought closer
    assert planned(daily, restart) == (restart + DAY).isoformat()
    retrained = [
        j
        for j in enqueue_due(trained, daily, now=restart + DAY)
        if jobs.get_job(trained, j)["kind"] == "retrain"
    ]
    assert len(retrained) == 1
    settle(trained)
    weekly_again = settings.model_copy(update={"retrain_every": 7 * DAY})
    later = restart + DAY + timedelta(hours=1)
    enqueue_due(trained, weekly_again, now=later, starting=True)  # ran: last run + new cadence
    assert planned(weekly_again, later) == (restart + 8 * DAY).isoformat()
    # A refresh-delay change moves the next refresh to the new time of day.
    late = settings.model_copy(update={"refresh_delay": timedelta(hours=3)})
    enqueue_due(trained, late, now=later, starting=True)
    refresh = {s["name"]: s["next_run_at"] for s in listed(trained, late, now=later)}["refresh"]
    assert refresh.endswith("T03:00:00+00:00")
