"""One run's path serves every (horizon, level) exactly as a per-request computation would."""

from __future__ import annotations

import numpy as np
import pytest

from btc_predictor.errors import ArtifactError, HorizonExceedsModelError, NotEnoughDataError
from btc_predictor.forecasting.intervals import conformal_quantile, intervals_per_horizon
from btc_predictor.forecasting.paths import (
    SERVED_GRID,
    AdaptiveWidths,
    ForecastPath,
    HalfWidths,
    MixedWidths,
)

RNG = np.random.default_rng(14)
HORIZONS = 30


def residuals(count: int = 400, horizons: int = HORIZONS) -> list[np.ndarray]:
    """Log residuals widening with the horizon, as real ones do."""
    return [RNG.normal(0, 0.02 * np.sqrt(h + 1), count) for h in range(horizons)]


def path(values: np.ndarray, stored: list[np.ndarray]) -> ForecastPath:
    return ForecastPath(values, float(values[0]), HalfWidths(stored))


def test_every_horizon_and_level_equals_the_per_request_formula() -> None:
    stored = residuals()
    values = 90_000 * np.exp(np.cumsum(RNG.normal(0, 0.03, HORIZONS)))
    run = path(values, stored)
    for level in range(50, 100):
        for horizon in range(1, HORIZONS + 1):
            got = run.forecast(horizon, level)
            lower, upper = intervals_per_horizon(values[:horizon], stored, level)
            np.testing.assert_array_equal(got.values, values[:horizon])
            np.testing.assert_array_equal(got.lower, lower)
            np.testing.assert_array_equal(got.upper, upper)
            assert got.level == level


def test_half_widths_are_computed_once_per_level() -> None:
    widths = HalfWidths(residuals())
    first = widths.at(90)
    assert widths.at(90) is first
    assert first.q[0] == conformal_quantile(widths.recent[0], 90)
    assert widths.at(80) is not first and np.all(widths.at(80).q < first.q)


def test_a_level_short_of_residuals_at_some_horizon_serves_the_horizons_before_it() -> None:
    stored = residuals()
    stored[4] = stored[4][:60]  # 60 residuals: enough for 90%, not for 99% (needs 99)
    run = path(np.full(HORIZONS, 100.0), stored)
    assert run.forecast(4, 99).upper.size == 4
    assert run.usable(99) == 4 and run.usable(90) == HORIZONS
    with pytest.raises(NotEnoughDataError, match="a 99% interval needs at least 99"):
        run.forecast(5, 99)
    assert run.forecast(30, 90).lower.size == 30


def test_fewer_residual_horizons_than_the_path() -> None:
    run = path(np.full(HORIZONS, 100.0), residuals(horizons=7))
    assert run.forecast(7, 90).values.size == 7 and run.usable(90) == 7
    with pytest.raises(NotEnoughDataError, match="residuals are stored for 7 horizons"):
        run.forecast(8, 90)


def test_horizon_beyond_the_path_is_refused() -> None:
    with pytest.raises(HorizonExceedsModelError, match="exceeds this model's 30 days"):
        path(np.full(HORIZONS, 100.0), residuals()).forecast(31, 90)


def test_a_bound_that_overflows_is_refused_at_its_horizon_only() -> None:
    values = np.full(HORIZONS, 100.0)
    values[2] = 1.79e308  # finite, but its upper bound overflows
    run = path(values, residuals())
    assert run.forecast(2, 90).values.size == 2
    assert run.usable(90) == 2
    with pytest.raises(ArtifactError, match="not finite at horizon 3"):
        run.forecast(3, 90)


def test_mixed_widths_take_each_horizon_from_the_method_serving_it() -> None:
    rng = np.random.default_rng(2)
    static = HalfWidths([rng.standard_normal(400) * 0.02 * h for h in (1, 2, 3)])
    quantiles = np.tile(np.linspace(0.05, 3.0, SERVED_GRID.size), (3, 1))
    scaled = AdaptiveWidths(quantiles, np.array([0.01, 0.03, 0.05]))
    mixed = MixedWidths(scaled, static, frozenset({2, 3}))
    for level in (50, 90, 99):
        got = mixed.at(level).q
        assert got[0] == scaled.at(level).q[0]
        assert got[1:].tolist() == static.at(level).q[1:].tolist()
    for h, source in ((1, scaled), (2, static), (3, static)):
        got_p, want_p = mixed.predictive(h, 100.0, 101.0), source.predictive(h, 100.0, 101.0)
        assert got_p is not None and want_p is not None
        assert got_p.sigma == want_p.sigma and np.array_equal(got_p.quantiles, want_p.quantiles)
    path = ForecastPath(np.array([101.0, 102.0, 103.0]), 100.0, mixed)
    lower, _ = path.bounds(90)
    assert lower[1] == 102.0 * np.exp(-static.at(90).q[1])
