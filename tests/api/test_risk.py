"""GET /api/v1/risk and ``btc-predictor risk``: one body, the forecast's conventions (defaults,
staleness, codes); its cache (one risk run per version and data answers every horizon and
level exactly, identical misses share one run, promotions/rollbacks/new data/new versions are
followed); served risk forecasts reach the risk ledger once, off the request path."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, update
from typer.testing import CliRunner

from btc_predictor.api import state as state_module
from btc_predictor.api.app import create_app
from btc_predictor.api.state import ServingState
from btc_predictor.cli import app as cli_app
from btc_predictor.config import Settings
from btc_predictor.forecasting.risk.intervals import range_intervals_per_horizon
from btc_predictor.services import ledger
from btc_predictor.services.forecast import predict
from btc_predictor.services.ingest import ingest
from btc_predictor.services.risk import (
    load_stored_risk_version,
    risk,
    risk_candles,
    run_risk_model,
)
from btc_predictor.services.risk_training import risk_data
from btc_predictor.services.training import train
from btc_predictor.shapes.requests import ForecastRequest, IngestRequest, RiskRequest, TrainRequest
from btc_predictor.sources.base import Candle, utc_day
from btc_predictor.storage import model_store as store
from btc_predictor.storage import repository as repo
from btc_predictor.storage.db import create_db_engine, read_session, write_session
from btc_predictor.storage.tables import CandleRow, ModelArtifactRow
from tests.api.conftest import client_for
from tests.api.test_state import asgi_get
from tests.conftest import NOW
from tests.factories import FakeSource

KEYS = [
    "asset",
    "model",
    "model_version",
    "level",
    "as_of",
    "last_close",
    "last_date",
    "data_age_seconds",
    "stale",
    "points",
]
POINT_KEYS = [
    "horizon",
    "target_date",
    "volatility",
    "range_pct",
    "range_lower_pct",
    "range_upper_pct",
    "range_price",
    "naive_range_pct",
    "var_95",
    "var_99",
]
MODELS = [None, "har", "ewma-vol"]  # None: the active risk version (har)


@pytest.fixture
def risky(installed: Settings) -> Iterator[tuple[Settings, Engine]]:
    """Real BTC data, drift the active price model, har the active risk model, ewma-vol beside."""
    engine = create_db_engine(installed)
    train(installed, engine, TrainRequest(model="har", promote="always"), now=NOW)
    train(installed, engine, TrainRequest(model="ewma-vol", promote="never"), now=NOW)
    yield installed, engine
    engine.dispose()


def version_of(engine: Engine, model: str) -> int:
    """The newest version id of ``model``."""
    with read_session(engine) as session:
        return store.list_versions(session=session, asset="BTC-USD", model=model)[0].id


# --- the body ------------------------------------------------------------------------------


def test_the_body_is_exactly_what_risk_json_prints(
    risky: tuple[Settings, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, engine = risky
    with client_for(settings) as client:
        body = client.get("/api/v1/risk").json()
        assert client.get("/api/v1/risk?horizon=7&level=90&asset=btc-usd").json() == body
    assert list(body) == KEYS and [list(p) for p in body["points"]] == [POINT_KEYS] * 7
    assert body["model"] == "har" and body["model_version"] == version_of(engine, "har")
    assert (body["asset"], body["level"], body["last_date"]) == ("BTC-USD", 90, "2025-11-29")
    assert body["as_of"] == "2025-11-30T00:00:00+00:00"
    # The same computation from scratch (no cache) and through the CLI, byte for byte.
    expected = risk(settings, engine, RiskRequest(), now=NOW).model_dump(mode="json")
    assert body == expected
    monkeypatch.setattr(cli_app, "utc_now", lambda: NOW)
    env = {"BTCP_DATA_DIR": str(settings.data_dir), "BTCP_SOURCES": "yahoo"}
    printed = CliRunner().invoke(cli_app.app, ["risk", "--json"], env=env)
    assert printed.exit_code == 0, printed.stderr
    assert json.dumps(json.loads(printed.stdout)) == json.dumps(body)  # key order too
    table = CliRunner().invoke(cli_app.app, ["risk", "--horizon", "2", "--level", "80"], env=env)
    assert table.exit_code == 0 and f"har v{body['model_version']}" in table.stdout


def test_the_numbers_follow_their_definitions(risky: tuple[Settings, Engine]) -> None:
    settings, engine = risky
    with client_for(settings) as client:
        body = client.get("/api/v1/risk?horizon=30&level=80").json()
    with read_session(engine) as session:
        before, last = repo.load_candles(session=session, asset="BTC-USD", limit=2)
    assert body["last_close"] == last.close
    naive = (last.high - last.low) / before.close * 100  # the last closed day's range_pct
    price = predict(settings, engine, ForecastRequest(horizon=30), now=NOW).model_dump(mode="json")
    for point, priced in zip(body["points"], price["points"], strict=True):
        assert point["naive_range_pct"] == pytest.approx(naive, rel=1e-12)
        assert point["range_price"] == pytest.approx(point["range_pct"] * last.close / 100)
        assert 0 < point["range_lower_pct"] < point["range_pct"] < point["range_upper_pct"]
        assert 0 < point["volatility"] < 0.2  # a daily σ as a fraction
        # VaR comes from the active price version's forecast (null while it carries none).
        assert (point["var_95"], point["var_99"]) == (priced.get("var_95"), priced.get("var_99"))
    assert [p["target_date"] for p in body["points"]][:2] == ["2025-11-30", "2025-12-01"]


def test_hot_route_equals_its_declaration(risky: tuple[Settings, Engine]) -> None:
    settings, _ = risky
    hot = TestClient(create_app(settings, clock=lambda: NOW))
    plain = TestClient(create_app(settings, clock=lambda: NOW, hot_paths=False))
    with hot, plain:
        for url in ("/api/v1/risk", "/api/v1/risk?horizon=30&level=51&model=ewma-vol"):
            fast, reference = hot.get(url), plain.get(url)
            assert fast.status_code == reference.status_code == 200
            assert fast.json() == reference.json()


@pytest.mark.parametrize(
    ("days_later", "age", "stale"),
    [(0, 30 * 3600.0, False), (5, (6 * 24 + 6) * 3600.0, True)],
)
def test_stale_data_is_served_with_its_age(
    risky: tuple[Settings, Engine], days_later: int, age: float, stale: bool
) -> None:
    settings, _ = risky
    with TestClient(create_app(settings, clock=lambda: NOW + timedelta(days=days_later))) as c:
        body = c.get("/api/v1/risk?horizon=1").json()
    # The newest candle (2025-11-29) closed at 2025-11-30 00:00; BTCP_MAX_DATA_AGE is 2 days.
    assert (body["data_age_seconds"], body["stale"]) == (age, stale)


# --- the codes -----------------------------------------------------------------------------


def test_a_risk_model_trained_for_fewer_days_is_409_horizon_exceeds_model(
    installed: Settings,
) -> None:
    engine = create_db_engine(installed)
    short = installed.model_copy(update={"max_horizon": 5})
    train(short, engine, TrainRequest(model="har", promote="always"), now=NOW)
    engine.dispose()
    with client_for(installed) as client:
        assert client.get("/api/v1/risk?horizon=5").status_code == 200
        answer = client.get("/api/v1/risk?horizon=6")
    assert answer.status_code == 409 and answer.json()["code"] == "horizon_exceeds_model"
    assert "exceeds this risk model's 5 days" in answer.json()["detail"]


def test_a_missing_day_is_409_no_data_naming_the_ingest(risky: tuple[Settings, Engine]) -> None:
    settings, engine = risky
    with write_session(engine) as session:
        session.execute(delete(CandleRow).where(CandleRow.ts == utc_day(date(2025, 6, 1))))
    with client_for(settings) as client:
        answer = client.get("/api/v1/risk")
    assert answer.status_code == 409 and answer.json()["code"] == "no_data"
    assert "ingest --asset BTC-USD --since 2025-05-31" in answer.json()["detail"]


def test_a_damaged_risk_version_is_503_artifact_damaged(risky: tuple[Settings, Engine]) -> None:
    settings, engine = risky
    with write_session(engine) as session:
        session.execute(
            update(ModelArtifactRow)
            .where(ModelArtifactRow.version_id == version_of(engine, "har"))
            .where(ModelArtifactRow.name == "weights.safetensors")
            .values(content=b"damaged")
        )
    with client_for(settings) as client:
        answer = client.get("/api/v1/risk")
        assert client.get("/api/v1/risk?model=ewma-vol").status_code == 200
    assert answer.status_code == 503 and answer.json()["code"] == "artifact_damaged"


# --- the cache -----------------------------------------------------------------------------


def fresh_outlook(engine: Engine, model: str) -> tuple[Any, list[np.ndarray]]:
    """The version's raw forecast on the stored data and its residuals, loaded anew."""
    loaded = load_stored_risk_version(engine, version_of(engine, model))
    with read_session(engine) as session:
        candles = risk_candles(session, "BTC-USD", loaded.train_start, 1)
        meta = store.load_artifacts(session=session, version_id=loaded.version_id).meta
    ohlc = risk_data("BTC-USD", candles).ohlc
    forecast = loaded.forecaster.forecast(ohlc, loaded.forecaster.max_horizon)
    residuals = [np.asarray(r, dtype=np.float64) for r in meta["residuals_per_horizon"]]
    return forecast, residuals


def test_every_cached_answer_equals_a_fresh_computation(
    risky: tuple[Settings, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, engine = risky
    runs: list[str] = []
    counted = state_module.run_risk_model
    monkeypatch.setattr(state_module, "run_risk_model", lambda *a: runs.append(a[0]) or counted(*a))
    serving = ServingState(settings, engine)
    serving.refresh()
    for model in MODELS:
        forecast, residuals = fresh_outlook(engine, model or "har")
        for level in range(50, 100):
            for horizon in range(1, 31):
                points = serving.risk(RiskRequest(horizon=horizon, level=level, model=model), NOW)[
                    "points"
                ]
                lower, upper = range_intervals_per_horizon(
                    forecast.range_pct[:horizon], residuals, level
                )
                assert [p["range_pct"] for p in points] == forecast.range_pct[:horizon].tolist()
                assert [p["volatility"] for p in points] == forecast.volatility[:horizon].tolist()
                assert [p["range_lower_pct"] for p in points] == lower.tolist(), (model, level)
                assert [p["range_upper_pct"] for p in points] == upper.tolist(), (model, level)
    assert len(runs) == 2 == serving.risk_runs  # one per version: har (active) and ewma-vol
    # The whole object equals what `risk --json` computes from scratch.
    for model, horizon, level in [(None, 1, 90), ("ewma-vol", 30, 50), ("har", 17, 99)]:
        request = RiskRequest(horizon=horizon, level=level, model=model)
        expected = risk(settings, engine, request, now=NOW).model_dump(mode="json")
        assert serving.risk(request, NOW) == expected


def test_identical_concurrent_misses_run_the_risk_model_once(
    risky: tuple[Settings, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, _ = risky
    threads: list[int] = []

    def slow(*args: Any) -> Any:
        threads.append(threading.get_ident())
        time.sleep(0.3)  # every request arrives while the one run is still going
        return run_risk_model(*args)

    monkeypatch.setattr(state_module, "run_risk_model", slow)
    app = create_app(settings, clock=lambda: NOW)

    async def hundred() -> tuple[int, list[tuple[int, bytes]]]:
        async with app.router.lifespan_context(app):
            url = "/api/v1/risk?horizon=7&level=80"
            answers = await asyncio.gather(*(asgi_get(app, url) for _ in range(100)))
            return threading.get_ident(), answers

    loop_thread, answers = asyncio.run(hundred())
    assert len(threads) == 1 and app.state.serving.risk_runs == 1
    assert threads[0] != loop_thread  # computed in a worker thread
    assert {status for status, _ in answers} == {200}
    bodies = [json.loads(body) for _, body in answers]
    assert all(b == bodies[0] for b in bodies) and len(bodies[0]["points"]) == 7


def test_the_cache_follows_promotions_rollbacks_new_versions_and_new_data(
    risky: tuple[Settings, Engine],
) -> None:
    settings, engine = risky
    serving = ServingState(settings, engine)
    serving.refresh()
    active = lambda: serving.risk(RiskRequest(horizon=2), NOW)  # noqa: E731
    har, ewma = version_of(engine, "har"), version_of(engine, "ewma-vol")
    assert active()["model_version"] == har and serving.risk_runs == 1
    with write_session(engine) as session:  # promoted by another process
        store.promote(session=session, version_id=ewma, reason="test", now=NOW)
    serving.refresh()
    assert active()["model_version"] == ewma and serving.risk_runs == 2
    with write_session(engine) as session:
        store.rollback(session=session, asset="BTC-USD", now=NOW, family="risk")
    serving.refresh()
    # har's run was kept (still the newest har, same data): served again without a run.
    assert active()["model_version"] == har and serving.risk_runs == 2
    # A new version of the asked kind (not promoted): model=har moves, the active one stays.
    newer = train(settings, engine, TrainRequest(model="har", promote="never"), now=NOW)
    serving.refresh()
    assert serving.risk(RiskRequest(model="har"), NOW)["model_version"] == newer.version
    assert active()["model_version"] == har
    runs = serving.risk_runs
    # Another price version promoted: its VaR is what risk answers carry, so they run again.
    train(settings, engine, TrainRequest(model="naive", promote="always"), now=NOW)
    serving.refresh()
    assert active()["model_version"] == har and serving.risk_runs == runs + 1
    # A new day: a new run on it.
    day = Candle(utc_day(date(2025, 11, 30)), 90832.0, 92000.0, 90000.0, 91000.0, 5.0)
    source = FakeSource("yahoo", [day])
    ingest(
        settings, engine, IngestRequest(asset="BTC-USD"), now=NOW, source_factory=lambda _: source
    )
    serving.refresh()
    assert active()["last_date"] == "2025-11-30" and serving.risk_runs == runs + 2
    assert active()["points"][0]["naive_range_pct"] == pytest.approx(2000 / 90832 * 100)


def test_risk_versions_share_the_one_lru(risky: tuple[Settings, Engine]) -> None:
    settings, engine = risky
    serving = ServingState(settings.model_copy(update={"max_loaded_models": 2}), engine)
    serving.refresh()
    price = serving.forecast(ForecastRequest(), NOW)["model_version"]
    har = serving.risk(RiskRequest(), NOW)["model_version"]
    assert serving.held() == [price, har]
    ewma = serving.risk(RiskRequest(model="ewma-vol"), NOW)["model_version"]
    assert serving.held() == [har, ewma]  # the price version, least recently used, went


# --- the risk ledger -----------------------------------------------------------------------


def test_served_risk_reaches_the_ledger_once_and_never_slows_a_cached_answer(
    risky: tuple[Settings, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, engine = risky
    serving = ServingState(settings, engine)
    serving.refresh()
    recorded = lambda: sorted(  # noqa: E731
        r.horizon for r in ledger.list_risk_predictions(engine, asset="BTC-USD")
    )
    gate, write = threading.Event(), ledger.record_risk_rows

    def held(engine: Engine, rows: list[dict[str, Any]]) -> int:
        gate.wait(10)
        return write(engine, rows)

    async def scenario() -> None:
        await serving.compute_risk(RiskRequest(horizon=2, level=80), NOW)  # written before return
        assert recorded() == [1, 2]
        monkeypatch.setattr(ledger, "record_risk_rows", held)
        answer = serving.cached_risk(RiskRequest(horizon=5, level=95), NOW)  # derived, no I/O
        assert answer is not None and len(answer["points"]) == 5
        assert recorded() == [1, 2]  # horizons 3..5 are queued, the writer is held
        gate.set()
        writer = serving.risk_ledger.kick()
        assert writer is not None
        await writer
        assert recorded() == [1, 2, 3, 4, 5]
        for level in (50, 90, 99):  # each (run, horizon) once
            serving.cached_risk(RiskRequest(horizon=5, level=level), NOW)
        assert serving.risk_ledger.kick() is not None and recorded() == [1, 2, 3, 4, 5]

    asyncio.run(scenario())
    rows = sorted(ledger.list_risk_predictions(engine, asset="BTC-USD"), key=lambda r: r.horizon)
    ninety = serving.risk(RiskRequest(horizon=5, level=90), NOW)
    drift = version_of(engine, "drift")
    for row, point in zip(rows, ninety["points"], strict=True):
        assert (row.level, row.model, row.price_version) == (90, "har", drift)
        assert row.range_lower_pct == point["range_lower_pct"]
        assert row.range_upper_pct == point["range_upper_pct"]
        assert (row.range_pct, row.naive_range_pct) == (
            point["range_pct"],
            point["naive_range_pct"],
        )
        assert (row.var_95, row.var_99) == (point["var_95"], point["var_99"])
        assert row.last_close == ninety["last_close"] and row.scored_at is None
