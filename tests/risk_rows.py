"""Test helpers: scored risk ledger rows and stored interval scores, inserted directly."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import Engine

from btc_predictor.storage.db import write_session
from btc_predictor.storage.tables import IntervalScoreRow, RiskPredictionRow
from tests.conftest import NOW
from tests.factories import TODAY


def risk_scored(
    day: date,
    *,
    range_pct: float,
    actual: float,
    naive: float,
    loss: float = -1.0,
    var_95: float | None = 3.0,
    var_99: float | None = 5.0,
    version: int = 2,
    horizon: int = 1,
    model: str = "har",
    asset: str = "BTC-USD",
) -> RiskPredictionRow:
    """A risk ledger entry for ``day``, scored: realised range ``actual``, loss ``loss`` %."""
    made = datetime.combine(day - timedelta(days=horizon), datetime.min.time(), NOW.tzinfo)
    return RiskPredictionRow(
        asset=asset,
        model=model,
        model_version=version,
        price_version=1,
        as_of=made,
        horizon=horizon,
        target_date=day,
        last_close=100.0,
        level=90,
        volatility=range_pct / 2,
        range_pct=range_pct,
        range_lower_pct=range_pct / 2,
        range_upper_pct=range_pct * 2,
        naive_range_pct=naive,
        var_95=var_95,
        var_99=var_99,
        p_up=0.5,
        created_at=made,
        actual_range_pct=actual,
        abs_error=abs(range_pct - actual),
        naive_abs_error=abs(naive - actual),
        inside=range_pct / 2 <= actual <= range_pct * 2,
        loss_pct=loss,
        var_95_violated=None if var_95 is None else loss > var_95,
        var_99_violated=None if var_99 is None else loss > var_99,
        went_up=loss < 0,
        scored_at=made + timedelta(days=horizon),
    )


def fill_risk_ledger(
    engine: Engine,
    days: int,
    *,
    range_pct: float = 4.0,
    actual: float = 4.5,
    naive: float = 5.5,
    end: date = TODAY,
    version: int = 2,
    violate_95_every: int = 0,
    violate_99_every: int = 0,
    horizon: int = 1,
) -> None:
    """``days`` consecutive scored risk forecasts ending at ``end``; every
    ``violate_*_every``-th day's loss breaks that VaR (0: never)."""

    def loss(k: int) -> float:
        if violate_99_every and k % violate_99_every == 0:
            return 6.0  # beyond VaR 99 (5 %) and VaR 95 (3 %)
        if violate_95_every and k % violate_95_every == 0:
            return 4.0  # beyond VaR 95 only
        return -1.0

    with write_session(engine) as session:
        session.add_all(
            risk_scored(
                end - timedelta(days=k),
                range_pct=range_pct,
                actual=actual,
                naive=naive,
                loss=loss(k),
                version=version,
                horizon=horizon,
            )
            for k in range(days)
        )


def fill_interval_scores(
    engine: Engine, scores: list[float], *, price_version: int = 1, horizon: int = 1
) -> None:
    """Scored interval rows of one price version, one per origin day ending before TODAY."""
    first = TODAY - timedelta(days=len(scores) + horizon)
    with write_session(engine) as session:
        session.add_all(
            IntervalScoreRow(
                asset="BTC-USD",
                price_version=price_version,
                risk_version=2,
                horizon=horizon,
                origin_date=first + timedelta(days=i),
                target_date=first + timedelta(days=i + horizon),
                last_close=100.0,
                forecast=100.0,
                sigma=0.03,
                actual=100.0,
                score=score,
                created_at=NOW,
                scored_at=NOW,
            )
            for i, score in enumerate(scores)
        )
