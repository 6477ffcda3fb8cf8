"""The serving state. Its cache: one model run per (asset, version, data) answers every
horizon, level and model exactly; identical misses share one run; the ledger never slows a
cached answer; other processes' writes are seen within the poll interval, with no stale answer
after. Its background logging (one line per change of state during an outage), and the load
of each active version, where a damaged one is found."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, update
from sqlalchemy.exc import OperationalError

from btc_predictor.api.app import create_app
from btc_predictor.api.state import Outage, ServingState
from btc_predictor.config import Settings
from btc_predictor.errors import AssetNotFoundError, UnavailableError
from btc_predictor.forecasting.intervals import intervals_per_horizon
from btc_predictor.forecasting.onnx_runtime import OnnxModel
from btc_predictor.forecasting.paths import ForecastPath
from btc_predictor.services import ledger
from btc_predictor.services.forecast import (
    load_version,
    locate,
    predict,
    recent_closes,
    run_model,
)
from btc_predictor.services.ingest import data_status, ingest
from btc_predictor.services.training import train
from btc_predictor.shapes.requests import ForecastRequest, IngestRequest, TrainRequest
from btc_predictor.storage import model_store as store
from btc_predictor.storage.db import create_db_engine, read_session, write_session
from btc_predictor.storage.tables import ModelArtifactRow
from tests.api.conftest import API_KEY, AUTH, client_for
from tests.conftest import NOW
from tests.factories import FakeSource, make_candles

MODELS = [None, "drift", "naive", "lstm"]  # None: the active version (drift)


@pytest.fixture
def kinds(installed: Settings) -> Iterator[tuple[Settings, Engine]]:
    """The installed drift model plus a naive and an lstm version (not promoted)."""
    engine = create_db_engine(installed)
    for model in ("naive", "lstm"):
        train(installed, engine, TrainRequest(model=model, promote="never"), now=NOW)
    yield installed, engine
    engine.dispose()


@pytest.fixture
def model_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every ONNX model run, as the id of the thread that made it."""
    runs: list[int] = []
    original = OnnxModel.run

    def counted(self: OnnxModel, closes: np.ndarray) -> ForecastPath:
        runs.append(threading.get_ident())
        return original(self, closes)

    monkeypatch.setattr(OnnxModel, "run", counted)
    return runs


def fresh_path(settings: Settings, engine: Engine, model: str | None) -> tuple[np.ndarray, Any]:
    """The version's raw graph output on the stored data, loaded anew (nothing shared)."""
    with read_session(engine) as session:
        version = load_version(
            session,
            store.pick_version(session=session, asset="BTC-USD", family=store.PRICE, model=model),
        )
        candles = recent_closes(session, "BTC-USD", version.runner.context_length)
    window = np.array([[c.close for c in candles]], dtype=np.float64)
    output = version.runner.session.run(["forecast"], {"closes": window})[0][0]
    return np.asarray(output, dtype=np.float64), version.runner.residuals


def test_every_cached_answer_equals_a_fresh_computation(
    kinds: tuple[Settings, Engine], model_runs: list[int]
) -> None:
    settings, engine = kinds
    serving = ServingState(settings, engine)
    serving.refresh()
    for model in MODELS:
        values, residuals = fresh_path(settings, engine, model)
        for level in range(50, 100):
            for horizon in range(1, 31):
                request = ForecastRequest(horizon=horizon, level=level, model=model)
                points = serving.forecast(request, NOW)["points"]
                lower, upper = intervals_per_horizon(values[:horizon], residuals, level)
                assert [p["value"] for p in points] == values[:horizon].tolist()
                assert [p["lower"] for p in points] == lower.tolist(), (model, horizon, level)
                assert [p["upper"] for p in points] == upper.tolist(), (model, horizon, level)
    assert len(model_runs) == 3 == serving.model_runs  # one per version: drift, naive, lstm
    # The whole object equals what `predict --json` computes from scratch.
    for model, horizon, level in [(None, 1, 90), ("naive", 30, 50), ("lstm", 17, 99)]:
        request = ForecastRequest(horizon=horizon, level=level, model=model)
        expected = predict(settings, engine, request, now=NOW).model_dump(mode="json")
        assert serving.forecast(request, NOW) == expected


def test_every_cached_adaptive_answer_equals_a_fresh_computation(installed: Settings) -> None:
    """With a risk version, answers are adaptive; each (horizon, level) cached answer equals the
    same answer derived from a run computed anew (its own model run, scores read and replay)."""
    engine = create_db_engine(installed)
    train(installed, engine, TrainRequest(model="har", promote="always"), now=NOW)
    train(installed, engine, TrainRequest(model="naive", promote="never"), now=NOW)
    serving = ServingState(installed, engine)
    serving.refresh()
    fresh = run_model("BTC-USD", locate(installed, engine, "BTC-USD", "naive", loaded={}))
    assert fresh.interval_method == "adaptive"
    for level in range(50, 100):
        for horizon in (1, 2, 7, 17, 30):
            request = ForecastRequest(horizon=horizon, level=level, model="naive")
            expected = fresh.forecast(installed, horizon, level, now=NOW).model_dump(mode="json")
            assert serving.forecast(request, NOW) == expected, (horizon, level)
    assert serving.model_runs == 1
    request = ForecastRequest(horizon=30, level=90, model="naive")
    assert serving.forecast(request, NOW) == predict(
        installed, engine, request, now=NOW
    ).model_dump(mode="json")
    # the drift version was trained before any risk version: static, and it says so
    drift = serving.forecast(ForecastRequest(horizon=3, level=90), NOW)
    assert drift["interval_method"] == "static" and drift["interval_note"]
    engine.dispose()


def test_recorded_interval_scores_move_the_cached_answer(
    installed: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ingest scores the adaptive state after the candles commit: a run computed in between
    is replaced once the scores land (they move the data mark), never served on."""
    from btc_predictor.services import ingest as ingest_service
    from btc_predictor.services import intervals

    engine = create_db_engine(installed)
    train(installed, engine, TrainRequest(model="har", promote="always"), now=NOW)
    train(installed, engine, TrainRequest(model="drift", promote="always"), now=NOW)
    record = intervals.record_and_score
    monkeypatch.setattr(ingest_service.intervals, "record_and_score", lambda *a, **k: {})
    later = NOW + timedelta(days=1)
    source = FakeSource("yahoo", make_candles(date(2025, 11, 30), 1, price=91500.0))
    request = IngestRequest(asset="BTC-USD")
    ingest(installed, engine, request, now=later, source_factory=lambda _: source)
    serving = ServingState(installed, engine)
    serving.refresh()
    ask = ForecastRequest(horizon=1, level=90)
    before = serving.forecast(ask, later)  # the candles are in, the scores not yet
    assert before["interval_method"] == "adaptive"
    assert record(engine, "BTC-USD", now=later)["recorded"] > 0
    serving.refresh()
    after = serving.forecast(ask, later)
    assert after == predict(installed, engine, ask, now=later).model_dump(mode="json")
    assert after["points"][0]["upper"] != before["points"][0]["upper"]
    engine.dispose()


def test_one_lru_bounds_loaded_versions_with_their_runs(
    kinds: tuple[Settings, Engine], model_runs: list[int]
) -> None:
    settings, engine = kinds
    serving = ServingState(settings.model_copy(update={"max_loaded_models": 2}), engine)
    serving.refresh()
    ids = {m: serving.forecast(ForecastRequest(model=m), NOW)["model_version"] for m in MODELS[1:]}
    assert serving.held() == [ids["naive"], ids["lstm"]]  # drift, least recently used, went
    serving.forecast(ForecastRequest(model="naive", level=51), NOW)  # a hit refreshes naive
    assert serving.held() == [ids["lstm"], ids["naive"]] and len(model_runs) == 3
    again = serving.forecast(ForecastRequest(model="drift", horizon=9), NOW)
    assert again["model_version"] == ids["drift"] and len(model_runs) == 4
    assert serving.held() == [ids["naive"], ids["drift"]]


def test_versions_no_request_resolves_to_are_let_go(installed: Settings) -> None:
    engine = create_db_engine(installed)
    serving = ServingState(installed, engine)
    serving.refresh()
    first = train(installed, engine, TrainRequest(model="drift", promote="never"), now=NOW)
    serving.refresh()
    active = serving.forecast(ForecastRequest(), NOW)["model_version"]
    assert serving.forecast(ForecastRequest(model="drift"), NOW)["model_version"] == first.version
    assert serving.held() == [active, first.version]
    second = train(installed, engine, TrainRequest(model="drift", promote="never"), now=NOW)
    serving.refresh()  # `first` is neither active nor the newest drift any more
    assert serving.held() == [active]
    assert serving.forecast(ForecastRequest(model="drift"), NOW)["model_version"] == second.version
    engine.dispose()


async def asgi_get(app: Any, path: str) -> tuple[int, bytes]:
    """One GET through the app's ASGI interface: status and body."""
    raw, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": raw,
        "raw_path": raw.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_identical_concurrent_misses_run_the_model_once(
    installed: Settings, monkeypatch: pytest.MonkeyPatch, model_runs: list[int]
) -> None:
    hold = OnnxModel.run

    def slow(self: OnnxModel, closes: np.ndarray) -> ForecastPath:
        time.sleep(0.3)  # every request arrives while the one run is still going
        return hold(self, closes)

    monkeypatch.setattr(OnnxModel, "run", slow)
    app = create_app(installed, clock=lambda: NOW)

    async def hundred() -> tuple[int, list[tuple[int, bytes]], int]:
        async with app.router.lifespan_context(app):
            loop_thread = threading.get_ident()
            ticks = 0

            async def tick() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            ticker = asyncio.create_task(tick())
            url = "/api/v1/forecast?horizon=7&level=80"
            answers = await asyncio.gather(*(asgi_get(app, url) for _ in range(100)))
            ticker.cancel()
            return loop_thread, answers, ticks

    loop_thread, answers, ticks = asyncio.run(hundred())
    assert len(model_runs) == 1 and app.state.serving.model_runs == 1
    assert model_runs[0] != loop_thread  # computed in a worker thread ...
    assert ticks >= 5  # ... while the event loop kept running (0.3 s of model run)
    assert {status for status, _ in answers} == {200}
    bodies = [json.loads(body) for _, body in answers]
    assert all(b == bodies[0] for b in bodies) and len(bodies[0]["points"]) == 7


def test_a_cached_answer_never_waits_for_the_ledger(
    installed: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_db_engine(installed)
    serving = ServingState(installed, engine)
    serving.refresh()
    recorded = lambda: sorted(e.horizon for e in ledger.list_predictions(engine, asset="BTC-USD"))  # noqa: E731
    gate, write = threading.Event(), ledger.record_rows

    def held(engine: Engine, rows: list[dict[str, Any]]) -> int:
        gate.wait(10)
        return write(engine, rows)

    async def scenario() -> None:
        await serving.compute(ForecastRequest(horizon=2), NOW)  # a miss: written before it returns
        assert recorded() == [1, 2]
        monkeypatch.setattr(ledger, "record_rows", held)
        answer = serving.cached(ForecastRequest(horizon=5, level=80), NOW)  # derived, no I/O
        assert answer is not None and len(answer["points"]) == 5
        assert recorded() == [1, 2]  # horizons 3..5 are queued, the writer is held
        gate.set()
        writer = serving.ledger.kick()
        assert writer is not None
        await writer
        assert recorded() == [1, 2, 3, 4, 5]
        # Each (run, horizon) once: other levels and repeats queue nothing more.
        for level in (50, 90, 99):
            serving.cached(ForecastRequest(horizon=5, level=level), NOW)
        assert serving.ledger.kick() is not None
        assert recorded() == [1, 2, 3, 4, 5]

    asyncio.run(scenario())
    entries = ledger.list_predictions(engine, asset="BTC-USD")
    assert {e.level for e in entries} == {90}
    engine.dispose()


# --- other processes' writes, seen through the state poll ---

POLL = 0.2
SEEN_WITHIN = 1.0  # the poll interval plus the poll's own queries, on a busy machine


@pytest.fixture
def shared(settings: Settings, engine: Engine) -> Settings:
    """690 synthetic days, naive active and drift beside it, for two API instances."""
    source = FakeSource("yahoo", make_candles(date(2024, 1, 1), 690))
    request = IngestRequest(asset="BTC-USD")
    ingest(settings, engine, request, now=NOW, source_factory=lambda _: source)
    train(settings, engine, TrainRequest(model="naive", promote="always"), now=NOW)
    train(settings, engine, TrainRequest(model="drift", promote="never"), now=NOW)
    return settings.model_copy(
        update={"state_poll": timedelta(seconds=POLL), "api_key": API_KEY, "embedded_worker": False}
    )


def seen(client: TestClient, url: str, fresh: Callable[[dict[str, Any]], bool]) -> None:
    """``client`` answers ``url`` freshly within SEEN_WITHIN, and never staler after that."""
    started = time.monotonic()
    while not fresh(answer := client.get(url).json()):
        assert time.monotonic() - started < SEEN_WITHIN, f"still stale: {answer}"
        time.sleep(0.01)
    for _ in range(20):
        answer = client.get(url).json()
        assert fresh(answer), f"stale again: {answer}"


def test_another_process_sees_data_promotion_rollback_and_new_versions(
    shared: Settings, engine: Engine
) -> None:
    writer = TestClient(create_app(shared, clock=lambda: NOW))
    reader = TestClient(create_app(shared, clock=lambda: NOW))
    active, by_kind = "/api/v1/forecast?horizon=3", "/api/v1/forecast?horizon=3&model=drift"
    with writer, reader:
        naive = reader.get(active).json()["model_version"]
        drift = reader.get(by_kind).json()["model_version"]
        assert reader.get(active).json()["last_date"] == "2025-11-20"  # cached from here on

        # New days (as the worker ingests them).
        more = FakeSource("yahoo", make_candles(date(2024, 1, 1), 695))
        ingest(
            shared, engine, IngestRequest(asset="BTC-USD"), now=NOW, source_factory=lambda _: more
        )
        for url in (active, by_kind):
            seen(reader, url, lambda a: a["last_date"] == "2025-11-25")

        # A stored day rewritten (same last day, other close): only the data mark moves.
        revised = make_candles(date(2024, 1, 1), 695)
        revised[-1] = dataclasses.replace(revised[-1], close=revised[-1].close + 1.5)
        fix = FakeSource("yahoo", revised)
        since = IngestRequest(asset="BTC-USD", since=date(2025, 11, 25))
        assert ingest(shared, engine, since, now=NOW, source_factory=lambda _: fix).updated == 1
        seen(reader, active, lambda a: a["last_close"] == revised[-1].close)

        # Promotion and rollback in the other API process.
        assert writer.post(f"/api/v1/models/{drift}/promote", headers=AUTH).status_code == 200
        seen(reader, active, lambda a: a["model_version"] == drift)
        assert writer.post("/api/v1/models/BTC-USD/rollback", headers=AUTH).status_code == 200
        seen(reader, active, lambda a: a["model_version"] == naive)

        # A new version of the queried kind (trained, not promoted).
        newer = train(shared, engine, TrainRequest(model="drift", promote="never"), now=NOW)
        seen(reader, by_kind, lambda a: a["model_version"] == newer.version)
        assert reader.get(active).json()["model_version"] == naive


# --- background logging and the load of active versions ---

log = logging.getLogger("tests.outage")


def test_an_outage_is_logged_once_per_change_not_per_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = Outage("state poll", log)
    refused = OperationalError("SELECT 1", {}, Exception("connection refused"))
    with caplog.at_level(logging.INFO, "tests.outage"):
        for _ in range(30):  # 30 polls of a stalled or refused database
            outage.failed(refused)
            outage.failed(UnavailableError("the database did not answer within 10 s"))
        outage.ended()
        outage.ended()
        outage.failed(RuntimeError("a bug"))
        outage.failed(RuntimeError("a bug"))
    lines = [(r.levelname, r.getMessage().split(":")[0], bool(r.exc_info)) for r in caplog.records]
    assert lines == [
        ("WARNING", "state poll failing", False),
        ("WARNING", "state poll recovered after 0.0 s", False),
        ("ERROR", "state poll failing", True),  # not the database: its traceback, once
    ]


def test_a_damaged_active_version_is_found_when_loaded_not_per_request(
    installed: Settings,
) -> None:
    engine = create_db_engine(installed)
    with write_session(engine) as session:
        version = store.active_version_id(session=session, asset="BTC-USD")
        session.execute(
            update(ModelArtifactRow)
            .where(
                ModelArtifactRow.version_id == version,
                ModelArtifactRow.name == "weights.safetensors",
            )
            .values(content=b"damaged")
        )
    engine.dispose()
    with client_for(installed) as client:
        serving = client.app.state.serving  # type: ignore[attr-defined]
        assert serving.load_error(version) and "damaged" in serving.load_error(version)
        body = client.get("/health").json()
        assert body["status"] == "degraded" and body["model_ready"] is False
        # (the worker's own reasons are not this test's: it runs without one)
        mine = [(r["component"], r["asset"]) for r in body["reasons"] if r["component"] != "worker"]
        assert mine == [("model_store", "BTC-USD")]
        answer = client.get("/api/v1/forecast")
        assert answer.status_code == 503 and answer.json()["code"] == "artifact_damaged"


# --- stored-data summaries (GET /api/v1/assets): kept per data mark, no query per request ---

DAYS = make_candles(date(2024, 1, 1), 60)


def put(settings: Settings, engine: Engine, asset: str, days: list[Any]) -> None:
    """Store ``days`` of ``asset`` as an ingest run does (one new data mark)."""
    source = FakeSource("yahoo", days)
    since = IngestRequest(asset=asset, since=date(2024, 1, 1))
    ingest(settings, engine, since, now=NOW, source_factory=lambda _: source)


@pytest.fixture
def stored(settings: Settings, engine: Engine) -> Settings:
    """BTC-USD tracked with a gap, ETH-USD stored but untracked, SOL-USD tracked but empty;
    the state poll is left to the tests (an hour)."""
    put(settings, engine, "BTC-USD", DAYS[:3] + DAYS[5:50])
    put(settings, engine, "ETH-USD", DAYS[:20])
    return settings.model_copy(
        update={
            "assets": ["BTC-USD", "SOL-USD"],
            "state_poll": timedelta(hours=1),
            "api_key": API_KEY,
            "embedded_worker": False,
        }
    )


def test_assets_are_served_without_a_query_once_summarised(
    stored: Settings, engine: Engine
) -> None:
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    app = create_app(stored, engine=engine, clock=lambda: NOW)
    with TestClient(app) as client:
        warm = client.get("/api/v1/assets").json()  # the first request summarises
        event.listen(engine, "before_cursor_execute", count)
        try:
            for _ in range(10):
                assert client.get("/api/v1/assets").json() == warm
            missing = client.get("/api/v1/assets/DOGE-USD/candles")
        finally:
            event.remove(engine, "before_cursor_execute", count)
    assert statements == []
    assert missing.status_code == 404 and "ETH-USD" in missing.json()["detail"]


def test_assets_are_what_data_status_computes(stored: Settings, engine: Engine) -> None:
    expected = data_status(stored, engine, asset=None, now=NOW + timedelta(days=40))
    with TestClient(create_app(stored, engine=engine, clock=lambda: NOW + timedelta(days=40))) as c:
        served = c.get("/api/v1/assets").json()
    assert served == [s.model_dump(mode="json") for s in expected]
    assert [(s["asset"], s["rows"], bool(s["gaps"]), s["stale"]) for s in served] == [
        ("BTC-USD", 48, True, True),
        ("ETH-USD", 20, False, True),
        ("SOL-USD", 0, False, None),
    ]


def test_another_process_serves_new_data_after_one_poll(stored: Settings, engine: Engine) -> None:
    reader = ServingState(stored, engine)
    reader.refresh()
    [before] = reader.asset_status("BTC-USD", NOW)
    put(stored, engine, "BTC-USD", DAYS)  # gap filled, ten more days (as the worker ingests)
    put(stored, engine, "ADA-USD", DAYS[:7])  # a new untracked asset
    assert reader.asset_status("BTC-USD", NOW) == [before]  # until its next poll
    with pytest.raises(AssetNotFoundError):
        reader.asset_status("ADA-USD", NOW)
    reader.refresh()
    [after] = reader.asset_status("BTC-USD", NOW)
    assert (after.rows, after.last, after.gaps) == (60, date(2024, 2, 29), [])
    assert reader.asset_status(None, NOW) == data_status(stored, engine, asset=None, now=NOW)
    assert [s.asset for s in reader.asset_status(None, NOW)][:2] == ["ADA-USD", "BTC-USD"]


def test_concurrent_requests_summarise_a_moved_mark_once(
    stored: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from btc_predictor.services import ingest as ingest_service

    summarised: list[str] = []
    summary = ingest_service._summary

    def slow(session: Any, name: str) -> Any:
        summarised.append(name)
        time.sleep(0.05)  # every request arrives while the first one summarises
        return summary(session, name)

    monkeypatch.setattr(ingest_service, "_summary", slow)
    serving = ServingState(stored, engine)
    serving.refresh()
    answers: list[Any] = []
    threads = [
        threading.Thread(target=lambda: answers.append(serving.asset_status(None, NOW)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(summarised) == ["BTC-USD", "ETH-USD"] and len(answers) == 8
    assert all(answer == answers[0] for answer in answers)


def test_stopping_the_poller_waits_for_a_running_refresh(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shutdown disposes the engine after the poller stops: a refresh still running in its
    thread must end first, or it would hold a connection of a closed pool."""
    serving = ServingState(settings.model_copy(update={"state_poll": timedelta(0)}), engine)
    started, finished = threading.Event(), threading.Event()

    def slow_refresh() -> None:
        started.set()
        time.sleep(0.3)
        finished.set()

    monkeypatch.setattr(serving, "refresh", slow_refresh)

    async def stop_mid_refresh() -> None:
        task = asyncio.create_task(serving.poll_forever())
        await asyncio.to_thread(started.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert finished.is_set()

    asyncio.run(stop_mid_refresh())
