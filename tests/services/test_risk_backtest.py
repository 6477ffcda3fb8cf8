"""Risk backtests through the backtest use case: stored candles in, the risk report out."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine

from btc_predictor.config import Settings
from btc_predictor.errors import NotEnoughDataError
from btc_predictor.services.backtest import run_backtest
from btc_predictor.services.ingest import ingest
from btc_predictor.services.risk_training import risk_data
from btc_predictor.services.training_common import load_window
from btc_predictor.shapes.requests import BacktestRequest, IngestRequest
from btc_predictor.shapes.results import BacktestReport
from btc_predictor.shapes.risk_results import RiskBacktestReport
from tests.conftest import NOW

HORIZON_KEYS = {
    "h", "n", "mase", "range_mae", "naive_range_mae", "qlike", "qlike_garch",
    "dm_pvalue", "dm_pvalue_garch", "coverage", "interval_width", "winkler",
}  # fmt: skip


@pytest.fixture
def quick(settings: Settings) -> Settings:
    """BTC from 2022 (~1,400 days), so a walk-forward stays quick."""
    return settings.model_copy(update={"train_start": date(2022, 1, 1)})


@pytest.fixture
def btc(quick: Settings, engine: Engine, shared_data: Path) -> Engine:
    request = IngestRequest(asset="BTC-USD", path=shared_data / "Bitstamp_BTCUSD_d.csv")
    ingest(quick, engine, request, now=NOW)
    return engine


def test_har_backtest_reports_ranges_against_naive_range_and_garch(
    quick: Settings, btc: Engine
) -> None:
    request = BacktestRequest(model="har", days=200, horizon=3, refit_every=30)
    report = run_backtest(quick, btc, request)
    assert isinstance(report, RiskBacktestReport)
    assert (report.family, report.model, report.asset) == ("risk", "har", "BTC-USD")
    assert [h.h for h in report.horizons] == [1, 2, 3]
    assert set(report.horizons[0].model_dump()) == HORIZON_KEYS
    h1 = report.horizons[0]
    assert h1.n == 200 and h1.mase is not None and h1.mase < 0.95
    assert h1.qlike is not None and h1.qlike_garch is not None
    # the rows are the stored candles' ranges: (high − low) / previous close · 100
    data = risk_data("BTC-USD", load_window(btc, "BTC-USD", quick.train_start))
    ranges = data.ohlc.range_pct()
    rows = [r for r in report.series if r.h == 1]
    assert rows[-1].target_date == data.days[-1]
    np.testing.assert_allclose([r.actual for r in rows], ranges[-200:])
    np.testing.assert_allclose([r.naive for r in rows], ranges[-201:-1])
    assert all(0 < r.volatility < 0.3 for r in rows)
    dumped = report.model_dump(mode="json")
    assert dumped["family"] == "risk" and set(dumped["series"][0]) == {
        "origin", "target_date", "h", "actual", "forecast", "lower", "upper", "naive",
        "volatility",
    }  # fmt: skip


def test_price_backtests_are_unchanged(quick: Settings, btc: Engine) -> None:
    report = run_backtest(quick, btc, BacktestRequest(model="naive", days=40, horizon=2))
    assert isinstance(report, BacktestReport) and "family" not in report.model_dump()


def test_too_little_history_for_the_first_fold_is_refused(quick: Settings, btc: Engine) -> None:
    """har needs 22 + 60 + H training days before its first fold."""
    start = quick.model_copy(update={"train_start": date(2025, 8, 1)})
    with pytest.raises(NotEnoughDataError, match="har: need at least"):
        run_backtest(start, btc, BacktestRequest(model="har", days=90, horizon=2))
