"""Volatility-aware conformal intervals with an online level correction, VaR and ``p_up``.

Score: ``s = |log(actual / forecast)| / σ̂`` where σ̂ is the forecast standard deviation of the
log return over the forecast's horizon ``h``. The caller passes σ̂ per horizon; a risk model
that only forecasts the one-day σ is scaled with :func:`horizon_sigma` (σ₁·√h: daily crypto
returns are close to uncorrelated, so variances add). Scores are unit-free, so one step size
fits every asset and regime. Bounds: ``forecast · exp(±q · σ̂_now)``, ``q`` the conformal
quantile of the most recent ``window`` stored scores, corrected online from realised misses:

- ``aci`` (Gibbs & Candès 2021): the miscoverage ``α_{t+1} = α_t + γ(α − err_t)`` sets the
  order statistic (its rank is clipped to 1..n instead of going infinite).
- ``tracker`` (quantile tracker, the integral term of conformal PID, Angelopoulos, Candès &
  Tibshirani 2023): ``q_t = Q_window(L) + θ_t``, ``θ_{t+1} = θ_t + η(err_t − α)``; a run of
  misses widens the band in σ units and never makes it infinite.
- ``normalised``: the normalised score quantile without online correction.

Timing (no look-ahead): rows are consecutive forecast origins; the score of row ``j`` (target
``j + h``) becomes usable — in the window and as a miss/hit — at row ``j + h``. The whole state
is a replay of the stored scores, so it never depends on traffic; serving's quantile is the
row after the last stored score's target (:func:`adaptive_quantiles`).

The predictive distribution of the target close is ``forecast · exp(σ̂ · Z)`` with ``Z``
symmetric and ``|Z|`` quantile function ``q(L)`` (the adaptive quantiles above). Intervals,
VaR and ``p_up`` all read it: VaR_q is the lower bound of the (2q − 1) interval, so VaR 95 =
the 90% interval's lower bound, VaR 99 = the 98% one's; ``p_up`` is exactly 0.5 when the
forecast equals the last close.

Measured (``bench/adaptive_intervals.py``; naive forecasts, σ̂ = EWMA(0.94) of daily log
returns realised by the origin, window 365, targets 2020-01-01 to the file's end; coverage /
worst rolling 90 days / coverage per tercile of the 30-day realised volatility / width in %):

  BTC (to 2025-11-29)  h=1, 90%                                 h=7, 90%
  static               0.911 0.778 0.958/0.914/0.860 10.49      0.909 0.644 28.41
  normalised           0.900 0.833 0.915/0.885/0.901 10.43      0.898 0.700 31.31
  aci γ 0.005          0.900 0.844 0.907/0.883/0.908 10.56      0.896 0.767 31.42
  aci γ 0.02           0.899 0.856 0.900/0.885/0.912 10.76      0.897 0.767 41.90
  tracker η 0.02       0.900 0.844 0.910/0.882/0.908 10.58      0.896 0.711 31.69
  tracker η 0.05       0.900 0.844 0.906/0.885/0.910 10.50      0.896 0.756 31.55
  ETH (to 2021-10-15)
  static               0.875 0.789 0.940/0.885/0.798 15.65      0.879 0.744 41.91
  aci γ 0.005          0.899 0.822 0.881/0.881/0.936 18.35      0.907 0.789 67.29
  aci γ 0.01           0.899 0.833 0.890/0.872/0.936 18.73      0.908 0.811 90.29
  tracker η 0.02       0.899 0.833 0.885/0.876/0.936 17.97      0.902 0.789 61.74
  tracker η 0.05       0.898 0.822 0.881/0.872/0.940 18.35      0.908 0.811 66.06

80% / 95% at h=1 (tracker 0.05): BTC 0.801 / 0.948, ETH 0.801 / 0.951. ACI's width runs
away at h=7 after runs of (overlapping) misses — its clipped rank sits on the window maximum
(ETH 90% width 90.3% at γ 0.01 vs 66.1% for the tracker at the same coverage and worst90);
the tracker stays bounded, hence the default ``tracker``. η = 0.05 over 0.02: same BTC h=1,
better BTC h=7 (worst90 0.756 vs 0.711) and synthetic terciles (below); 0.02 is better on
ETH's 21 months (worst90 0.833 vs 0.822, VaR 95 Kupiec p 0.15 vs 0.04).
VaR at h=1 (tracker 0.05): violation rate / Kupiec p / Christoffersen p — BTC 95: 0.046 / 0.37
/ 0.82, 99: 0.010 / 0.93 / 0.22; ETH 95: 0.034 / 0.04 / 0.20, 99: 0.008 / 0.53 / 0.78. ETH
rose on 56% of days: its 90% misses were 3.4% below and 6.9% above, and a symmetric
distribution puts the 5% tail at the lower bound (BTC: 4.6% / 5.4%).
Synthetic GARCH(1,1)-t5 (12,000 days, seeds 1–3, σ̂ = EWMA 0.97): tracker 0.05 covers
0.8996–0.9008 overall and 0.892–0.907 per realised-volatility tercile (η 0.02: 0.891–0.914;
aci 0.005: 0.891–0.912); static 0.798–0.812 in the high tercile.

Cost: a replay over 2,000 stored scores takes ~40 ms for the 40-level p_up grid (one core).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from btc_predictor.errors import InvalidInputError
from btc_predictor.forecasting.base import FloatArray
from btc_predictor.forecasting.intervals import DEFAULT_WINDOW, MIN_RESIDUALS, check_level

Method: TypeAlias = Literal["aci", "tracker", "normalised"]
METHODS: tuple[Method, ...] = ("aci", "tracker", "normalised")
DEFAULT_METHOD: Method = "tracker"  # see the measured table above
DEFAULT_GAMMA = 0.005  # ACI step on α per realised day
DEFAULT_ETA = 0.05  # tracker step, in σ units (scores are normalised)
# |Z| quantile grid (fractions) behind p_up: fine near 0, where |m|/σ̂ usually lands.
P_UP_GRID = np.concatenate([np.arange(0.01, 0.2, 0.01), np.arange(0.2, 1.0, 0.05), [0.98, 0.99]])


def horizon_sigma(sigma_1d: npt.ArrayLike, h: int) -> FloatArray:
    """σ of the h-day log return from the one-day σ: σ₁·√h (uncorrelated daily returns)."""
    if h < 1:
        raise InvalidInputError(f"horizon must be >= 1, got `{h}`")
    return np.asarray(sigma_1d, dtype=np.float64) * math.sqrt(h)


def sigma_paths(variance: npt.ArrayLike) -> FloatArray:
    """σ̂ of the h-day log return per (origin, h) from one-day variances ``[n, H]``: the square
    root of their sum over days t+1..t+h (keeps a risk model's term structure; what the
    backtest, training and serving all use)."""
    v = np.asarray(variance, dtype=np.float64)
    return np.sqrt(np.cumsum(v, axis=-1))


def normalised_scores(
    actual: npt.ArrayLike, forecast: npt.ArrayLike, sigma: npt.ArrayLike
) -> FloatArray:
    """Scores ``|log(actual/forecast)| / σ̂``, elementwise; NaN where any input is NaN."""
    a, f, s = (np.asarray(v, dtype=np.float64) for v in (actual, forecast, sigma))
    if not a.shape == f.shape == s.shape:
        raise InvalidInputError("scores need actuals, forecasts and sigmas of equal shape")
    known = np.isfinite(a) & np.isfinite(f) & np.isfinite(s)
    if np.any((a[known] <= 0) | (f[known] <= 0) | (s[known] <= 0)):
        raise InvalidInputError("scores need positive actuals, forecasts and sigmas")
    out = np.full(a.shape, np.nan)
    out[known] = np.abs(np.log(a[known] / f[known])) / s[known]
    return out


def holdout_scores(
    residuals_per_horizon: Sequence[npt.ArrayLike], sigma: npt.ArrayLike
) -> list[FloatArray]:
    """Normalised scores ``|r| / σ̂`` per horizon: ``residuals_per_horizon[h-1][j]`` is origin
    ``j``'s log residual (consecutive origins), ``sigma[j, h-1]`` its σ̂ (NaN where unknown)."""
    s = np.asarray(sigma, dtype=np.float64)
    out = []
    for h, residuals in enumerate(residuals_per_horizon, start=1):
        r = np.abs(np.asarray(residuals, dtype=np.float64).reshape(-1))
        if r.size > s.shape[0] or h > s.shape[1]:
            raise InvalidInputError("σ̂ covers fewer origins or horizons than the residuals")
        sg = s[: r.size, h - 1]
        good = np.isfinite(sg) & (sg > 0)
        out.append(np.where(good, r / np.where(good, sg, 1.0), np.nan))
    return out


# --- one step of each online correction -----------------------------------------------------


def aci_step(alpha_t: float, alpha: float, miss: bool, gamma: float) -> float:
    """ACI: ``α_{t+1} = α_t + γ(α − err_t)`` (Gibbs & Candès 2021, eq. 2)."""
    return alpha_t + gamma * (alpha - float(miss))


def tracker_step(theta_t: float, alpha: float, miss: bool, eta: float) -> float:
    """Quantile tracker: ``θ_{t+1} = θ_t + η(err_t − α)`` (Angelopoulos et al. 2023)."""
    return theta_t + eta * (float(miss) - alpha)


def aci_alphas(misses: Sequence[bool], alpha: float, gamma: float) -> FloatArray:
    """The ACI miscoverage before each day and after the last: ``len(misses) + 1`` values."""
    out = [alpha]
    for miss in misses:
        out.append(aci_step(out[-1], alpha, miss, gamma))
    return np.array(out)


# --- replay over stored scores ---------------------------------------------------------------


def _order_statistic(window: FloatArray, levels: FloatArray) -> FloatArray:
    """The ceil((n+1)·L)-th smallest of sorted ``window`` per level; rank clipped to 1..n."""
    n = window.size
    ranks = np.clip(np.ceil((n + 1) * levels - 1e-9), 1, n).astype(np.int64)
    out: FloatArray = window[ranks - 1]
    return np.where(levels <= 0, 0.0, out)


def quantile_path(
    scores: npt.ArrayLike,
    levels: npt.ArrayLike,
    h: int,
    *,
    method: Method = DEFAULT_METHOD,
    step: float | None = None,
    window: int | None = DEFAULT_WINDOW,
    min_scores: int | None = None,
) -> FloatArray:
    """Quantiles ``[n + h, n_levels]``: row ``i`` = the ``q`` at origin ``i`` (NaN in burn-in).

    ``scores[j]`` is the score of origin ``j`` (NaN if unknown); it is used from row ``j + h``
    on. ``levels`` are nominal coverages as fractions. ``step`` is γ (aci) or η (tracker).
    The last row is what a forecast made on the last target day uses. Burn-in lasts until
    ``min_scores`` scores are usable (default: what the highest level needs, see
    :func:`~btc_predictor.forecasting.intervals.min_residuals`).
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    lv = np.asarray(levels, dtype=np.float64).reshape(-1)
    if h < 1:
        raise InvalidInputError(f"horizon must be >= 1, got `{h}`")
    if method not in METHODS:
        raise InvalidInputError(f"unknown interval method `{method}`")
    if not lv.size or np.any((lv <= 0) | (lv >= 1)):
        raise InvalidInputError("coverage levels must be fractions strictly between 0 and 1")
    step = _default_step(method) if step is None else step
    need = _min_scores(lv) if min_scores is None else min_scores
    alpha = 1.0 - lv
    state = alpha.copy() if method == "aci" else np.zeros_like(lv)
    out = np.full((s.size + h, lv.size), np.nan)
    usable, count = np.empty(s.size), 0  # realised scores in time order: a preallocated list
    for i in range(out.shape[0]):
        j = i - h
        if j >= 0 and math.isfinite(s[j]):
            if not np.isnan(out[j, 0]):  # only days that had an interval move the level
                state = _update(state, alpha, s[j] > out[j], method, step)
            usable[count], count = s[j], count + 1
        if count >= need:
            first = 0 if window is None else max(0, count - window)
            out[i] = _quantiles(np.sort(usable[first:count]), lv, state, method)
    return out


def _min_scores(levels: FloatArray) -> int:
    """``max(MIN_RESIDUALS, ceil(L/(1−L)))`` for the highest level (99 at 99%)."""
    top = float(levels.max()) if levels.size else 0.5
    return max(MIN_RESIDUALS, math.ceil(top / (1.0 - top) - 1e-9))


def _default_step(method: Method) -> float:
    """γ for aci, η for tracker; unused otherwise."""
    return DEFAULT_ETA if method == "tracker" else DEFAULT_GAMMA


def _update(
    state: FloatArray, alpha: FloatArray, miss: npt.NDArray[np.bool_], method: Method, step: float
) -> FloatArray:
    """One online step for every level at once (:func:`aci_step`, :func:`tracker_step`)."""
    if method == "aci":
        return state + step * (alpha - miss)
    if method == "tracker":
        return state + step * (miss - alpha)
    return state


def _quantiles(
    window: FloatArray, levels: FloatArray, state: FloatArray, method: Method
) -> FloatArray:
    """The quantile per level from a sorted window and the correction state."""
    if method == "aci":
        return _order_statistic(window, 1.0 - state)
    base = _order_statistic(window, levels)
    return np.maximum(base + state, 0.0) if method == "tracker" else base


def adaptive_quantiles(
    scores: npt.ArrayLike,
    levels: Sequence[int],
    h: int,
    *,
    method: Method = DEFAULT_METHOD,
    step: float | None = None,
    window: int | None = DEFAULT_WINDOW,
) -> FloatArray | None:
    """Serving: the ``q`` per integer-percent level for a forecast made now.

    ``scores`` are the stored scores of one (asset, price version, horizon), one per
    consecutive origin day, in time order, the last one's target being the last closed day.
    None while fewer than ``MIN_RESIDUALS`` scores are stored (callers fall back to static).
    """
    for level in levels:
        check_level(level)
    path = quantile_path(
        scores, np.array(levels) / 100.0, h, method=method, step=step, window=window
    )
    last = path[-1]
    return None if np.isnan(last[0]) else last


# --- the predictive distribution: intervals, VaR and p_up ------------------------------------


@dataclass(frozen=True)
class Predictive:
    """``close_target = forecast · exp(σ̂·Z)``, Z symmetric, ``|Z|`` quantiles on a grid."""

    last_close: float
    forecast: float
    sigma: float
    levels: FloatArray  # increasing coverage fractions
    quantiles: FloatArray  # q(L) of |Z| at those levels, non-decreasing

    def interval(self, level: float) -> tuple[float, float]:
        """Bounds at coverage ``level`` (a fraction on the grid)."""
        q = self.quantile(level)
        return self.forecast * math.exp(-q * self.sigma), self.forecast * math.exp(q * self.sigma)

    def quantile(self, level: float) -> float:
        """``q(level)`` of |Z|; ``level`` must be on the grid."""
        hit = np.flatnonzero(np.isclose(self.levels, level))
        if not hit.size:
            raise InvalidInputError(f"level {level} is not on the predictive grid")
        return float(self.quantiles[hit[0]])

    def var(self, q: float) -> float:
        """Loss in % of the last close not exceeded with probability ``q`` (negative = a gain)."""
        lower, _ = self.interval(round(2 * q - 1, 6))
        return (1.0 - lower / self.last_close) * 100.0

    def p_up(self, weight: float = 1.0) -> float:
        """P(close at target > last close); 0.5 exactly when the forecast is the last close.

        ``weight`` (0..1) shrinks the location toward the last close first: the distribution's
        centre moves only as far as the evidence of skill allows (:func:`direction_weight`).
        """
        m = weight * math.log(self.forecast / self.last_close) / self.sigma
        grid_q = np.concatenate([[0.0], np.maximum.accumulate(self.quantiles)])
        grid_l = np.concatenate([[0.0], self.levels])
        inside = float(np.interp(abs(m), grid_q, grid_l))  # P(|Z| <= |m|)
        return 0.5 + math.copysign(0.5 * inside, m) if m else 0.5


# Holdout significance at which a forecast's direction is taken at full weight (see below).
SKILL_ALPHA = 0.05


def direction_weight(dm_pvalue: float | None, mase: float | None) -> float:
    """How far ``p_up`` may move the location off the last close: ``1 − p/α`` (α = 0.05) when
    the point forecast beats naive on its holdout (MASE < 1) with Diebold–Mariano p < α, else
    0 (``p_up`` = 0.5: no claimed direction without evidence of skill).

    Measured (``bench/risk_intervals.py``, lstm, h=1, targets 2020-01-01..): lstm ties naive
    (Brier skill −0.007 BTC, −0.002 ETH) yet its raw ``p_up`` ranged 0.43–0.68 (BTC), for a
    Brier of 0.2518 (BTC) / 0.2506 (ETH) and calibration error 0.0123 / 0.0642. Its DM p vs
    naive is far above 0.05 in every fold, so the weight is 0 and ``p_up`` is 0.5: Brier
    0.2500 on both, calibration error 0.0125 (BTC) / 0.0596 (ETH, which rose on 56% of days:
    what a constant 0.5 misses); the same as ``naive`` on the same days.
    """
    if dm_pvalue is None or mase is None or not (math.isfinite(dm_pvalue) and mase < 1.0):
        return 0.0
    return float(min(1.0, max(0.0, 1.0 - dm_pvalue / SKILL_ALPHA)))


def var_levels(var_qs: Sequence[float]) -> list[float]:
    """Interval coverages that VaR at these probabilities reads: 2q − 1 (0.95 → 0.90)."""
    return [round(2 * q - 1, 6) for q in var_qs]


VAR_QS = (0.95, 0.99)


def predictive_grid(levels: Sequence[int] = ()) -> FloatArray:
    """The |Z| levels (fractions) a forecast needs: p_up's grid, VaR 95/99's, and ``levels``."""
    for level in levels:
        check_level(level)
    extra = [lv / 100.0 for lv in levels] + var_levels(VAR_QS)
    return np.unique(np.round(np.concatenate([P_UP_GRID, extra]), 6))


def current_predictive(
    scores: npt.ArrayLike,
    h: int,
    last_close: float,
    forecast: float,
    sigma: float,
    *,
    levels: Sequence[int] = (),
    method: Method = DEFAULT_METHOD,
    step: float | None = None,
    window: int | None = DEFAULT_WINDOW,
) -> Predictive | None:
    """Serving: the distribution of one horizon's forecast made now from its stored scores.

    ``scores`` as for :func:`adaptive_quantiles`; ``sigma`` is σ̂ of the h-day log return now.
    Its ``interval(L/100)`` for each of ``levels``, ``var(0.95)``, ``var(0.99)`` and
    ``p_up()`` are what a forecast point reports. None while too few scores are stored.
    """
    grid = predictive_grid(levels)
    last = quantile_path(scores, grid, h, method=method, step=step, window=window)[-1]
    if np.isnan(last[0]):
        return None
    return Predictive(float(last_close), float(forecast), float(sigma), grid, last)


# --- walk-forward helper ---------------------------------------------------------------------


@dataclass(frozen=True)
class WalkForward:
    """Per-origin bounds, VaR (%) and p_up; NaN in burn-in. ``static_*`` = plain split conformal.

    The adaptive columns start once 99 scores are realised (the 98%/99% levels of VaR 99 and
    the p_up grid need them), the static ones at ``min_residuals(level)``: compare the two on
    the rows where both exist.
    """

    lower: FloatArray
    upper: FloatArray
    static_lower: FloatArray
    static_upper: FloatArray
    var_95: FloatArray
    var_99: FloatArray
    p_up: FloatArray


def walk_forward(
    origin_close: npt.ArrayLike,
    forecast: npt.ArrayLike,
    actual: npt.ArrayLike,
    sigma: npt.ArrayLike,
    h: int,
    level: int,
    *,
    method: Method = DEFAULT_METHOD,
    step: float | None = None,
    window: int | None = DEFAULT_WINDOW,
    weight: npt.ArrayLike | None = None,
) -> WalkForward:
    """Adaptive and static bounds for consecutive origins, each from scores realised before it.

    ``actual[i]`` is the close at origin ``i + h`` (NaN when not realised); ``sigma[i]`` the σ̂
    of the h-day log return known at origin ``i``; ``weight[i]`` the p_up location weight
    known there (:func:`direction_weight`; default 1).
    """
    check_level(level)
    o, f, a, sg = (
        np.asarray(v, dtype=np.float64).reshape(-1) for v in (origin_close, forecast, actual, sigma)
    )
    grid = predictive_grid([level])
    path = quantile_path(
        normalised_scores(a, f, sg), grid, h, method=method, step=step, window=window
    )[: o.size]
    static = quantile_path(
        normalised_scores(a, f, np.ones_like(sg)),  # σ = 1: plain |log residual|
        [level / 100.0],
        h,
        method="normalised",
        window=window,
    )[: o.size, 0]
    at = int(np.flatnonzero(np.isclose(grid, level / 100.0))[0])
    w = np.ones(o.size) if weight is None else np.asarray(weight, dtype=np.float64).reshape(-1)
    rows = [_row(o[i], f[i], sg[i], grid, path[i], float(w[i])) for i in range(o.size)]
    return WalkForward(
        lower=f * np.exp(-path[:, at] * sg),
        upper=f * np.exp(path[:, at] * sg),
        static_lower=f * np.exp(-static),
        static_upper=f * np.exp(static),
        var_95=np.array([r[0] for r in rows]),
        var_99=np.array([r[1] for r in rows]),
        p_up=np.array([r[2] for r in rows]),
    )


def _row(
    last_close: float,
    forecast: float,
    sigma: float,
    grid: FloatArray,
    q: FloatArray,
    weight: float = 1.0,
) -> tuple[float, float, float]:
    """(var_95, var_99, p_up) of one origin; NaN in burn-in."""
    if np.isnan(q[0]):
        return math.nan, math.nan, math.nan
    dist = Predictive(float(last_close), float(forecast), float(sigma), grid, q)
    return dist.var(0.95), dist.var(0.99), dist.p_up(weight)
