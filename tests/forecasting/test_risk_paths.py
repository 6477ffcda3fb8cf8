"""RiskPath: one risk run's path answers every (horizon, level) with exactly the range
intervals a per-request computation gives, and refuses what a fresh run would refuse."""

from __future__ import annotations

import numpy as np
import pytest

from btc_predictor.errors import ArtifactError, HorizonExceedsModelError, NotEnoughDataError
from btc_predictor.forecasting.paths import HalfWidths
from btc_predictor.forecasting.risk.ewma import EwmaVol
from btc_predictor.forecasting.risk.intervals import range_intervals_per_horizon
from btc_predictor.forecasting.risk.ohlc import OHLC
from btc_predictor.forecasting.risk.paths import RiskPath, run_risk


def candles(n: int, seed: int = 3) -> OHLC:
    """A random walk of ``n`` sound daily candles."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.03, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    spread = np.abs(rng.normal(0, 0.02, n)) + 0.001
    high = np.maximum(open_, close) * (1 + spread)
    low = np.minimum(open_, close) * (1 - spread)
    return OHLC.from_arrays(open_, high, low, close)


def residuals(horizons: int, count: int, seed: int = 5) -> list[np.ndarray]:
    """Log range residuals per horizon."""
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 0.4, count) for _ in range(horizons)]


def test_every_horizon_and_level_equals_the_per_request_intervals() -> None:
    ohlc = candles(400)
    model = EwmaVol(max_horizon=10).fit(ohlc)
    stored = residuals(10, 500)
    path = run_risk(model, ohlc, HalfWidths(stored))
    raw = model.forecast(ohlc, 10)
    assert path.naive_range_pct == ohlc.range_pct()[-1] and path.last_close == ohlc.close[-1]
    for level in range(50, 100):
        for horizon in range(1, 11):
            found = path.outlook(horizon, level)
            lower, upper = range_intervals_per_horizon(raw.range_pct[:horizon], stored, level)
            assert found.range_pct.tolist() == raw.range_pct[:horizon].tolist()
            assert found.volatility.tolist() == raw.volatility[:horizon].tolist()
            assert found.lower.tolist() == lower.tolist() and found.upper.tolist() == upper.tolist()


def path_of(ranges: list[float], stored: list[np.ndarray]) -> RiskPath:
    """A path with the given range forecasts and σ 0.02 at every horizon."""
    values = np.array(ranges, dtype=np.float64)
    return RiskPath(np.full(values.size, 0.02), values, 3.0, 100.0, HalfWidths(stored))


def test_what_a_fresh_run_refuses_is_refused() -> None:
    path = path_of([3.0, 3.1, 3.2], residuals(3, 500))
    with pytest.raises(HorizonExceedsModelError, match="exceeds this risk model's 3 days"):
        path.outlook(4, 90)
    few = path_of([3.0, 3.1], [np.zeros(500), np.zeros(5)])  # horizon 2: 5 residuals only
    assert few.usable(90) == 1 and few.outlook(1, 90).lower.size == 1
    with pytest.raises(NotEnoughDataError):
        few.outlook(2, 90)
    broken = path_of([3.0, np.nan], residuals(2, 500))
    assert broken.usable(90) == 1
    with pytest.raises(ArtifactError, match="not finite at horizon 2"):
        broken.outlook(2, 90)


def test_a_zero_range_forecast_keeps_a_positive_interval() -> None:
    path = path_of([0.0, 2.0], residuals(2, 500))
    found = path.outlook(2, 95)
    assert found.range_pct[0] == 0.0 and 0 < found.lower[0] < found.upper[0]
