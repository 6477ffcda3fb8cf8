"""Split-conformal intervals: finite-sample quantile, minimum counts, and coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest

from btc_predictor.errors import InvalidInputError, NotEnoughDataError
from btc_predictor.forecasting import intervals


def test_quantile_is_the_ceil_n_plus_1_order_statistic() -> None:
    residuals = np.arange(1, 40, dtype=float) * np.where(np.arange(39) % 2, 1, -1)  # |r| = 1..39
    # ceil(40 · 0.9) = 36 → the 36th smallest |r|
    assert intervals.conformal_quantile(residuals, 90) == 36.0
    assert intervals.conformal_quantile(residuals, 50) == 20.0  # ceil(40 · 0.5) = 20


def test_interval_is_multiplicative_in_log_space() -> None:
    residuals = np.full(40, 0.1)
    lower, upper = intervals.interval(np.array([100.0, 200.0]), residuals, 90)
    np.testing.assert_allclose(lower, [100 * math.exp(-0.1), 200 * math.exp(-0.1)])
    np.testing.assert_allclose(upper, [100 * math.exp(0.1), 200 * math.exp(0.1)])


@pytest.mark.parametrize(("level", "expected"), [(50, 30), (90, 30), (97, 33), (98, 49), (99, 99)])
def test_min_residuals(level: int, expected: int) -> None:
    assert intervals.min_residuals(level) == expected
    n = expected
    # the required order statistic exists at the minimum...
    assert math.ceil((n + 1) * level / 100) <= n
    intervals.conformal_quantile(np.ones(n), level)
    # ...and one fewer residual is refused, consistently with an error
    with pytest.raises(NotEnoughDataError, match=f"at least {n}"):
        intervals.conformal_quantile(np.ones(n - 1), level)
    assert not intervals.has_enough_residuals(np.ones(n - 1), level)


@pytest.mark.parametrize("level", [49, 100, 90.0, True, "90"])
def test_invalid_levels(level: object) -> None:
    with pytest.raises(InvalidInputError, match=r"50\.\.99"):
        intervals.check_level(level)  # type: ignore[arg-type]


def test_recent_residuals_keeps_the_last_window_in_order() -> None:
    np.testing.assert_array_equal(intervals.recent_residuals([1, 2, np.nan, 4], 2), [2.0, 4.0])
    np.testing.assert_array_equal(intervals.recent_residuals([1, 2, 3], None), [1.0, 2.0, 3.0])
    with pytest.raises(InvalidInputError):
        intervals.recent_residuals([1.0], 0)


def test_log_residuals() -> None:
    np.testing.assert_allclose(intervals.log_residuals([110.0], [100.0]), [math.log(1.1)])
    with pytest.raises(InvalidInputError):
        intervals.log_residuals([0.0], [1.0])


@pytest.mark.parametrize("level", [50, 80, 90, 95])
def test_coverage_on_gaussian_noise_is_in_a_tight_band(level: int) -> None:
    """E[coverage] of split conformal lies in [L, L + 1/(n+1)]; check that, exactly computed."""
    rng = np.random.default_rng(level)
    n, reps, sigma = 200, 2000, 0.03
    covered = []
    for _ in range(reps):
        q = intervals.conformal_quantile(rng.normal(0, sigma, n), level)
        covered.append(math.erf(q / (sigma * math.sqrt(2))))  # P(|N(0, σ)| <= q)
    mean = float(np.mean(covered))
    low, high = level / 100, level / 100 + 1 / (n + 1)
    assert low - 0.003 <= mean <= high + 0.003


@pytest.mark.parametrize("level", [50, 80, 90, 95])
def test_price_coverage_with_heavy_tailed_skewed_noise(level: int) -> None:
    """Laplace noise plus a bias, through prices: empirical coverage of fresh days."""
    rng = np.random.default_rng(100 + level)
    forecast = 30_000.0 * np.exp(rng.normal(0, 0.5, 400))
    hits = []
    for _ in range(200):
        calib = 0.01 + rng.laplace(0, 0.02, 300)
        lower, upper = intervals.interval(forecast, calib, level)
        actual = forecast * np.exp(0.01 + rng.laplace(0, 0.02, forecast.size))
        hits.append(np.mean((actual >= lower) & (actual <= upper)))
    assert float(np.mean(hits)) == pytest.approx(level / 100 + 0.5 / 301, abs=0.006)


def test_intervals_per_horizon_uses_each_horizons_recent_residuals() -> None:
    per_h = [np.r_[np.full(100, 0.5), np.full(40, 0.01)], np.full(40, 0.02)]
    lower, upper = intervals.intervals_per_horizon([100.0, 100.0], per_h, 90, window=40)
    np.testing.assert_allclose(upper, [100 * math.exp(0.01), 100 * math.exp(0.02)])
    np.testing.assert_allclose(lower * upper, [100.0**2, 100.0**2])
    wide, _ = intervals.intervals_per_horizon([100.0], per_h[:1], 90, window=None)
    assert wide[0] == pytest.approx(100 * math.exp(-0.5))
    with pytest.raises(NotEnoughDataError, match="2 horizons"):
        intervals.intervals_per_horizon([1.0, 1.0, 1.0], per_h, 90)
