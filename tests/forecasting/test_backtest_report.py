"""The backtest report: series rows, metrics per horizon and the JSON shape."""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np

from btc_predictor.forecasting.backtest import backtest
from btc_predictor.forecasting.backtest_intervals import IntervalTable
from btc_predictor.forecasting.backtest_report import FoldInfo, assemble
from btc_predictor.forecasting.executors import SerialExecutor


def random_walk(n: int, seed: int = 0) -> np.ndarray:
    """Synthetic daily closes: a geometric random walk around 30k."""
    rng = np.random.default_rng(seed)
    return 30_000.0 * np.exp(np.cumsum(rng.normal(0.001, 0.02, n)))


def test_assemble_keeps_only_realised_cells_sorted_by_origin_then_h() -> None:
    y = np.array([10.0, 11.0, 12.0, 13.0, 14.0])
    origins = np.array([2, 3], dtype=np.int64)
    forecasts = np.array([[12.5, 13.5], [13.5, 14.5]])  # [n_origins, H]
    lower, upper = np.full((2, 2), np.nan), np.full((2, 2), np.nan)
    lower[1], upper[1] = forecasts[1] - 1, forecasts[1] + 1
    folds = [FoldInfo(index=0, train_end=3, first_origin=2, last_origin=3, burn_in=False)]
    nan = np.full((2, 2), np.nan)
    table = IntervalTable(lower, upper, nan, nan, nan, burn_in=[False])
    result = assemble(y, "drift", 90, 2, folds, origins, forecasts, table)
    # origin 3 at h=2 targets index 5, past the series: no row
    assert result.series_origin.tolist() == [2, 2, 3]
    assert result.series_h.tolist() == [1, 2, 1]
    assert result.series_target.tolist() == [3, 4, 4]
    assert result.series_actual.tolist() == [13.0, 14.0, 14.0]
    assert result.series_naive.tolist() == [12.0, 12.0, 13.0]
    assert (result.start, result.end) == (3, 4)
    h1, h2 = result.horizons
    assert (h1.n, h1.n_intervals, h1.coverage) == (2, 1, 1.0)
    assert (h2.n, h2.n_intervals, h2.coverage) == (1, 0, None)


def test_horizon_metrics_compare_with_naive_on_the_same_days() -> None:
    y = random_walk(200, seed=6)
    result = backtest(y, model="naive", max_horizon=3, refit_every=10, executor=SerialExecutor())
    for hm in result.horizons:
        assert hm.mase == 1.0 and hm.mae == hm.naive_mae and hm.dm_pvalue == 1.0
        assert hm.directional_accuracy is None
        assert hm.n == 40 - hm.h + 1


def test_to_json_shape_and_date_mapping() -> None:
    y = random_walk(130, seed=7)
    dates = [(date(2024, 1, 1) + timedelta(days=i)).isoformat() for i in range(len(y))]
    result = backtest(
        y, model="drift", start=100, refit_every=10, max_horizon=3, executor=SerialExecutor()
    )
    out = json.loads(json.dumps(result.to_json(dates, asset="BTC-USD")))
    assert {"asset", "model", "start", "end", "folds", "horizons", "series"} <= set(out)
    assert (out["asset"], out["model"], out["folds"]) == ("BTC-USD", "drift", 3)
    assert (out["start"], out["end"]) == (dates[100], dates[129])
    assert set(out["horizons"][0]) >= {
        "h",
        "n",
        "mae",
        "rmse",
        "mape",
        "mase",
        "directional_accuracy",
        "coverage",
        "interval_width",
        "naive_mae",
        "dm_pvalue",
        "winkler",
        "worst_90d_coverage",
        "coverage_by_vol_tercile",
        "var",
        "brier",
        "brier_skill",
        "calibration_error",
    }
    first = out["series"][0]
    assert set(first) == {
        "origin",
        "target_date",
        "h",
        "actual",
        "forecast",
        "lower",
        "upper",
        "naive",
        "p_up",
        "var_95",
        "var_99",
    }
    assert (out["interval_method"], out["risk_model"]) == ("static", None)
    assert (first["origin"], first["target_date"], first["h"]) == (dates[99], dates[100], 1)
    assert first["actual"] == y[100] and first["naive"] == y[99] and first["lower"] is None
    assert len(out["series"]) == 30 + 29 + 28
