"""Conformal intervals on range_pct in log space."""

from __future__ import annotations

import numpy as np
import pytest

from btc_predictor.errors import InvalidInputError, NotEnoughDataError
from btc_predictor.forecasting.risk.intervals import (
    RANGE_FLOOR,
    range_intervals_per_horizon,
    range_residuals,
    sequential_bounds,
)


def test_zero_range_actuals_give_finite_residuals() -> None:
    r = range_residuals([0.0, 2.0], [1.0, 1.0])
    assert r[0] == pytest.approx(np.log(RANGE_FLOOR)) and r[1] == pytest.approx(np.log(2.0))


def test_bounds_are_positive_at_every_level() -> None:
    rng = np.random.default_rng(0)
    residuals = [rng.normal(0, 0.8, 400) for _ in range(3)]
    previous_width = 0.0
    for level in (50, 80, 90, 99):
        lower, upper = range_intervals_per_horizon([3.0, 3.5, 4.0], residuals, level)
        assert np.all(lower > 0) and np.all(lower < [3.0, 3.5, 4.0]) and np.all(upper > lower)
        width = float(upper[0] - lower[0])
        assert width > previous_width
        previous_width = width
    with pytest.raises(InvalidInputError, match="level"):
        range_intervals_per_horizon([3.0], residuals, 100)
    with pytest.raises(NotEnoughDataError):
        range_intervals_per_horizon([3.0], [residuals[0][:10]], 90)


def test_sequential_bounds_cover_at_the_level() -> None:
    """Lognormal multiplicative errors: the honest running interval covers ≈ 90%."""
    rng = np.random.default_rng(1)
    forecast = np.full(3000, 3.0)
    actual = forecast * np.exp(rng.normal(0, 0.4, 3000))
    origins = np.arange(3000)
    lower, upper = sequential_bounds(actual, forecast, origins, 1, 90)
    assert np.all(np.isnan(lower[:30])) and not np.any(np.isnan(lower[31:]))
    ok = ~np.isnan(lower)
    coverage = np.mean((actual[ok] >= lower[ok]) & (actual[ok] <= upper[ok]))
    assert 0.88 <= coverage <= 0.92
