"""The risk ledger's rules: a served risk forecast is recorded once at its 90% range interval,
scored when its day's candle (and the day before) is stored, against hand-computed outcomes;
the live statistics monitoring reads."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine

from btc_predictor.services import ledger
from btc_predictor.shapes.risk_results import Risk, RiskPoint
from btc_predictor.sources.base import Candle, utc_day
from btc_predictor.storage import repository as repo
from btc_predictor.storage.db import write_session
from tests.conftest import NOW

ORIGIN = date(2025, 11, 30)  # the last closed day the forecast knew (close 100)


def risk(level: int = 90, *, model: str = "har", version: int = 7) -> Risk:
    """A served two-day risk forecast made after ORIGIN closed at 100."""
    points = [
        RiskPoint(
            horizon=1,
            target_date=date(2025, 12, 1),
            volatility=0.02,
            range_pct=5.0,
            range_lower_pct=3.0,
            range_upper_pct=5.5,
            range_price=5.0,
            naive_range_pct=4.0,
            var_95=2.5,
            var_99=4.0,
        ),
        RiskPoint(
            horizon=2,
            target_date=date(2025, 12, 2),
            volatility=0.021,
            range_pct=3.5,
            range_lower_pct=2.0,
            range_upper_pct=6.0,
            range_price=3.5,
            naive_range_pct=4.0,
            var_95=None,  # e.g. the price version forecasts one day only
            var_99=None,
        ),
    ]
    return Risk(
        asset="BTC-USD",
        model=model,
        model_version=version,
        level=level,
        as_of=datetime(2025, 12, 1, tzinfo=UTC),
        last_close=100.0,
        last_date=ORIGIN,
        data_age_seconds=0.0,
        stale=False,
        points=points,
    )


def store(engine: Engine, *candles: Candle) -> None:
    """Write candles as an ingest would."""
    with write_session(engine) as session:
        repo.upsert_candles(
            session=session, asset="BTC-USD", candles=list(candles), source="csv",
            mode="overwrite", now=NOW,
        )  # fmt: skip


def candle(day: date, open_: float, high: float, low: float, close: float) -> Candle:
    """One daily candle."""
    return Candle(utc_day(day), open_, high, low, close, 10.0)


def record(engine: Engine, served: Risk, p_up: list[float | None]) -> int:
    """Record a served risk forecast with the price version 3's p_up per point."""
    rows = ledger.risk_entry_rows(served, price_version=3, p_up=p_up, now=NOW)
    return ledger.record_risk_rows(engine, rows)


def test_only_90_percent_risk_forecasts_are_recorded_once(engine: Engine) -> None:
    with pytest.raises(ValueError, match="90% range intervals"):
        ledger.risk_entry_rows(risk(level=80), price_version=None, p_up=[], now=NOW)
    assert record(engine, risk(), [0.6, 0.4]) == 2
    assert record(engine, risk(), [0.6, 0.4]) == 0  # a repeat: same version, as_of, horizon
    rows = ledger.list_risk_predictions(engine, asset="BTC-USD")
    assert [(r.horizon, r.price_version, r.p_up, r.var_95) for r in rows] == [
        (2, 3, 0.4, None),
        (1, 3, 0.6, 2.5),
    ]


def test_risk_entries_are_scored_against_hand_computed_outcomes(engine: Engine) -> None:
    record(engine, risk(), [0.6, 0.4])
    assert ledger.score_risk_ledger(engine, "BTC-USD", now=NOW) == 0  # no candles yet
    # Day 1 alone: its range needs the origin's close too.
    store(engine, candle(date(2025, 12, 1), 100.0, 104.0, 98.0, 97.0))
    assert ledger.score_risk_ledger(engine, "BTC-USD", now=NOW) == 0
    store(engine, candle(ORIGIN, 99.0, 101.0, 98.0, 100.0))
    later = NOW + timedelta(hours=1)
    assert ledger.score_risk_ledger(engine, "BTC-USD", now=later) == 1
    store(engine, candle(date(2025, 12, 2), 97.0, 100.0, 97.0, 101.0))
    assert ledger.score_risk_ledger(engine, "BTC-USD", now=later) == 1
    assert ledger.score_risk_ledger(engine, "BTC-USD", now=later) == 0  # nothing left
    two, one = ledger.list_risk_predictions(engine, asset="BTC-USD")
    # Day 1: range (104 − 98) / 100 = 6%; forecast 5 (error 1), naive 4 (error 2); outside
    # [3, 5.5]; loss (1 − 97/100) = 3% > VaR 95 of 2.5, not > VaR 99 of 4; went down.
    assert one.actual_range_pct == pytest.approx(6.0)
    assert one.abs_error == pytest.approx(1.0) and one.naive_abs_error == pytest.approx(2.0)
    assert one.inside is False and one.loss_pct == pytest.approx(3.0)
    assert (one.var_95_violated, one.var_99_violated, one.went_up) == (True, False, False)
    assert one.scored_at == later
    # Day 2: range (100 − 97) / 97 (day 1's close, not the origin's); inside [2, 6]; a gain
    # of 1% is a loss of −1; no VaR was served, so no violation either way; went up.
    assert two.actual_range_pct == pytest.approx(300 / 97)
    assert two.abs_error == pytest.approx(abs(3.5 - 300 / 97))
    assert two.naive_abs_error == pytest.approx(abs(4.0 - 300 / 97))
    assert two.inside is True and two.loss_pct == pytest.approx(-1.0)
    assert (two.var_95_violated, two.var_99_violated, two.went_up) == (None, None, True)


def test_live_statistics_for_monitoring(engine: Engine) -> None:
    # Two risk models served the same day with one price forecast: their ranges count per
    # model, the VaR and p_up they share count once.
    record(engine, risk(), [0.6, 0.4])
    record(engine, risk(model="ewma-vol", version=8), [0.6, 0.4])
    store(
        engine,
        candle(ORIGIN, 99.0, 101.0, 98.0, 100.0),
        candle(date(2025, 12, 1), 100.0, 104.0, 98.0, 97.0),
        candle(date(2025, 12, 2), 97.0, 100.0, 97.0, 101.0),
    )
    assert ledger.score_risk_ledger(engine, "BTC-USD", now=NOW) == 4
    end = date(2025, 12, 2)
    live = ledger.risk_live(engine, asset="BTC-USD", end=end)
    assert live.scored == 4 == ledger.risk_scored_count(engine, asset="BTC-USD")
    ranges = {(r.horizon, r.model): r for r in live.ranges}
    assert set(ranges) == {(1, "har"), (1, "ewma-vol"), (2, "har"), (2, "ewma-vol")}
    assert ranges[1, "har"].n == 1 and ranges[1, "har"].mae == pytest.approx(1.0)
    assert ranges[1, "har"].naive_mae == pytest.approx(2.0) and ranges[1, "har"].coverage == 0
    assert ranges[2, "har"].coverage == 1
    assert live.ranges == ledger.risk_range_window(engine, asset="BTC-USD", end=end)
    # One next-day VaR forecast (one day, one price version): violated at 95, not at 99.
    assert [(v.level, v.n, v.violations, v.ratio) for v in live.var] == [
        (95, 1, 1, 1.0),
        (99, 1, 0, 0.0),
    ]
    assert live.var == ledger.var_violations(engine, asset="BTC-USD")
    # p_up 0.6 on a down day and 0.4 on an up day: Brier 0.36 each.
    stats = [(d.horizon, d.n, d.brier, d.up_rate, d.mean_p_up) for d in live.direction]
    assert stats == [
        (1, 1, pytest.approx(0.36), 0.0, pytest.approx(0.6)),
        (2, 1, pytest.approx(0.36), 1.0, pytest.approx(0.4)),
    ]
    # Outside the window: nothing.
    before = ledger.risk_live(engine, asset="BTC-USD", end=date(2025, 11, 30))
    assert before.ranges == [] and before.direction == [] and before.scored == 4


def test_var_violations_keep_the_newest_scored_days(engine: Engine) -> None:
    days = [date(2025, 11, 1) + timedelta(days=k) for k in range(12)]
    rows = []
    for k, day in enumerate(days[1:], start=1):
        served = risk().model_copy(
            update={
                "as_of": utc_day(day),
                "last_date": days[k - 1],
                "points": [risk().points[0].model_copy(update={"target_date": day})],
            }
        )
        rows += ledger.risk_entry_rows(served, price_version=3, p_up=[None], now=NOW)
    ledger.record_risk_rows(engine, rows)
    # Closes alternate 100 / 96.5: every fall is a 3.5% loss (> VaR 95 of 2.5, not > 4).
    store(
        engine,
        *(candle(d, 100.0, 101.0, 95.0, 100.0 if k % 2 else 96.5) for k, d in enumerate(days)),
    )
    assert ledger.score_risk_ledger(engine, "BTC-USD", now=NOW) == 11
    newest = ledger.var_violations(engine, asset="BTC-USD", last=4)
    assert [(v.n, v.violations) for v in newest] == [(4, 2), (4, 0)]
    assert ledger.direction_window(engine, asset="BTC-USD", end=days[-1]) == []  # no p_up
