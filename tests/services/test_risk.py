"""The risk use case's joins: VaR 95/99 and p_up read per horizon from the price version's
forecast points (null where it has none), and placed on the risk points and ledger rows."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np

from btc_predictor.config import Settings
from btc_predictor.forecasting.paths import HalfWidths
from btc_predictor.forecasting.risk.ewma import EwmaVol
from btc_predictor.forecasting.risk.paths import RiskPath
from btc_predictor.services import ledger
from btc_predictor.services.risk import NO_PRICE, LoadedRisk, PriceRisk, RiskRun, price_risk
from tests.conftest import NOW

LAST = datetime(2025, 11, 29, tzinfo=UTC)


def run_with(price: PriceRisk) -> RiskRun:
    """A three-horizon risk run (ranges 2, 3, 4 %) from a close of 50,000."""
    widths = HalfWidths([np.linspace(-0.5, 0.5, 200)] * 3)
    path = RiskPath(np.array([0.01, 0.02, 0.03]), np.array([2.0, 3.0, 4.0]), 1.5, 50_000.0, widths)
    loaded = LoadedRisk(4, "har", EwmaVol(max_horizon=3), widths, "BTC-USD", date(2018, 1, 1))
    return RiskRun("BTC-USD", loaded, LAST, 9, path, price.version, price)


def test_var_and_p_up_are_read_from_the_price_points() -> None:
    points = [
        {"horizon": 1, "value": 1.0, "var_95": 2.5, "var_99": 4.0, "p_up": 0.52},
        {"horizon": 2, "value": 1.0, "var_95": None, "var_99": float("nan"), "p_up": True},
        {"horizon": 3, "value": 1.0},  # a price forecast that carries none (before issue 16)
    ]
    found = price_risk(7, points)
    assert found.version == 7
    assert [found.at(h) for h in (1, 2, 3, 4)] == [
        (2.5, 4.0, 0.52),
        (None, None, None),  # null, NaN and a bool are not numbers
        (None, None, None),
        (None, None, None),  # beyond the price forecast's horizons
    ]
    assert NO_PRICE.at(1) == (None, None, None) and NO_PRICE.version is None


def test_risk_points_and_ledger_rows_carry_the_price_versions_numbers() -> None:
    price = price_risk(7, [{"var_95": 2.5, "var_99": 4.0, "p_up": 0.52}])  # one day only
    run = run_with(price)
    served = run.risk(Settings(), 3, 90, now=NOW)
    assert [(p.var_95, p.var_99) for p in served.points] == [(2.5, 4.0), (None, None), (None, None)]
    assert [p.range_price for p in served.points] == [1000.0, 1500.0, 2000.0]
    assert {p.naive_range_pct for p in served.points} == {1.5}
    rows = ledger.risk_entry_rows(served, price_version=7, p_up=run.p_up(3), now=NOW)
    assert [(r["p_up"], r["price_version"], r["var_95"]) for r in rows] == [
        (0.52, 7, 2.5),
        (None, 7, None),
        (None, 7, None),
    ]
    assert run.key == (4, LAST, 9, 7)
    assert run_with(NO_PRICE).risk(Settings(), 1, 90, now=NOW).points[0].var_95 is None
