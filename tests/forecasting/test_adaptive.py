"""Adaptive conformal intervals: online steps by hand, MAPIE's ACI, GARCH regimes, VaR, p_up."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from btc_predictor.errors import InvalidInputError
from btc_predictor.forecasting import adaptive, intervals, metrics
from btc_predictor.forecasting.base import FloatArray

NAN = math.nan


def _garch(n: int, seed: int) -> FloatArray:
    """Daily log returns of a GARCH(1,1) with Student-t(5) shocks, 3.5% unconditional σ."""
    rng = np.random.default_rng(seed)
    a, b, var = 0.1, 0.88, 0.035**2
    omega = var * (1 - a - b)
    z = rng.standard_t(5, n) / math.sqrt(5 / 3)
    r = np.empty(n)
    for t in range(n):
        r[t] = math.sqrt(var) * z[t]
        var = omega + a * r[t] ** 2 + b * var
    return r


def _ewma_sigma(r: FloatArray, lam: float = 0.97) -> FloatArray:
    """σ̂ of return ``t+1`` known after return ``t`` (a stand-in risk model)."""
    out, var = np.empty(r.size), float(np.var(r[:30]))
    for t, x in enumerate(r):
        var = lam * var + (1 - lam) * x * x
        out[t] = math.sqrt(var)
    return out


def _realised_vol(r: FloatArray, window: int = 30) -> FloatArray:
    """RMS of the last ``window`` returns through each day (NaN before)."""
    c = np.concatenate([[0.0], np.cumsum(r**2)])
    out = np.full(r.size, NAN)
    out[window - 1 :] = np.sqrt((c[window:] - c[:-window]) / window)
    return out


# --- the online steps ------------------------------------------------------------------------


def test_aci_sequence_by_hand() -> None:
    # α=0.1, γ=0.05: hit → +0.005, miss → −0.045
    alphas = adaptive.aci_alphas([False, True, False, False], alpha=0.1, gamma=0.05)
    np.testing.assert_allclose(alphas, [0.1, 0.105, 0.06, 0.065, 0.07])


def test_tracker_step_by_hand() -> None:
    theta = adaptive.tracker_step(0.0, alpha=0.1, miss=True, eta=0.05)
    assert theta == pytest.approx(0.045)
    assert adaptive.tracker_step(theta, alpha=0.1, miss=False, eta=0.05) == pytest.approx(0.04)


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        # window 3, level 0.5 → rank ceil(4·0.5) = 2 (the median of 3).
        # row 3: window [1,2,3] → 2. Row 4: s3=10 > 2 is a miss; window [2,3,10].
        # tracker: θ = 0.1·(1 − 0.5) = 0.05 → 3.05; aci: α = 0.5 + 0.1·(0.5 − 1) = 0.45,
        # rank ceil(4·0.55) = 3 → 10. Row 5: s4=0.5 is a hit; window [0.5,3,10];
        # tracker θ = 0.05 − 0.05 = 0 → 3; aci α = 0.5 → rank 2 → 3.
        ("tracker", [NAN, NAN, NAN, 2.0, 3.05, 3.0]),
        ("aci", [NAN, NAN, NAN, 2.0, 10.0, 3.0]),
        ("normalised", [NAN, NAN, NAN, 2.0, 3.0, 3.0]),
    ],
)
def test_quantile_path_by_hand(method: adaptive.Method, expected: list[float]) -> None:
    path = adaptive.quantile_path(
        [1.0, 2, 3, 10, 0.5], [0.5], 1, method=method, step=0.1, window=3, min_scores=3
    )
    np.testing.assert_allclose(path[:, 0], expected)


@pytest.mark.parametrize("h", [1, 3])
def test_a_score_is_used_only_from_h_rows_after_its_origin(h: int) -> None:
    scores = np.random.default_rng(0).exponential(size=120)
    base = adaptive.quantile_path(scores, [0.9], h, window=50)
    bumped = scores.copy()
    bumped[80] = 50.0  # a big miss on origin 80, realised at row 80 + h
    path = adaptive.quantile_path(bumped, [0.9], h, window=50)
    np.testing.assert_array_equal(path[: 80 + h], base[: 80 + h])
    assert path[80 + h, 0] > base[80 + h, 0]


def test_unknown_scores_are_skipped_not_counted() -> None:
    scores = np.random.default_rng(1).exponential(size=80)
    gappy = scores.copy()
    gappy[40] = NAN
    path = adaptive.quantile_path(gappy, [0.9], 1)
    assert np.all(np.isfinite(path[31:, 0]))
    np.testing.assert_array_equal(path[:41], adaptive.quantile_path(scores, [0.9], 1)[:41])


def test_aci_matches_mapie_with_a_rolling_window() -> None:
    """MAPIE's TimeSeriesRegressor(method="aci") with ``update`` rolling its scores.

    Definitions coincide on normalised residuals predicted by a constant 0 with the symmetric
    absolute score: same order statistic (ceil((n+1)(1−α_t))-th), same step, same window.
    """
    pytest.importorskip("mapie")
    from mapie.conformity_scores import AbsoluteConformityScore
    from mapie.regression import TimeSeriesRegressor
    from sklearn.dummy import DummyRegressor

    rng = np.random.default_rng(3)
    window, days, gamma = 100, 400, 0.02
    z = rng.standard_t(5, window + days)
    x = np.zeros((z.size, 1))
    model = TimeSeriesRegressor(
        DummyRegressor(strategy="constant", constant=0.0).fit(x[:window], z[:window]),
        method="aci",
        cv="prefit",
        conformity_score=AbsoluteConformityScore(sym=True),
    ).fit(x[:window], z[:window])
    upper, alphas = [], []
    for t in range(window, window + days):
        alphas.append(float(getattr(model, "current_alpha", {}).get(0.1, 0.1)))  # set on first use
        _, bounds = model.predict(x[t : t + 1], confidence_level=0.9)
        upper.append(float(bounds[0, 1, 0]))
        model.adapt_conformal_inference(
            x[t : t + 1], z[t : t + 1], gamma=gamma, confidence_level=0.9
        )
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore",
                message=r"\s*This function behavior has been changed",
                category=UserWarning,
            )
            model.update(x[t : t + 1], z[t : t + 1])
    ours = adaptive.quantile_path(
        np.abs(z), [0.9], 1, method="aci", step=gamma, window=window, min_scores=window
    )[window : window + days, 0]
    np.testing.assert_allclose(ours, upper, rtol=0, atol=1e-12)
    misses = np.abs(z[window:]) > ours
    assert 0 < misses.sum() < days  # the level really moved both ways
    np.testing.assert_allclose(adaptive.aci_alphas(misses[:-1], 0.1, gamma), alphas, atol=1e-12)


# --- volatility regimes (synthetic GARCH) ----------------------------------------------------


@pytest.mark.parametrize(("method", "step"), [("tracker", None), ("aci", None)])
def test_adaptive_holds_in_every_volatility_tercile_where_static_fails(
    method: adaptive.Method, step: float | None
) -> None:
    r = _garch(12_000, seed=2)
    close = 100 * np.exp(np.cumsum(r))
    origin, actual = close[:-1], close[1:]
    wf = adaptive.walk_forward(
        origin, origin, actual, _ewma_sigma(r)[:-1], 1, 90, method=method, step=step
    )
    vol = _realised_vol(r)[1:]  # through the target day
    rows = np.isfinite(wf.lower) & np.isfinite(vol)
    assert rows.sum() >= 10_000
    a, v = actual[rows], vol[rows]
    adaptive_terciles = metrics.coverage_by_vol_tercile(a, wf.lower[rows], wf.upper[rows], v)
    static_terciles = metrics.coverage_by_vol_tercile(
        a, wf.static_lower[rows], wf.static_upper[rows], v
    )
    assert metrics.coverage(a, wf.lower[rows], wf.upper[rows]) == pytest.approx(0.90, abs=0.02)
    for tercile in ("low", "mid", "high"):
        assert adaptive_terciles[tercile] == pytest.approx(0.90, abs=0.02), adaptive_terciles
    assert static_terciles["high"] is not None and static_terciles["high"] < 0.87


def test_var_violations_pass_kupiec_on_garch() -> None:
    r = _garch(12_000, seed=4)
    close = 100 * np.exp(np.cumsum(r))
    origin, actual = close[:-1], close[1:]
    wf = adaptive.walk_forward(origin, origin, actual, _ewma_sigma(r)[:-1], 1, 90)
    rows = np.isfinite(wf.var_95)
    loss = (1 - actual[rows] / origin[rows]) * 100
    for var, p in ((wf.var_95[rows], 0.05), (wf.var_99[rows], 0.01)):
        test = metrics.kupiec_pof(loss > var, p)
        assert test is not None and test.pvalue > 0.05, (p, float(np.mean(loss > var)))


# --- static = today's split conformal --------------------------------------------------------


def test_static_bounds_are_plain_split_conformal() -> None:
    rng = np.random.default_rng(5)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.03, 500)))
    h, level = 3, 90
    origin, actual, forecast = closes[:-h], closes[h:], closes[:-h] * 1.001
    wf = adaptive.walk_forward(origin, forecast, actual, np.full(origin.size, 0.05), h, level)
    residuals = intervals.log_residuals(actual, forecast)
    for i in (h + 29, 200, origin.size - 1):  # residual j is known at origin j + h
        q = intervals.conformal_quantile(intervals.recent_residuals(residuals[: i - h + 1]), level)
        assert wf.static_lower[i] == pytest.approx(forecast[i] * math.exp(-q), rel=1e-12)
        assert wf.static_upper[i] == pytest.approx(forecast[i] * math.exp(q), rel=1e-12)
    assert np.isnan(wf.static_lower[h + 28])  # 29 known residuals: burn-in


# --- the predictive distribution: VaR and p_up -----------------------------------------------


def _normal_grid() -> tuple[FloatArray, FloatArray]:
    """|Z| quantiles of a standard normal on the p_up grid (by bisection on erf)."""
    levels = np.unique(np.concatenate([adaptive.P_UP_GRID, [0.9, 0.98]]))
    q = [_bisect(lambda x, lv=lv: math.erf(x / math.sqrt(2)) - lv) for lv in levels]
    return levels, np.array(q)


def _bisect(f: object, lo: float = 0.0, hi: float = 10.0) -> float:
    """Root of increasing ``f`` on [lo, hi]."""
    assert callable(f)
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
    return (lo + hi) / 2


def test_var_is_the_lower_bound_of_the_2q_minus_1_interval() -> None:
    levels, q = _normal_grid()
    dist = adaptive.Predictive(100.0, 102.0, 0.04, levels, q)
    lower_90, _ = dist.interval(0.9)
    assert dist.var(0.95) == pytest.approx((1 - lower_90 / 100.0) * 100)
    # symmetric, centred on the last close: the 5% quantile is exp(−1.6449·σ)
    centred = adaptive.Predictive(100.0, 100.0, 0.04, levels, q)
    assert centred.var(0.95) == pytest.approx((1 - math.exp(-1.644854 * 0.04)) * 100, rel=1e-5)
    assert centred.var(0.99) == pytest.approx((1 - math.exp(-2.326348 * 0.04)) * 100, rel=1e-5)
    with pytest.raises(InvalidInputError):
        dist.var(0.97)  # the 94% interval is not on the grid


def test_p_up_is_half_on_a_tie_and_follows_the_distribution() -> None:
    levels, q = _normal_grid()
    assert adaptive.Predictive(100.0, 100.0, 0.04, levels, q).p_up() == 0.5
    up = adaptive.Predictive(100.0, 100.0 * math.exp(0.004), 0.04, levels, q).p_up()
    down = adaptive.Predictive(100.0, 100.0 * math.exp(-0.004), 0.04, levels, q).p_up()
    assert up == pytest.approx(0.5 + 0.5 * math.erf(0.1 / math.sqrt(2)), abs=1e-3)  # Φ(0.1)
    assert up + down == pytest.approx(1.0)


def test_walk_forward_var_and_p_up_agree_with_its_interval() -> None:
    r = _garch(1_500, seed=6)
    close = 100 * np.exp(np.cumsum(r))
    origin, actual = close[:-1], close[1:]
    wf = adaptive.walk_forward(origin, origin, actual, _ewma_sigma(r)[:-1], 1, 90)
    rows = np.isfinite(wf.lower)
    np.testing.assert_allclose(wf.var_95[rows], (1 - wf.lower[rows] / origin[rows]) * 100)
    np.testing.assert_array_equal(wf.p_up[rows], 0.5)  # naive forecasts claim no direction
    assert np.all(np.isnan(wf.var_99[~rows]))


# --- serving ---------------------------------------------------------------------------------


def test_adaptive_quantiles_is_the_row_after_the_last_target() -> None:
    scores = np.random.default_rng(7).exponential(size=200)
    got = adaptive.adaptive_quantiles(scores, [80, 90], 7)
    assert got is not None
    path = adaptive.quantile_path(scores, [0.8, 0.9], 7)
    np.testing.assert_array_equal(got, path[-1])
    assert got[0] < got[1]
    assert adaptive.adaptive_quantiles(scores[:29], [90], 1) is None
    with pytest.raises(InvalidInputError):
        adaptive.adaptive_quantiles(scores, [100], 1)
    with pytest.raises(InvalidInputError):
        adaptive.quantile_path(scores, [1.0], 1)


def test_scores_and_sigma_scaling() -> None:
    s = adaptive.normalised_scores([110.0, 90.0], [100.0, 100.0], [0.1, 0.05])
    np.testing.assert_allclose(s, [math.log(1.1) / 0.1, -math.log(0.9) / 0.05])
    np.testing.assert_allclose(adaptive.horizon_sigma([0.02], 4), [0.04])
    with pytest.raises(InvalidInputError):
        adaptive.normalised_scores([1.0], [1.0], [0.0])


def test_serving_distribution_is_the_walk_forward_row_of_today() -> None:
    r = _garch(700, seed=8)
    close = 100 * np.exp(np.cumsum(r))
    h, n = 5, close.size
    origin, forecast = close, close * 1.002
    actual = np.full(n, NAN)
    actual[: n - h] = close[h:]  # the last h origins' targets are not realised yet
    sigma = adaptive.horizon_sigma(_ewma_sigma(r), h)
    wf = adaptive.walk_forward(origin, forecast, actual, sigma, h, 80)
    stored = adaptive.normalised_scores(actual[: n - h], forecast[: n - h], sigma[: n - h])
    now = adaptive.current_predictive(
        stored, h, float(origin[-1]), float(forecast[-1]), float(sigma[-1]), levels=[80]
    )
    assert now is not None
    assert now.interval(0.8) == pytest.approx((wf.lower[-1], wf.upper[-1]), rel=1e-12)
    assert now.var(0.95) == pytest.approx(wf.var_95[-1], rel=1e-12)
    assert now.var(0.99) == pytest.approx(wf.var_99[-1], rel=1e-12)
    assert now.p_up() == pytest.approx(wf.p_up[-1], rel=1e-12)
    assert 0.5 < now.p_up() < 0.6  # a 0.2% step up on a ~3.5%·√5 σ: a weak call


def test_direction_weight_is_zero_without_significant_skill() -> None:
    assert adaptive.direction_weight(0.40, 0.99) == 0.0  # a tie with naive: no direction
    assert adaptive.direction_weight(0.01, 1.02) == 0.0  # significantly worse than naive
    assert adaptive.direction_weight(None, 0.9) == 0.0  # no evidence at all
    assert adaptive.direction_weight(0.01, 0.9) == pytest.approx(0.8)
    assert adaptive.direction_weight(0.0, 0.5) == 1.0


def test_p_up_weight_shrinks_the_location_toward_the_last_close() -> None:
    grid = adaptive.predictive_grid()
    dist = adaptive.Predictive(100.0, 103.0, 0.05, grid, np.linspace(0.01, 2.6, grid.size))
    raw, half, none = dist.p_up(), dist.p_up(0.5), dist.p_up(0.0)
    assert raw > half > none == 0.5
    same = adaptive.Predictive(100.0, 100.0 * math.sqrt(1.03), 0.05, grid, dist.quantiles)
    assert half == pytest.approx(same.p_up())  # half the log move, at full weight


def test_holdout_scores_divide_each_residual_by_its_origins_sigma() -> None:
    residuals = [[0.02, -0.04, 0.01], [0.03, -0.06]]
    sigma = np.array([[0.02, 0.03], [0.04, 0.05], [np.nan, 0.06]])
    h1, h2 = adaptive.holdout_scores(residuals, sigma)
    assert h1[:2].tolist() == [1.0, 1.0] and np.isnan(h1[2])
    assert h2.tolist() == pytest.approx([1.0, 1.2])
    with pytest.raises(InvalidInputError):
        adaptive.holdout_scores([[0.1] * 4], sigma)
