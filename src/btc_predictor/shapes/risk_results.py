"""Risk-family result shapes (issue 15): a risk model's backtest report and its forecast.

Written once like the price shapes in :mod:`btc_predictor.shapes.results`, whose conventions
they follow (immutable, unknown stored fields ignored).
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from btc_predictor.shapes.common import Instant
from btc_predictor.shapes.results import BacktestFold, Result

# --- Risk backtests (issue 15): the price report's top-level keys, range_pct rows -------------


class RiskBacktestHorizon(Result):
    """Walk-forward metrics of a risk model at one horizon (ranges in % of the previous close):
    range MASE and DM against ``naive-range`` on absolute range error, QLIKE of the variance
    forecast next to ``garch``'s (refitted in the same folds) with DM on QLIKE loss, and the
    range interval's coverage, mean width and Winkler score (burn-in folds excluded)."""

    h: int
    n: int
    mase: float | None
    range_mae: float | None
    naive_range_mae: float | None
    qlike: float | None
    qlike_garch: float | None
    dm_pvalue: float | None
    dm_pvalue_garch: float | None
    coverage: float | None
    interval_width: float | None
    winkler: float | None


class RiskBacktestRow(Result):
    """One realised risk forecast: range_pct of ``target_date`` from ``origin``, its interval
    (None in burn-in), naive-range (the origin day's range) and the σ forecast (a fraction)."""

    origin: date
    target_date: date
    h: int
    actual: float
    forecast: float
    lower: float | None
    upper: float | None
    naive: float
    volatility: float


class RiskBacktestReport(Result):
    """``backtest --model har --json``: a risk model's walk-forward run."""

    asset: str
    model: str
    family: Literal["risk"] = "risk"
    level: int
    refit_every: int
    start: date
    end: date
    folds: int
    burn_in_folds: int
    fold_details: list[BacktestFold]
    horizons: list[RiskBacktestHorizon]
    series: list[RiskBacktestRow]


# --- Risk forecasts -------------------------------------------------------------------------


class RiskPoint(Result):
    """One horizon of a risk forecast: σ of that day's log return (a fraction), its expected
    range in % of the previous close with the range interval at the requested level, the
    range in price units (of the last close), naive-range, and VaR 95/99 (loss in % of the
    last close) from the active price version (None without one)."""

    horizon: int
    target_date: date
    volatility: float
    range_pct: float
    range_lower_pct: float
    range_upper_pct: float
    range_price: float  # range_pct × last_close / 100
    naive_range_pct: float  # the last closed day's range_pct
    var_95: float | None
    var_99: float | None


class Risk(Result):
    """``risk --json`` and ``GET /api/v1/risk``: one risk version's forecast from the data."""

    asset: str
    model: str
    model_version: int
    level: int
    as_of: Instant  # when the newest candle closed: what the forecast knows
    last_close: float
    last_date: date
    data_age_seconds: float
    stale: bool
    points: list[RiskPoint]
