"""A walk-forward price backtest's intervals, VaR and ``p_up``: static or adaptive.

Both give, per (origin, h), the bounds at the backtest's level, VaR 95/99 (loss in % of the
origin close) and ``p_up``, all read from one predictive distribution
(:class:`~btc_predictor.forecasting.adaptive.Predictive`), so VaR 95 is the 90% lower bound.

- ``static`` (plain split conformal, the backtest's method before issue 16, unchanged): a
  fold's bounds come from the |log residuals| realised by its first origin (earlier folds'
  errors only), most recent ``window`` per horizon. VaR and ``p_up`` read the same residuals'
  order statistics on the predictive grid; they need 99 residuals (VaR 99), the bounds
  ``min_residuals(level)``.
- ``adaptive``: σ̂ of the h-day log return comes from a risk model refit in the backtest's own
  folds (fitted on candles before the fold start, forecasting from each origin with the
  candles up to it) and the online correction replays day by day
  (:func:`~btc_predictor.forecasting.adaptive.walk_forward`): an origin's quantile uses only
  scores whose target was realised by then. A (fold, horizon) whose static bands scored
  significantly better on the origins realised by the fold's start serves the static cells
  instead (:mod:`~btc_predictor.forecasting.interval_choice`), as a version trained then
  would have chosen on its holdout.

Burn-in is per fold for both: a fold whose first origin lacks an interval at some horizon gets
none (so ``fold_details[].burn_in`` keeps its meaning). The adaptive replay needs 99 realised
scores at each horizon, so its burn-in is longer than static's (``min_residuals(level)``).

Cost (BTC, the last 365 days x 30 horizons, naive, one core under load): 0.09 s static,
1.8 s adaptive (har refits, then the day-by-day replay and one Predictive per cell).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np

from btc_predictor.errors import InvalidInputError, NotEnoughDataError
from btc_predictor.forecasting import adaptive, interval_choice, metrics
from btc_predictor.forecasting.base import FloatArray, JSONValue
from btc_predictor.forecasting.intervals import (
    conformal_quantile,
    has_enough_residuals,
    min_residuals,
    recent_residuals,
)
from btc_predictor.forecasting.risk.backtest import make_risk_folds, run_risk_fold
from btc_predictor.forecasting.risk.ohlc import OHLC
from btc_predictor.forecasting.training import IntArray

IntervalMethod: TypeAlias = Literal["adaptive", "static"]
# The predictive grid's top level is 0.99 (VaR 99 reads the 98% interval; p_up's grid ends at
# 0.99): its order statistic exists from 99 scores on.
_GRID_SCORES = min_residuals(99)


@dataclass(frozen=True)
class FoldSpan:
    """A fold's first and last origin (day indices)."""

    first: int
    last: int


@dataclass(frozen=True)
class IntervalTable:
    """Columns ``[n_origins, H]`` (NaN = none) and each fold's burn-in flag."""

    lower: FloatArray
    upper: FloatArray
    var_95: FloatArray
    var_99: FloatArray
    p_up: FloatArray
    burn_in: list[bool]
    # Per fold, the horizons served by static bands (adaptive backtests: see interval_choice).
    static_horizons: list[tuple[int, ...]] | None = None


def residual_table(y: FloatArray, origins: IntArray, forecasts: FloatArray) -> FloatArray:
    """Log residuals ``[n_origins, H]``; NaN where the target lies beyond the series."""
    steps = np.arange(1, forecasts.shape[1] + 1)
    targets = origins[:, None] + steps[None, :]  # [n, H]
    realised = targets < y.size
    if np.any(forecasts[realised] <= 0):
        raise InvalidInputError("the model produced non-positive price forecasts")
    table = np.full(forecasts.shape, np.nan)
    table[realised] = np.log(y[targets[realised]]) - np.log(forecasts[realised])
    return table


def _table(
    columns: list[FloatArray],
    burn_in: list[bool],
    static_horizons: list[tuple[int, ...]] | None = None,
) -> IntervalTable:
    """The five columns of :func:`_empty`, filled, with the burn-in flags."""
    lower, upper, var_95, var_99, p_up = columns
    return IntervalTable(lower, upper, var_95, var_99, p_up, burn_in, static_horizons)


def _empty(shape: tuple[int, ...]) -> list[FloatArray]:
    """Five NaN columns: lower, upper, var_95, var_99, p_up."""
    return [np.full(shape, np.nan) for _ in range(5)]


# --- p_up's location weight: what serving applies, from errors realised before each fold ---


def direction_weights(
    y: FloatArray, spans: list[FoldSpan], origins: IntArray, forecasts: FloatArray
) -> FloatArray:
    """Per origin, :func:`~btc_predictor.forecasting.adaptive.direction_weight` from the h=1
    errors (model and naive) whose target was realised by the fold's first origin: the
    backtest's counterpart of a version's holdout DM test and MASE (no look-ahead)."""
    out = np.zeros(origins.size)
    realised_1 = origins + 1 < y.size
    for span in spans:
        seen = realised_1 & (origins + 1 <= span.first)
        actual = y[origins[seen] + 1]
        model = np.abs(forecasts[seen, 0] - actual)
        naive = np.abs(y[origins[seen]] - actual)
        dm = metrics.diebold_mariano(model, naive, h=1) if seen.sum() >= 2 else None
        mase = float(model.mean() / naive.mean()) if seen.any() and naive.mean() > 0 else None
        weight = adaptive.direction_weight(None if dm is None else dm.pvalue, mase)
        out[(origins >= span.first) & (origins <= span.last)] = weight
    return out


# --- static ----------------------------------------------------------------------------------


def static_table(
    y: FloatArray,
    spans: list[FoldSpan],
    origins: IntArray,
    forecasts: FloatArray,
    level: int,
    window: int | None,
) -> IntervalTable:
    """Split-conformal bounds per fold from residuals realised by its first origin."""
    table = residual_table(y, origins, forecasts)
    grid = adaptive.predictive_grid([level])
    weights = direction_weights(y, spans, origins, forecasts)
    columns, burn_in = _empty(forecasts.shape), []
    for span in spans:
        q = _fold_quantiles(table, origins, span.first, level, window)
        burn_in.append(q is None)
        if q is None:
            continue
        rows = np.flatnonzero((origins >= span.first) & (origins <= span.last))
        columns[0][rows], columns[1][rows] = (
            forecasts[rows] * np.exp(-q),
            forecasts[rows] * np.exp(q),
        )
        grid_q = _fold_grid(table, origins, span.first, grid, window)
        for h in range(1, forecasts.shape[1] + 1):
            points = _static_points(
                y[origins[rows]], forecasts[rows, h - 1], grid, grid_q[h - 1], weights[rows]
            )
            for column, values in zip(columns[2:], points, strict=True):
                column[rows, h - 1] = values
    return _table(columns, burn_in)


def _fold_quantiles(
    table: FloatArray, origins: IntArray, first_origin: int, level: int, window: int | None
) -> FloatArray | None:
    """Half-widths ``(H,)`` from residuals realised by ``first_origin``; None if too few."""
    quantiles = []
    for h in range(1, table.shape[1] + 1):
        realised = table[origins + h <= first_origin, h - 1]
        recent = recent_residuals(realised, window)
        if not has_enough_residuals(recent, level):
            return None
        quantiles.append(conformal_quantile(recent, level))
    return np.array(quantiles)


def _fold_grid(
    table: FloatArray, origins: IntArray, first_origin: int, grid: FloatArray, window: int | None
) -> FloatArray:
    """|r| quantiles ``[H, len(grid)]`` on the predictive grid (NaN rows: under 99 residuals).

    The same order statistic as :func:`conformal_quantile`: the ceil((n+1)·L)-th smallest.
    """
    out = np.full((table.shape[1], grid.size), np.nan)
    for h in range(1, table.shape[1] + 1):
        recent = np.sort(
            np.abs(recent_residuals(table[origins + h <= first_origin, h - 1], window))
        )
        if recent.size >= _GRID_SCORES:
            ranks = np.clip(np.ceil((recent.size + 1) * grid - 1e-9), 1, recent.size)
            out[h - 1] = recent[ranks.astype(np.int64) - 1]
    return out


def _static_points(
    last_close: FloatArray,
    forecast: FloatArray,
    grid: FloatArray,
    q: FloatArray,
    weight: FloatArray | None = None,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(var_95, var_99, p_up) of many cells sharing one |r| distribution (σ = 1); NaN if none.

    :class:`~btc_predictor.forecasting.adaptive.Predictive`'s formulas on arrays (a cell at a
    time took ~2 s for 365 origins x 30 horizons); a test checks they agree cell by cell.
    """
    if np.isnan(q[0]):
        nan = np.full(last_close.shape, np.nan)
        return nan, nan, nan
    unit = adaptive.Predictive(1.0, 1.0, 1.0, grid, q)
    var_95, var_99 = (
        (1.0 - forecast * np.exp(-unit.quantile(lv)) / last_close) * 100.0
        for lv in adaptive.var_levels(adaptive.VAR_QS)
    )
    m = np.log(forecast / last_close) * (1.0 if weight is None else weight)
    grid_q = np.concatenate([[0.0], np.maximum.accumulate(q)])
    inside = np.interp(np.abs(m), grid_q, np.concatenate([[0.0], grid]))
    return var_95, var_99, np.where(m == 0, 0.5, 0.5 + np.sign(m) * 0.5 * inside)


# --- adaptive --------------------------------------------------------------------------------


def risk_sigma(
    candles: OHLC,
    *,
    model: str,
    start: int,
    refit_every: int,
    max_horizon: int,
    seed: int = 0,
    params: dict[str, JSONValue] | None = None,
) -> FloatArray:
    """σ̂ of the h-day log return per (origin, h), ``[n_origins, H]``, from ``model`` refit in
    the backtest's folds; NaN in folds whose training candles are too few for it.

    The risk model forecasts each day's one-day variance; their sum over days t+1..t+h is the
    h-day variance (daily returns are close to uncorrelated), so the term structure is kept.
    """
    folds = make_risk_folds(
        candles,
        model=model,
        params=params,
        seed=seed,
        start=start,
        refit_every=refit_every,
        max_horizon=max_horizon,
    )
    blocks = []
    for fold in folds:
        try:
            blocks.append(run_risk_fold(fold).variance)
        except NotEnoughDataError:  # early folds of a short history: burn-in, not a failure
            blocks.append(np.full((fold.origins.size, max_horizon), np.nan))
    return adaptive.sigma_paths(np.concatenate(blocks))


def adaptive_table(
    y: FloatArray,
    spans: list[FoldSpan],
    origins: IntArray,
    forecasts: FloatArray,
    sigma: FloatArray,
    level: int,
    window: int | None,
) -> IntervalTable:
    """Adaptive bounds, VaR and p_up per origin (consecutive), static ones in the (fold,
    horizon) cells where static bands scored better by the fold's start, then burn-in folds
    blanked (:mod:`~btc_predictor.forecasting.interval_choice`)."""
    residuals = residual_table(y, origins, forecasts)  # refuses non-positive forecasts
    weights = direction_weights(y, spans, origins, forecasts)
    columns = _empty(forecasts.shape)
    for h in range(1, forecasts.shape[1] + 1):
        targets = origins + h
        actual = np.full(origins.size, np.nan)
        actual[targets < y.size] = y[targets[targets < y.size]]
        wf = adaptive.walk_forward(
            y[origins],
            forecasts[:, h - 1],
            actual,
            sigma[:, h - 1],
            h,
            level,
            window=window,
            weight=weights,
        )
        values = (wf.lower, wf.upper, wf.var_95, wf.var_99, wf.p_up)
        for column, value in zip(columns, values, strict=True):
            column[:, h - 1] = value
    static = static_table(y, spans, origins, forecasts, level, window)
    chosen = _static_cells(residuals, sigma, spans, origins, window)
    for span, horizons in zip(spans, chosen, strict=True):
        rows = (origins >= span.first) & (origins <= span.last)
        for h in horizons:
            for column, source in zip(columns, _columns_of(static), strict=True):
                column[rows, h - 1] = source[rows, h - 1]
    table = _blank_burn_in(columns, spans, origins)
    return _table(_columns_of(table), table.burn_in, chosen)


def _static_cells(
    residuals: FloatArray,
    sigma: FloatArray,
    spans: list[FoldSpan],
    origins: IntArray,
    window: int | None,
) -> list[tuple[int, ...]]:
    """Per fold, the horizons whose static bands beat adaptive ones on the origins realised
    by the fold's first day (one causal replay per horizon, cut per fold)."""
    chosen: list[list[int]] = [[] for _ in spans]
    for h in range(1, residuals.shape[1] + 1):
        scaled, plain = interval_choice.band_scores(
            residuals[:, h - 1], sigma[:, h - 1], h, window=window
        )
        for i, span in enumerate(spans):
            seen = origins + h <= span.first
            if not interval_choice.scaled_wins(scaled[seen], plain[seen], h):
                chosen[i].append(h)
    return [tuple(c) for c in chosen]


def _columns_of(table: IntervalTable) -> list[FloatArray]:
    """The five columns of ``table`` in :func:`_empty`'s order."""
    return [table.lower, table.upper, table.var_95, table.var_99, table.p_up]


def _blank_burn_in(
    columns: list[FloatArray], spans: list[FoldSpan], origins: IntArray
) -> IntervalTable:
    """Blank every fold whose first origin lacks an interval or VaR at some horizon."""
    burn_in = []
    for span in spans:
        first = int(np.flatnonzero(origins == span.first)[0])
        missing = bool(np.isnan(columns[0][first]).any() or np.isnan(columns[3][first]).any())
        burn_in.append(missing)
        if missing:
            rows = (origins >= span.first) & (origins <= span.last)
            for column in columns:
                column[rows] = math.nan
    return _table(columns, burn_in)
