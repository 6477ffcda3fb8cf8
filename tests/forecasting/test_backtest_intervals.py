"""Backtest intervals: static reproduces plain split conformal, adaptive never looks ahead."""

from __future__ import annotations

import numpy as np
import pytest

from btc_predictor.errors import InvalidInputError, ModelNotFoundError
from btc_predictor.forecasting import backtest_intervals as bi
from btc_predictor.forecasting import interval_choice, intervals, metrics
from btc_predictor.forecasting.adaptive import Predictive, direction_weight, predictive_grid
from btc_predictor.forecasting.backtest import backtest
from btc_predictor.forecasting.backtest_intervals import risk_sigma
from btc_predictor.forecasting.backtest_report import BacktestResult
from btc_predictor.forecasting.executors import SerialExecutor
from btc_predictor.forecasting.registry import create_risk_model
from btc_predictor.forecasting.risk import OHLC
from tests.forecasting.risk_data import synthetic_ohlc

N, START, REFIT, H = 480, 200, 30, 3


def run(candles: OHLC, method: str = "adaptive", **kwargs: object) -> BacktestResult:
    """A drift backtest over the candles' closes with the given interval method."""
    return backtest(
        candles.close,
        model="drift",
        start=START,
        refit_every=REFIT,
        max_horizon=H,
        executor=SerialExecutor(),
        intervals=method,  # type: ignore[arg-type]
        candles=candles if method == "adaptive" else None,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def candles() -> OHLC:
    return synthetic_ohlc(N, seed=3)


@pytest.fixture(scope="module")
def adaptive(candles: OHLC) -> BacktestResult:
    return run(candles)


def test_static_bounds_are_split_conformal_on_residuals_realised_before_each_fold(
    candles: OHLC,
) -> None:
    """The pre-issue-16 backtest, recomputed independently for every fold, row and horizon."""
    result = run(candles, "static")
    assert result.interval_method == "static" and result.risk_model is None
    log_res = np.log(result.series_actual) - np.log(result.series_forecast)
    checked = 0
    for fold in result.folds:
        inside = (result.series_origin >= fold.first_origin) & (
            result.series_origin <= fold.last_origin
        )
        recent = {
            h: intervals.recent_residuals(
                log_res[(result.series_h == h) & (result.series_origin + h <= fold.first_origin)]
            )
            for h in range(1, H + 1)
        }
        if not all(intervals.has_enough_residuals(r, 90) for r in recent.values()):
            assert fold.burn_in and np.isnan(result.series_lower[inside]).all()
            continue
        for h, residuals in recent.items():
            rows = inside & (result.series_h == h)
            q, forecast = intervals.conformal_quantile(residuals, 90), result.series_forecast[rows]
            assert np.array_equal(result.series_lower[rows], forecast * np.exp(-q))
            assert np.array_equal(result.series_upper[rows], forecast * np.exp(q))
            checked += int(rows.sum())
    assert checked > 500


def test_static_var_and_p_up_read_the_same_distribution(candles: OHLC) -> None:
    result = run(candles, "static")
    rows = ~np.isnan(result.series_var_95)
    assert rows.sum() > 100
    origin = result.series_naive[rows]
    # VaR 95 is the 90% interval's lower bound as a loss in % of the origin close
    expected = (1 - result.series_lower[rows] / origin) * 100
    assert np.allclose(result.series_var_95[rows], expected, rtol=0, atol=1e-9)
    assert np.all(result.series_var_99[rows] > result.series_var_95[rows])
    up, p_up = result.series_forecast[rows] > origin, result.series_p_up[rows]
    # p_up never points against the forecast; it leaves 0.5 only as far as skill allows
    assert np.all(np.where(up, p_up >= 0.5, p_up <= 0.5))


def test_static_var_and_p_up_equal_the_predictive_of_each_folds_residuals(candles: OHLC) -> None:
    """Cell by cell: Predictive on the |r| order statistics realised by the fold's start."""
    result, h = run(candles, "static"), 2
    log_res = np.log(result.series_actual) - np.log(result.series_forecast)
    grid = predictive_grid([90])
    fold = next(f for f in result.folds if f.first_origin - START >= 99 + h)
    past = (result.series_h == h) & (result.series_origin + h <= fold.first_origin)
    recent = np.sort(np.abs(intervals.recent_residuals(log_res[past])))
    q = recent[np.ceil((recent.size + 1) * grid - 1e-9).astype(int) - 1]
    rows = np.flatnonzero(
        (result.series_h == h)
        & (result.series_origin >= fold.first_origin)
        & (result.series_origin <= fold.last_origin)
    )
    weight = fold_weight(result, fold.first_origin)
    for i in rows:
        dist = Predictive(result.series_naive[i], result.series_forecast[i], 1.0, grid, q)
        got = (result.series_var_95[i], result.series_var_99[i], result.series_p_up[i])
        want = (dist.var(0.95), dist.var(0.99), dist.p_up(weight))
        assert got == pytest.approx(want, rel=1e-12)
    # drift on a random walk ties naive: no evidence of skill, so p_up stays at 0.5
    assert rows.size == REFIT and weight == 0.0 and np.all(result.series_p_up[rows] == 0.5)
    assert np.all(result.series_forecast[rows] != result.series_naive[rows])  # not a tie by value


def fold_weight(result: BacktestResult, first_origin: int) -> float:
    """direction_weight from the h=1 errors realised by ``first_origin`` (recomputed here)."""
    seen = (result.series_h == 1) & (result.series_origin + 1 <= first_origin)
    model = np.abs(result.series_forecast[seen] - result.series_actual[seen])
    naive = np.abs(result.series_naive[seen] - result.series_actual[seen])
    dm = metrics.diebold_mariano(model, naive, h=1)
    return direction_weight(None if dm is None else dm.pvalue, model.mean() / naive.mean())


def test_adaptive_intervals_ignore_every_later_day(candles: OHLC, adaptive: BacktestResult) -> None:
    """Truncating the data at day t leaves every interval, VaR and p_up up to t unchanged."""
    t = 420
    cut = run(candles.head(t + 1))
    full = adaptive.series_target <= t  # the cells the truncated run can score
    columns = ("origin", "h", "lower", "upper", "var_95", "var_99", "p_up")
    for name in columns:
        got = getattr(cut, f"series_{name}")
        want = getattr(adaptive, f"series_{name}")[full]
        assert np.array_equal(got, want, equal_nan=True), name
    assert np.isfinite(cut.series_lower).sum() > 150  # the comparison is not all burn-in


def test_adaptive_intervals_ignore_a_changed_future(
    candles: OHLC, adaptive: BacktestResult
) -> None:
    """Other candles after day t: every origin up to t keeps its interval, VaR and p_up."""
    t, other = 400, synthetic_ohlc(N, seed=11)
    scale = candles.close[t] / other.open[t + 1]
    columns = [
        np.concatenate([getattr(candles, k)[: t + 1], getattr(other, k)[t + 1 :] * scale])
        for k in ("open", "high", "low", "close")
    ]
    changed = run(OHLC.from_arrays(*columns, candles.day))
    assert not np.array_equal(changed.series_actual, adaptive.series_actual)
    rows = adaptive.series_origin <= t
    for name in ("lower", "upper", "var_95", "var_99", "p_up"):
        got = getattr(changed, f"series_{name}")[rows]
        assert np.array_equal(got, getattr(adaptive, f"series_{name}")[rows], equal_nan=True)
    assert np.isfinite(adaptive.series_lower[rows]).sum() > 150


def test_adaptive_sigma_is_the_risk_model_refit_in_each_fold(candles: OHLC) -> None:
    sigma = risk_sigma(candles, model="har", start=START, refit_every=REFIT, max_horizon=H)
    for index, train_end in enumerate((START, START + REFIT, START + 5 * REFIT)):
        model = create_risk_model("har", max_horizon=H).fit(candles.head(train_end))
        origins = np.arange(train_end - 1, train_end - 1 + REFIT)
        variance = model.forecast_batch(candles.head(int(origins[-1]) + 1), origins).variance
        block = sigma[index * REFIT if index < 2 else 5 * REFIT :][:REFIT]
        # h-day σ̂: the one-day variances of days t+1..t+h add up
        assert np.allclose(block, np.sqrt(np.cumsum(variance, axis=1)), rtol=1e-12)


def test_adaptive_report_states_its_method_and_reads_one_distribution(
    adaptive: BacktestResult,
) -> None:
    assert (adaptive.interval_method, adaptive.risk_model) == ("adaptive", "har")
    rows = ~np.isnan(adaptive.series_lower)
    assert rows.sum() > 200
    origin = adaptive.series_naive[rows]
    expected = (1 - adaptive.series_lower[rows] / origin) * 100
    assert np.allclose(adaptive.series_var_95[rows], expected, rtol=0, atol=1e-9)
    # burn-in is per fold: a fold has an interval on every row or on none
    for fold in adaptive.folds:
        inside = (adaptive.series_origin >= fold.first_origin) & (
            adaptive.series_origin <= fold.last_origin
        )
        assert np.isnan(adaptive.series_lower[inside]).all() == fold.burn_in
        assert fold.burn_in or not np.isnan(adaptive.series_p_up[inside]).any()


def test_adaptive_burn_in_lasts_until_99_scores_are_realised(adaptive: BacktestResult) -> None:
    first = next(f for f in adaptive.folds if not f.burn_in)
    # origins 199.. score from row j + h; 99 scores at h=3 need origin >= 199 + 99 + 2
    assert first.first_origin >= START - 1 + 99 + H - 1
    assert first.first_origin - REFIT < START - 1 + 99 + H - 1


def test_folds_too_short_for_the_risk_model_are_burn_in_not_failures() -> None:
    candles = synthetic_ohlc(300, seed=5)
    result = backtest(
        candles.close,
        model="naive",
        start=60,  # har needs 22 + 60 + H training days: the first folds cannot fit it
        refit_every=REFIT,
        max_horizon=2,
        executor=SerialExecutor(),
        intervals="adaptive",
        candles=candles,
    )
    assert result.folds[0].burn_in and not result.folds[-1].burn_in


def test_adaptive_needs_the_backtested_candles(candles: OHLC) -> None:
    with pytest.raises(InvalidInputError, match="candles"):
        backtest(candles.close, model="naive", intervals="adaptive", executor=SerialExecutor())
    with pytest.raises(InvalidInputError, match="candles"):
        backtest(
            candles.close,
            model="naive",
            intervals="adaptive",
            candles=candles.head(N - 1),
            executor=SerialExecutor(),
        )
    with pytest.raises(ModelNotFoundError):
        run(candles, risk_model="prophet-vol")
    with pytest.raises(InvalidInputError, match="interval method"):
        run(candles, "conformal")


def test_adaptive_serves_static_bands_in_the_folds_where_they_scored_better() -> None:
    """σ̂ informative at h=1, pure noise at h=2: later folds serve static bands at h=2 only,
    each fold's choice made on the origins realised by its start, its cells static's own."""
    rng = np.random.default_rng(5)
    n, var, returns, true_sigma = 1600, 4e-4, [], []
    for _ in range(n):  # GARCH(1,1) log returns and their conditional σ
        true_sigma.append(np.sqrt(var))
        returns.append(true_sigma[-1] * rng.standard_normal())
        var = 2e-5 + 0.1 * returns[-1] ** 2 + 0.85 * var
    y = 100 * np.exp(np.cumsum(returns))
    origins = np.arange(200, n - 1)
    forecasts = np.repeat(y[origins][:, None], 2, axis=1)  # naive
    sigma = np.column_stack(
        [np.array(true_sigma)[origins + 1], 0.02 * np.exp(0.6 * rng.standard_normal(origins.size))]
    )
    spans = [bi.FoldSpan(int(a), int(min(a + 29, origins[-1]))) for a in origins[::30]]
    table = bi.adaptive_table(y, spans, origins, forecasts, sigma, 90, 365)
    static = bi.static_table(y, spans, origins, forecasts, 90, 365)
    residuals = bi.residual_table(y, origins, forecasts)
    assert table.static_horizons is not None
    for h in (1, 2):
        scaled, plain = interval_choice.band_scores(residuals[:, h - 1], sigma[:, h - 1], h)
        for span, chosen in zip(spans, table.static_horizons, strict=True):
            seen = origins + h <= span.first
            assert (h in chosen) == (not interval_choice.scaled_wins(scaled[seen], plain[seen], h))
            rows = (origins >= span.first) & (origins <= span.last)
            if h in chosen:
                for name in ("lower", "upper", "var_95", "var_99", "p_up"):
                    got, want = getattr(table, name), getattr(static, name)
                    assert np.array_equal(got[rows, h - 1], want[rows, h - 1], equal_nan=True)
    late = table.static_horizons[len(spans) // 2 :]
    assert all(c == (2,) for c in late)


def test_the_report_names_each_folds_static_horizons(adaptive: BacktestResult) -> None:
    report = adaptive.to_json([f"d{i}" for i in range(N)], asset="BTC-USD")
    assert all(isinstance(f["static_horizons"], list) for f in report["fold_details"])
    static = run(synthetic_ohlc(N, seed=3), "static").to_json([str(i) for i in range(N)], asset="X")
    assert all(f["static_horizons"] == [] for f in static["fold_details"])
