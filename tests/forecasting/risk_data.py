"""Synthetic daily candles for the risk-model tests: GARCH volatility, intraday paths, weekends."""

from __future__ import annotations

import numpy as np

from btc_predictor.forecasting.risk import OHLC

FIRST_DAY = 18_262  # 2020-01-01, a Wednesday, as days since 1970-01-01
STEPS = 24  # intraday steps per candle: high/low come from a real path, not a formula


def synthetic_ohlc(n: int = 500, seed: int = 0, *, zero_range: tuple[int, ...] = ()) -> OHLC:
    """Candles whose σ follows GARCH(1,1) with quieter weekends; ``zero_range`` days are flat."""
    rng = np.random.default_rng(seed)
    day = FIRST_DAY + np.arange(n)
    weekend = np.isin((day + 3) % 7, (5, 6))
    opens, highs, lows, closes = (np.empty(n) for _ in range(4))
    price, var = 30_000.0, 0.03**2
    for t in range(n):
        sigma = np.sqrt(var) * (0.6 if weekend[t] else 1.0)
        path = price * np.exp(np.cumsum(rng.normal(0.0, sigma / np.sqrt(STEPS), STEPS)))
        opens[t], highs[t] = price, max(price, path.max())
        lows[t], closes[t] = min(price, path.min()), path[-1]
        if t in zero_range:
            opens[t] = highs[t] = lows[t] = closes[t] = price
        ret = np.log(closes[t] / price)
        var = 2e-5 + 0.1 * ret * ret + 0.85 * var
        price = closes[t]
    return OHLC.from_arrays(opens, highs, lows, closes, day)


def brownian_ohlc(n: int = 400, sigma: float = 0.03, seed: int = 0, steps: int = 400) -> OHLC:
    """Candles of a driftless Brownian log price with a constant daily σ (fine intraday grid)."""
    rng = np.random.default_rng(seed)
    paths = np.cumsum(rng.normal(0.0, sigma / np.sqrt(steps), (n, steps)), axis=1)
    log_open = np.concatenate([[0.0], np.cumsum(paths[:-1, -1])])
    log_high = log_open + np.maximum(paths.max(axis=1), 0.0)
    log_low = log_open + np.minimum(paths.min(axis=1), 0.0)
    log_close = log_open + paths[:, -1]
    prices = [30_000.0 * np.exp(x) for x in (log_open, log_high, log_low, log_close)]
    return OHLC.from_arrays(*prices, day=FIRST_DAY + np.arange(n))
