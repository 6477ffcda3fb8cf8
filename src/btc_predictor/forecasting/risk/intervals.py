"""Conformal intervals on range_pct from stored out-of-sample residuals, in log space.

Residuals are ``log(actual) − log(forecast)`` of range_pct (both floored at RANGE_FLOOR so a
zero-range day is a large, finite miss rather than log(0)); bounds are
``forecast·exp(∓q)`` with q the split-conformal quantile of :mod:`..intervals`, so they stay
positive at every level 50..99. Horizon h uses its own residuals, the most recent
``window`` of them (DEFAULT_WINDOW, as for prices).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from btc_predictor.forecasting import intervals
from btc_predictor.forecasting.base import FloatArray

# 0.01% of the previous close: below any traded BTC/ETH day's range since 2015 that is not 0.
RANGE_FLOOR = 0.01
DEFAULT_WINDOW = intervals.DEFAULT_WINDOW


def floored(values: npt.ArrayLike) -> FloatArray:
    """range_pct values raised to RANGE_FLOOR."""
    return np.maximum(np.asarray(values, dtype=np.float64), RANGE_FLOOR)


def range_residuals(actual: npt.ArrayLike, forecast: npt.ArrayLike) -> FloatArray:
    """Out-of-sample log residuals of range_pct forecasts (floored), elementwise."""
    return intervals.log_residuals(floored(actual), floored(forecast))


def range_interval(
    forecast: npt.ArrayLike, residuals: npt.ArrayLike, level: int
) -> tuple[FloatArray, FloatArray]:
    """Bounds around range forecasts (any shape) from one horizon's residuals, all used."""
    return intervals.interval(floored(forecast), residuals, level)


def range_intervals_per_horizon(
    forecast: npt.ArrayLike,
    residuals_per_horizon: Sequence[npt.ArrayLike],
    level: int,
    *,
    window: int | None = DEFAULT_WINDOW,
) -> tuple[FloatArray, FloatArray]:
    """Bounds for a range_pct path ``(H,)``; horizon h uses ``residuals_per_horizon[h-1]``."""
    return intervals.intervals_per_horizon(
        floored(forecast), residuals_per_horizon, level, window=window
    )


def sequential_bounds(
    actual: FloatArray,
    forecast: FloatArray,
    origins: npt.NDArray[np.int64],
    h: int,
    level: int,
    *,
    window: int | None = DEFAULT_WINDOW,
) -> tuple[FloatArray, FloatArray]:
    """Honest bounds for a run of h-ahead forecasts in time order: row i is calibrated on the
    residuals of earlier rows whose target was realised by its origin (NaN until enough)."""
    residuals = range_residuals(actual, forecast)
    targets = origins + h
    lower, upper = np.full(actual.shape, np.nan), np.full(actual.shape, np.nan)
    base = floored(forecast)
    for i, origin in enumerate(origins.tolist()):
        known = intervals.recent_residuals(residuals[:i][targets[:i] <= origin], window)
        if intervals.has_enough_residuals(known, level):
            q = intervals.conformal_quantile(known, level)
            lower[i], upper[i] = base[i] * np.exp(-q), base[i] * np.exp(q)
    return lower, upper
