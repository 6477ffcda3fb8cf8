"""The backtest report: series rows, metrics per horizon and the JSON shape."""

from __future__ import annotations

import json
import math
from datetime import date, timedelta

import numpy as np
import pytest

from btc_predictor.forecasting.backtest import backtest
from btc_predictor.forecasting.backtest_intervals import IntervalTable
from btc_predictor.forecasting.backtest_report import FoldInfo, assemble, realised_volatility
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


def hand_table(lower: list[float], upper: list[float], **columns: list[float]) -> IntervalTable:
    """An IntervalTable ``[n, 1]`` from per-row values (missing columns: NaN)."""
    n = len(lower)

    def col(values: list[float] | None) -> np.ndarray:
        return np.full((n, 1), np.nan) if values is None else np.array(values, float)[:, None]

    return IntervalTable(
        col(lower),
        col(upper),
        col(columns.get("var_95")),
        col(columns.get("var_99")),
        col(columns.get("p_up")),
        burn_in=[False],
    )


def test_interval_var_and_p_up_metrics_on_a_hand_checked_case() -> None:
    # origins 0, 2, 4 all close at 100; targets 1, 3, 5 close at 110, 95, 120
    y = np.array([100.0, 110.0, 100.0, 95.0, 100.0, 120.0])
    origins = np.array([0, 2, 4], dtype=np.int64)
    table = hand_table(
        [90.0, 92.0, 90.0],
        [105.0, 108.0, 130.0],
        var_95=[4.0, 4.0, 4.0],  # losses are -10, 5, -20 (%): only the middle day violates
        var_99=[math.nan, 3.0, math.nan],
        p_up=[0.6, 0.4, 0.5],  # the moves were up, down, up
    )
    folds = [FoldInfo(index=0, train_end=1, first_origin=0, last_origin=4, burn_in=False)]
    [h1] = assemble(y, "naive", 90, 5, folds, origins, y[origins, None], table).horizons
    # Winkler (α = 0.1, 2/α = 20): 15 + 20·5, 16, 40 (in % of the origin close 100)
    assert h1.winkler == pytest.approx((115 + 16 + 40) / 3)
    assert h1.worst_90d_coverage is None  # fewer than 90 rows
    assert h1.coverage_by_vol_tercile == {"low": None, "mid": None, "high": None}  # < 30 returns
    assert h1.var is not None
    v95, v99 = h1.var["95"], h1.var["99"]
    assert v95["rate"] == pytest.approx(1 / 3)
    # Kupiec: 2·[ln((2/3)²(1/3)) − ln(0.95²·0.05)]; p = P(χ²₁ > LR) = erfc(√(LR/2))
    lr = 2 * (math.log((2 / 3) ** 2 / 3) - math.log(0.95**2 * 0.05))
    assert v95["kupiec_p"] == pytest.approx(math.erfc(math.sqrt(lr / 2)))
    # transitions 0→1, 1→0: π01 = 1, π11 = 0 against π = 1/2, LR = 4 ln 2
    assert v95["christoffersen_p"] == pytest.approx(math.erfc(math.sqrt(2 * math.log(2))))
    assert v99["rate"] == 1.0 and v99["christoffersen_p"] is None  # one day with a VaR 99
    assert v99["kupiec_p"] == pytest.approx(math.erfc(math.sqrt(-math.log(0.01))))
    assert h1.brier == pytest.approx((0.4**2 + 0.4**2 + 0.5**2) / 3)
    assert h1.brier_skill == pytest.approx(1 - 0.19 / 0.25)
    assert h1.calibration_error == pytest.approx((0.4 + 0.4 + 0.5) / 3)


def test_worst_window_and_volatility_terciles_over_consecutive_origins() -> None:
    # |log return| 0.01 on days 1..60, then 0.03: realised volatility = 0.01, then 0.03
    steps = np.where(np.arange(1, 200) <= 60, 0.01, 0.03) * np.resize([1.0, -1.0], 199)
    y = 100 * np.exp(np.concatenate([[0.0], np.cumsum(steps)]))
    vol = realised_volatility(y)
    assert np.isnan(vol[:30]).all() and np.allclose(vol[30:61], 0.01)
    assert np.allclose(vol[90:], 0.03)
    origins = np.arange(100, 199, dtype=np.int64)  # targets 101..199, all at σ 0.03
    inside = np.ones(origins.size, bool)
    inside[10:20] = False  # ten misses: the worst 90 consecutive origins cover 80/90
    lower = np.where(inside, y[origins + 1] - 1, y[origins + 1] + 1)
    table = hand_table(list(lower), list(y[origins + 1] + 2))
    folds = [FoldInfo(index=0, train_end=101, first_origin=100, last_origin=198, burn_in=False)]
    [h1] = assemble(y, "naive", 90, 99, folds, origins, y[origins, None], table).horizons
    assert h1.worst_90d_coverage == pytest.approx(80 / 90)
    assert h1.coverage == pytest.approx(89 / 99)
    assert h1.var == {
        level: {"rate": None, "kupiec_p": None, "christoffersen_p": None} for level in ("95", "99")
    }
    assert h1.brier is None  # no p_up in this table


def test_var_and_p_up_scores_are_reported_at_h1_only() -> None:
    y = random_walk(400, seed=8)
    result = backtest(y, model="drift", start=200, max_horizon=3, executor=SerialExecutor())
    h1, h2, _ = result.horizons
    assert h1.var is not None and h1.var["95"]["rate"] is not None and h1.brier is not None
    assert (h2.var, h2.brier, h2.brier_skill, h2.calibration_error) == (None,) * 4
    assert h2.winkler is not None and h2.worst_90d_coverage is not None
