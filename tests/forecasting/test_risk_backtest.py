"""Walk-forward risk backtest: folds, metrics per horizon, garch comparison, JSON shape."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from btc_predictor.errors import ModelNotFoundError
from btc_predictor.forecasting import metrics, registry
from btc_predictor.forecasting.risk.backtest import RiskBacktestResult, risk_backtest
from tests.forecasting.risk_data import synthetic_ohlc

DATA = synthetic_ohlc(600, seed=5)
H = 3
HORIZON_KEYS = {
    "h", "n", "mase", "range_mae", "naive_range_mae", "qlike", "qlike_garch",
    "dm_pvalue", "dm_pvalue_garch", "coverage", "interval_width", "winkler",
}  # fmt: skip
SERIES_KEYS = {
    "origin", "target_date", "h", "actual", "forecast", "lower", "upper", "naive", "volatility"
}  # fmt: skip


@functools.cache
def run(model: str) -> RiskBacktestResult:
    return risk_backtest(DATA, model=model, start=200, refit_every=50, max_horizon=H)


def test_folds_refit_on_earlier_days_only() -> None:
    result = run("har")
    assert [f.train_end for f in result.folds] == list(range(200, 600, 50))
    assert result.start == 200 and result.end == 599
    for h in range(1, H + 1):
        assert result.horizon(h).n == 400 - h + 1


def test_metrics_per_horizon_match_the_series() -> None:
    result = run("har")
    s = result.series
    rows = s["h"] == 1
    m = result.horizon(1)
    assert m.mase == pytest.approx(
        metrics.range_mase(s["actual"][rows], s["forecast"][rows], s["naive"][rows])
    )
    np.testing.assert_array_equal(s["actual"][rows], DATA.range_pct()[s["target"][rows]])
    np.testing.assert_array_equal(s["naive"][rows], DATA.range_pct()[s["origin"][rows]])
    assert m.mase is not None and m.mase < 0.9 and m.dm_pvalue is not None and m.dm_pvalue < 0.05
    assert m.qlike is not None and m.qlike_garch is not None and m.dm_pvalue_garch is not None
    assert 0.8 <= m.coverage <= 0.97  # type: ignore[operator]
    assert m.winkler is not None and m.interval_width is not None and m.winkler >= m.interval_width


def test_garch_is_refitted_in_the_same_folds() -> None:
    """qlike_garch of any model equals garch's own qlike in the same walk-forward."""
    har, garch = run("har"), run("garch")
    for h in range(1, H + 1):
        assert har.horizon(h).qlike_garch == pytest.approx(garch.horizon(h).qlike, rel=1e-12)
        assert garch.horizon(h).dm_pvalue_garch == 1.0  # garch against itself


def test_intervals_use_only_earlier_residuals() -> None:
    """The first fold has no earlier residuals: burn-in, no bounds; later folds have bounds."""
    result = run("ewma-vol")
    assert result.folds[0].burn_in and not result.folds[-1].burn_in
    s = result.series
    first_fold = s["origin"] < 249
    assert np.all(np.isnan(s["lower"][first_fold]))
    assert np.all(s["lower"][~first_fold] > 0)
    # truncating the data after a fold leaves that fold's bounds unchanged
    short = risk_backtest(
        DATA.head(450), model="ewma-vol", start=200, refit_every=50, max_horizon=H
    )
    keep = s["origin"] < 399
    np.testing.assert_array_equal(
        short.series["lower"][short.series["origin"] < 399], s["lower"][keep]
    )


def test_json_shape() -> None:
    dates = [f"d{i}" for i in range(len(DATA))]
    doc = run("naive-range").to_json(dates, asset="BTC-USD")
    assert doc["family"] == "risk" and doc["model"] == "naive-range"
    assert {"asset", "level", "refit_every", "start", "end", "folds", "burn_in_folds"} <= set(doc)
    assert set(doc["horizons"][0]) == HORIZON_KEYS
    assert set(doc["series"][0]) == SERIES_KEYS
    assert doc["series"][0]["lower"] is None  # burn-in: no interval
    assert doc["horizons"][0]["mase"] == 1.0


def test_unknown_model_is_refused_before_fitting() -> None:
    with pytest.raises(ModelNotFoundError, match="valid risk models"):
        risk_backtest(DATA, model="lstm", start=200)
    assert registry.model_family("lstm") == "price"
