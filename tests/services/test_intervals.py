"""Adaptive intervals end to end: the price version pins its σ̂ source, static is today's split
conformal exactly, ingest records and scores the interval state in its own transaction, pruning
keeps referenced risk versions, and VaR / p_up agree with the served interval."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, select

from btc_predictor.config import Settings
from btc_predictor.forecasting import interval_choice
from btc_predictor.forecasting.intervals import intervals_per_horizon
from btc_predictor.services import intervals
from btc_predictor.services.forecast import predict
from btc_predictor.services.ingest import ingest
from btc_predictor.services.training import train
from btc_predictor.shapes.requests import ForecastRequest, IngestRequest, TrainRequest
from btc_predictor.shapes.results import Forecast, TrainResult
from btc_predictor.sources.base import Candle, utc_day
from btc_predictor.storage import model_store as store
from btc_predictor.storage import repository as repo
from btc_predictor.storage.db import create_db_engine, read_session, upgrade
from btc_predictor.storage.tables import IntervalScoreRow, ModelVersionRow
from tests.conftest import NOW
from tests.factories import FakeSource

ASSET = "BTC-USD"


@pytest.fixture
def btc(settings: Settings, shared_data: Path) -> Iterator[Engine]:
    """Real BTC history (to 2025-11-29) in a fresh database (SQLite, PostgreSQL)."""
    engine = create_db_engine(settings)
    upgrade(engine)
    request = IngestRequest(asset=ASSET, path=shared_data / "Bitstamp_BTCUSD_d.csv")
    ingest(settings, engine, request, now=NOW)
    yield engine
    engine.dispose()


def fit(settings: Settings, engine: Engine, model: str, promote: str = "always") -> TrainResult:
    """Train ``model`` on the stored history."""
    return train(settings, engine, TrainRequest(model=model, promote=promote), now=NOW)


def meta(engine: Engine, version_id: int) -> dict[str, Any]:
    """A version's verified meta.json."""
    with read_session(engine) as session:
        return store.load_artifacts(session=session, version_id=version_id).meta


def forecast(settings: Settings, engine: Engine, level: int = 90, days: int = 0) -> Forecast:
    """``predict --json`` for 30 days at ``level``, ``days`` after NOW."""
    request = ForecastRequest(horizon=30, level=level)
    return predict(settings, engine, request, now=NOW + timedelta(days=days))


def next_day(settings: Settings, engine: Engine, day: date, close: float) -> None:
    """Ingest one more closed day (a later clock, so the day has closed)."""
    candle = Candle(utc_day(day), close, close * 1.02, close * 0.98, close, 1.0)
    source = FakeSource("yahoo", [candle])
    now = utc_day(day + timedelta(days=1)) + timedelta(hours=6)
    ingest(settings, engine, IngestRequest(asset=ASSET), now=now, source_factory=lambda _: source)


def test_a_risk_retrain_never_rescales_a_trained_price_version(
    settings: Settings, btc: Engine
) -> None:
    risk = fit(settings, btc, "har")
    price = fit(settings, btc, "drift")
    source = meta(btc, price.version)["sigma_source"]
    assert source == {"model": "har", "version": risk.version}
    before = forecast(settings, btc)
    assert before.interval_method == "adaptive" and before.risk_model_version == risk.version
    static = forecast(settings.model_copy(update={"intervals": "static"}), btc)
    assert [p.lower for p in before.points] != [p.lower for p in static.points]
    newer_risk = fit(settings, btc, "ewma-vol")  # now the active risk version
    assert forecast(settings, btc) == before  # pinned: the same σ̂, the same interval
    fit(settings, btc, "drift")  # a price version trained now pins the new one
    assert forecast(settings, btc).risk_model_version == newer_risk.version


def test_static_reproduces_plain_split_conformal_exactly(settings: Settings, btc: Engine) -> None:
    fit(settings, btc, "har")
    price = fit(settings, btc, "drift")
    static = settings.model_copy(update={"intervals": "static"})
    residuals = meta(btc, price.version)["residuals_per_horizon"]
    for level in (50, 80, 90, 99):
        served = forecast(static, btc, level)
        values = np.array([p.value for p in served.points])
        lower, upper = intervals_per_horizon(values, residuals, level)
        assert [p.lower for p in served.points] == lower.tolist()
        assert [p.upper for p in served.points] == upper.tolist()
        assert (served.interval_method, served.risk_model_version) == ("static", None)


def test_without_a_risk_version_intervals_fall_back_to_static_and_say_so(
    settings: Settings, btc: Engine
) -> None:
    price = fit(settings, btc, "drift")
    assert meta(btc, price.version)["sigma_source"] is None
    served = forecast(settings, btc)
    assert served.interval_method == "static" and served.risk_model_version is None
    assert served.interval_note is not None and "risk version" in served.interval_note


@pytest.mark.parametrize("method", ["adaptive", "static"])
def test_var_and_p_up_agree_with_the_served_interval(
    settings: Settings, btc: Engine, method: str
) -> None:
    fit(settings, btc, "har")
    fit(settings, btc, "drift")
    settings = settings.model_copy(update={"intervals": method})
    ninety, ninety_eight = forecast(settings, btc, 90), forecast(settings, btc, 98)
    assert ninety.interval_method == method
    last = ninety.last_close
    for p, wide in zip(ninety.points, ninety_eight.points, strict=True):
        assert p.var_95 is not None and p.var_99 is not None and p.p_up is not None
        # VaR q is the lower bound of the (2q − 1) interval, as a loss in % of the last close
        assert p.var_95 == pytest.approx((1 - p.lower / last) * 100, rel=1e-9, abs=1e-9)
        assert p.var_99 == pytest.approx((1 - wide.lower / last) * 100, rel=1e-9, abs=1e-9)
        assert p.var_99 > p.var_95
        # drift ties naive on its holdout (DM p ≫ 0.05): it claims no direction
        assert p.value != last and p.p_up == 0.5


def test_ingest_records_and_scores_the_interval_state_once(settings: Settings, btc: Engine) -> None:
    risk = fit(settings, btc, "har")
    price = fit(settings, btc, "drift")
    next_day(settings, btc, date(2025, 11, 30), 91500.0)
    rows = scored_rows(btc)
    # origins 2025-11-29 (the version's last training day) and 2025-11-30, 30 horizons each
    assert sorted({r.origin_date for r in rows}) == [date(2025, 11, 29), date(2025, 11, 30)]
    assert len(rows) == 60 and all(r.price_version == price.version for r in rows)
    done = [r for r in rows if r.score is not None]
    assert [(r.origin_date, r.horizon) for r in done] == [(date(2025, 11, 29), 1)]
    row = done[0]
    assert row.actual == 91500.0 and row.sigma is not None and row.sigma > 0
    assert row.score == pytest.approx(abs(math.log(91500.0 / row.forecast)) / row.sigma)
    # the σ̂ recorded for an origin is the σ̂ serving computes from that origin
    with read_session(btc) as session:
        model = intervals.load_risk_model(session, risk.version)
        candles = repo.load_candles(session=session, asset=ASSET, limit=intervals.RISK_CONTEXT)
    newest = [r.sigma for r in rows if r.origin_date == date(2025, 11, 30)]
    assert newest == intervals.sigma_now(model, candles)[:30].tolist()
    served = forecast(settings, btc, days=1)
    assert served.interval_method == "adaptive"
    again = intervals.record_and_score(btc, ASSET, now=NOW + timedelta(days=1))
    assert again == {"recorded": 0, "scored": 0} and len(scored_rows(btc)) == 60
    next_day(settings, btc, date(2025, 12, 1), 90000.0)
    rows = scored_rows(btc)
    assert len(rows) == 90 and sum(r.score is not None for r in rows) == 3  # 11-29 h1,h2; 11-30 h1


def scored_rows(engine: Engine) -> list[IntervalScoreRow]:
    """Every interval_scores row, by origin and horizon."""
    with read_session(engine) as session:
        query = select(IntervalScoreRow).order_by(
            IntervalScoreRow.origin_date, IntervalScoreRow.horizon
        )
        return list(session.scalars(query))


def test_a_failing_interval_record_does_not_lose_the_candles(
    settings: Settings,
    btc: Engine,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fit(settings, btc, "har")
    fit(settings, btc, "drift")

    def broken(*_: object) -> int:
        raise RuntimeError("model exploded")

    monkeypatch.setattr(intervals, "_score", broken)
    with caplog.at_level(logging.ERROR):
        next_day(settings, btc, date(2025, 11, 30), 91500.0)
    with read_session(btc) as session:
        assert repo.newest_candles(session=session)[ASSET].ts == utc_day(date(2025, 11, 30))
    assert scored_rows(btc) == []  # its own transaction: the recorded rows rolled back
    assert "recording interval scores of BTC-USD failed" in caplog.text


def test_pruning_keeps_every_risk_version_a_kept_price_version_references(
    settings: Settings, btc: Engine
) -> None:
    settings = settings.model_copy(update={"keep_versions": 1})
    first = fit(settings, btc, "har")
    fit(settings, btc, "naive")  # references ``first``
    later = [fit(settings, btc, "har").version for _ in range(3)]
    with read_session(btc) as session:
        pruned = {
            v.id: v.pruned_at is not None
            for v in store.list_versions(session=session, asset=ASSET, family=store.RISK)
        }
    # active (later[2]) and rollback target (later[1]) kept, as is ``first``, by reference
    assert pruned == {first.version: False, later[0]: True, later[1]: False, later[2]: False}


def test_training_stores_the_holdouts_normalised_scores(settings: Settings, btc: Engine) -> None:
    fit(settings, btc, "har")
    price = fit(settings, btc, "drift")
    stored = meta(btc, price.version)
    scores, residuals = stored["interval_scores"], stored["residuals_per_horizon"]
    assert scores["risk_model"] == "har"
    assert [len(h) for h in scores["per_horizon"]] == [len(r) for r in residuals]
    first = date.fromisoformat(scores["first_origin"])
    with read_session(btc) as session:
        row = session.scalars(select(ModelVersionRow).where(ModelVersionRow.id == price.version))
        train_end = row.one().train_end
    # the holdout's origins end h days before the last training day
    assert first + timedelta(days=len(residuals[0]) - 1) == train_end - timedelta(days=1)
    ratio = np.abs(residuals[0]) / np.array(scores["per_horizon"][0], dtype=float)
    assert np.all(ratio > 0) and np.unique(np.round(ratio, 12)).size > 100  # σ̂ varies by day
    json.dumps(stored, allow_nan=False)  # strict JSON


def test_training_chooses_static_bands_where_they_beat_scaled_ones_on_the_holdout(
    settings: Settings, btc: Engine
) -> None:
    fit(settings, btc, "har")
    price = fit(settings, btc, "drift")
    stored = meta(btc, price.version)
    scores, residuals = stored["interval_scores"], stored["residuals_per_horizon"]
    # the same choice, recomputed from what meta.json keeps (σ̂ = |r| / score)
    r = [np.array(h, dtype=float) for h in residuals]
    s = np.full((r[0].size, len(r)), np.nan)
    for h, (res, sc) in enumerate(zip(r, scores["per_horizon"], strict=True)):
        s[: res.size, h] = np.abs(res) / np.array(sc, dtype=float)
    assert scores["static_horizons"] == interval_choice.static_horizons(r, s, window=365)
    # real BTC, drift: σ̂ scaling pays at the shortest horizons only (measured: 1-3 adaptive)
    assert 1 not in scores["static_horizons"] and 30 in scores["static_horizons"]


def test_static_horizons_are_served_static_and_said_so(settings: Settings, btc: Engine) -> None:
    fit(settings, btc, "har")
    price = fit(settings, btc, "drift")
    plain = set(meta(btc, price.version)["interval_scores"]["static_horizons"])
    for level in (80, 90, 99):
        adaptive = forecast(settings, btc, level)
        static = forecast(settings.model_copy(update={"intervals": "static"}), btc, level)
        assert adaptive.interval_method == "adaptive"
        for a, b in zip(adaptive.points, static.points, strict=True):
            same = (a.lower, a.upper, a.var_95, a.var_99) == (b.lower, b.upper, b.var_95, b.var_99)
            assert same == (a.horizon in plain), a.horizon
    note = forecast(settings, btc).interval_note
    assert note is not None and note.startswith(f"horizons {min(plain)}")
    assert note.endswith(
        "use static intervals: σ̂-scaled ones scored significantly worse on this version's holdout"
    )
