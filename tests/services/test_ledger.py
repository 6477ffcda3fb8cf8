"""The forecast ledger's rules: record the 90% forecast once, score entries when their day closes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine

from btc_predictor.services import ledger
from btc_predictor.shapes.results import Forecast, ForecastPoint
from btc_predictor.storage import repository as repo
from btc_predictor.storage.db import write_session
from tests.conftest import NOW
from tests.factories import make_candles


def forecast(level: int = 90) -> Forecast:
    """A served two-day forecast made after 2025-11-30 closed."""
    points = [
        ForecastPoint(
            horizon=h,
            target_date=date(2025, 12, h),
            value=100.0 + h,
            lower=95.0,
            upper=105.0,
            naive=100.0,
        )
        for h in (1, 2)
    ]
    return Forecast(
        asset="BTC-USD",
        model="lstm",
        model_version=1,
        as_of=datetime(2025, 12, 1, tzinfo=UTC),
        last_close=100.0,
        last_date=date(2025, 11, 30),
        data_age_seconds=0.0,
        stale=False,
        level=level,
        points=points,
    )


def test_only_90_percent_forecasts_are_recorded_once(engine: Engine) -> None:
    with pytest.raises(ValueError, match="90% intervals"):
        ledger.record_forecast(engine, forecast(level=80), now=NOW)
    assert ledger.record_forecast(engine, forecast(), now=NOW) == 2
    assert ledger.record_forecast(engine, forecast(), now=NOW) == 0
    assert [e.horizon for e in ledger.list_predictions(engine, asset="BTC-USD")] == [2, 1]


def test_entries_are_scored_when_their_candle_arrives(engine: Engine) -> None:
    ledger.record_forecast(engine, forecast(), now=NOW)
    assert ledger.score_ledger(engine, "BTC-USD", now=NOW) == 0  # no closes yet
    day1 = make_candles(date(2025, 12, 1), 1, price=103.0)
    with write_session(engine) as session:
        repo.upsert_candles(
            session=session, asset="BTC-USD", candles=day1, source="csv", mode="overwrite", now=NOW
        )
    later = NOW + timedelta(days=1)
    assert ledger.score_ledger(engine, "BTC-USD", now=later) == 1
    assert ledger.score_ledger(engine, "BTC-USD", now=later) == 0  # scored once
    second, first = ledger.list_predictions(engine, asset="BTC-USD")
    assert second.scored_at is None
    assert (first.actual, first.abs_error, first.naive_abs_error) == (103.0, 2.0, 3.0)
    assert first.inside is True and first.model_dump(mode="json")["scored_at"] == later.isoformat()
