"""Forecast accuracy metrics: the one place where every reported number is defined.

Conventions (DESIGN §6):
- Inputs are 1-D array-likes of equal length, aligned day by day.
- Undefined values (empty input, zero denominators) are ``None``, never NaN, so every
  result is JSON-friendly. Rates are fractions 0..1; MAPE is in percent.
- MASE = MAE(model) / MAE(naive) on the same target days and horizon (the caller passes
  the naive forecast for exactly those days).
- Diebold–Mariano: two-sided, absolute-error loss, Newey–West (Bartlett) long-run variance
  with lag h−1, Harvey–Leybourne–Newbold small-sample correction, Student t with n−1 df.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from btc_predictor.errors import InvalidInputError
from btc_predictor.forecasting.base import FloatArray

_CF_MAX_ITER = 400
_CF_EPS = 1e-15
_CF_TINY = 1e-300


def _arrays(*values: npt.ArrayLike) -> list[FloatArray]:
    """Convert to 1-D float64 arrays of one common length, or raise InvalidInputError."""
    arrays = [np.asarray(v, dtype=np.float64).reshape(-1) for v in values]
    if len({a.size for a in arrays}) > 1:
        sizes = ", ".join(str(a.size) for a in arrays)
        raise InvalidInputError(f"metric inputs must have equal lengths, got `{sizes}`")
    return arrays


def _finite(value: float) -> float | None:
    """A plain float, or None when the value is NaN or infinite."""
    return float(value) if math.isfinite(value) else None


def rmse(actual: npt.ArrayLike, forecast: npt.ArrayLike) -> float | None:
    """Root mean squared error."""
    a, f = _arrays(actual, forecast)
    return _finite(math.sqrt(float(np.mean((f - a) ** 2)))) if a.size else None


def mae(actual: npt.ArrayLike, forecast: npt.ArrayLike) -> float | None:
    """Mean absolute error."""
    a, f = _arrays(actual, forecast)
    return _finite(float(np.mean(np.abs(f - a)))) if a.size else None


def mape(actual: npt.ArrayLike, forecast: npt.ArrayLike) -> float | None:
    """Mean absolute percentage error, in percent; None if any actual is zero."""
    a, f = _arrays(actual, forecast)
    if not a.size or np.any(a == 0):
        return None
    return _finite(100.0 * float(np.mean(np.abs((f - a) / a))))


def r2(actual: npt.ArrayLike, forecast: npt.ArrayLike) -> float | None:
    """Coefficient of determination; None for fewer than 2 days or constant actuals."""
    a, f = _arrays(actual, forecast)
    if a.size < 2:
        return None
    ss_tot = float(np.sum((a - a.mean()) ** 2))
    if ss_tot == 0:
        return None
    return _finite(1.0 - float(np.sum((a - f) ** 2)) / ss_tot)


def mase(actual: npt.ArrayLike, forecast: npt.ArrayLike, naive: npt.ArrayLike) -> float | None:
    """MAE(model) / MAE(naive) on the same days; None when the naive MAE is zero."""
    a, f, n = _arrays(actual, forecast, naive)
    model_mae, naive_mae = mae(a, f), mae(a, n)
    if model_mae is None or not naive_mae:
        return None
    return _finite(model_mae / naive_mae)


def directional_accuracy(
    origin: npt.ArrayLike, actual: npt.ArrayLike, forecast: npt.ArrayLike
) -> float | None:
    """Share of days where the forecast's move from the origin close has the actual's sign.

    Days with no actual move (actual == origin) are excluded. A day where the forecast makes
    no call (forecast == origin) counts as a miss; if it makes no call on any day (the naive
    forecast), the metric is undefined and None.
    """
    o, a, f = _arrays(origin, actual, forecast)
    moved = a != o
    actual_sign, forecast_sign = np.sign(a[moved] - o[moved]), np.sign(f[moved] - o[moved])
    if not actual_sign.size or not np.any(forecast_sign):
        return None
    return float(np.mean(actual_sign == forecast_sign))


def coverage(actual: npt.ArrayLike, lower: npt.ArrayLike, upper: npt.ArrayLike) -> float | None:
    """Share of actuals inside the closed interval [lower, upper]."""
    a, lo, hi = _arrays(actual, lower, upper)
    return float(np.mean((a >= lo) & (a <= hi))) if a.size else None


def interval_width(lower: npt.ArrayLike, upper: npt.ArrayLike) -> float | None:
    """Mean interval width, in price units."""
    lo, hi = _arrays(lower, upper)
    return _finite(float(np.mean(hi - lo))) if lo.size else None


def relative_interval_width(
    lower: npt.ArrayLike, upper: npt.ArrayLike, reference: npt.ArrayLike
) -> float | None:
    """Mean of width / reference price (a fraction; e.g. 0.12 = 12% of the price)."""
    lo, hi, ref = _arrays(lower, upper, reference)
    if not lo.size or np.any(ref == 0):
        return None
    return _finite(float(np.mean((hi - lo) / ref)))


def point_metrics(
    origin: npt.ArrayLike, actual: npt.ArrayLike, forecast: npt.ArrayLike, naive: npt.ArrayLike
) -> dict[str, float | None]:
    """The reported point metrics of a model on one set of target days."""
    return {
        "rmse": rmse(actual, forecast),
        "mae": mae(actual, forecast),
        "mape": mape(actual, forecast),
        "r2": r2(actual, forecast),
        "mase": mase(actual, forecast, naive),
        "directional_accuracy": directional_accuracy(origin, actual, forecast),
    }


def baseline_metrics(actual: npt.ArrayLike, naive: npt.ArrayLike) -> dict[str, float | None]:
    """The naive baseline's metrics shown beside a model's (MASE is 1 by definition)."""
    return {
        "rmse": rmse(actual, naive),
        "mae": mae(actual, naive),
        "mape": mape(actual, naive),
        "r2": r2(actual, naive),
    }


# --- Diebold–Mariano -----------------------------------------------------------------------


@dataclass(frozen=True)
class DMResult:
    """A Diebold–Mariano test of model A against model B.

    ``statistic`` > 0 means A has the larger mean absolute error (A is worse).
    """

    statistic: float
    pvalue: float
    n: int
    h: int


def diebold_mariano(
    errors_a: npt.ArrayLike, errors_b: npt.ArrayLike, h: int = 1
) -> DMResult | None:
    """Two-sided DM test on absolute-error loss (HLN-corrected, Newey–West lag h−1).

    ``errors_*`` are forecast errors (or absolute errors) on the same target days, in time
    order, for forecasts ``h`` days ahead. None when the test is undefined: fewer than 2 days,
    too few days for the HLN factor, or a zero long-run variance with a non-zero mean.
    """
    if h < 1:
        raise InvalidInputError(f"horizon must be >= 1, got `{h}`")
    a, b = _arrays(errors_a, errors_b)
    d = np.abs(a) - np.abs(b)  # loss differential per day
    n = d.size
    if n < 2:
        return None
    if not np.any(d):
        return DMResult(statistic=0.0, pvalue=1.0, n=n, h=h)
    hln_term = (n + 1 - 2 * h + h * (h - 1) / n) / n
    variance = newey_west_variance(d, lags=h - 1)
    if variance <= 0 or hln_term <= 0:
        return None
    statistic = float(np.mean(d)) / math.sqrt(variance / n) * math.sqrt(hln_term)
    pvalue = 2.0 * student_t_sf(abs(statistic), n - 1)
    return DMResult(statistic=statistic, pvalue=min(1.0, pvalue), n=n, h=h)


def newey_west_variance(x: npt.ArrayLike, lags: int) -> float:
    """Long-run variance γ0 + 2·Σ_{k=1..lags} (1 − k/(lags+1))·γk (autocovariances over n)."""
    (values,) = _arrays(x)
    centred: FloatArray = values - float(values.mean())
    n = centred.size
    total: float = float(centred @ centred) / n
    for k in range(1, min(lags, n - 1) + 1):
        weight = 1.0 - k / (lags + 1)
        total += 2.0 * weight * float(centred[k:] @ centred[:-k]) / n
    return total


# --- Student t without scipy --------------------------------------------------------------


def student_t_sf(t: float, df: float) -> float:
    """Upper tail P(T > t) of Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise InvalidInputError(f"degrees of freedom must be positive, got `{df}`")
    tail = 0.5 * regularized_beta(df / (df + t * t), df / 2.0, 0.5)
    return tail if t >= 0 else 1.0 - tail


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) of Student's t with ``df`` degrees of freedom."""
    return 1.0 - student_t_sf(t, df)


def regularized_beta(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (Numerical Recipes §6.4)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    # The continued fraction converges fast only below the mean; use the symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(1.0 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    """Continued fraction for I_x(a, b), evaluated with the modified Lentz method."""
    c, d = 1.0, _nonzero(1.0 - (a + b) * x / (a + 1.0))
    d = 1.0 / d
    result = d
    for m in range(1, _CF_MAX_ITER + 1):
        even = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        for coeff in (even, odd):
            d = 1.0 / _nonzero(1.0 + coeff * d)
            c = _nonzero(1.0 + coeff / c)
            result *= d * c
        if abs(d * c - 1.0) < _CF_EPS:
            break
    return result


def _nonzero(value: float) -> float:
    """Keep Lentz's recurrences away from division by zero."""
    return value if abs(value) > _CF_TINY else _CF_TINY


# --- Range and volatility metrics (risk models, DESIGN §6 "Risk") ---------------------------
# Estimators return one value per day; losses return a mean (None when undefined).

# Smallest daily variance an estimator returns: a zero-range day (high == low, which real files
# contain) is a variance of 0, whose log or QLIKE ratio is undefined. 1e-8 is a daily σ of
# 0.01%, ~550x below the calmest non-flat BTC day of 2014–2025 (5.5e-6).
VARIANCE_FLOOR = 1e-8
_FOUR_LN2 = 4.0 * math.log(2.0)
_GK_CLOSE = 2.0 * math.log(2.0) - 1.0


def parkinson(high: npt.ArrayLike, low: npt.ArrayLike) -> FloatArray:
    """Parkinson variance per day: ln(high/low)² / (4 ln 2), floored at VARIANCE_FLOOR."""
    h, lo = _arrays(high, low)
    return np.maximum(np.log(h / lo) ** 2 / _FOUR_LN2, VARIANCE_FLOOR)


def garman_klass(
    open_: npt.ArrayLike, high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike
) -> FloatArray:
    """Garman–Klass variance per day: ½ ln(H/L)² − (2 ln 2 − 1) ln(C/O)², floored."""
    o, h, lo, c = _arrays(open_, high, low, close)
    value = 0.5 * np.log(h / lo) ** 2 - _GK_CLOSE * np.log(c / o) ** 2
    return np.maximum(value, VARIANCE_FLOOR)


def range_pct(high: npt.ArrayLike, low: npt.ArrayLike, prev_close: npt.ArrayLike) -> FloatArray:
    """The day's range in % of the previous close: (high − low) / prev_close · 100."""
    h, lo, p = _arrays(high, low, prev_close)
    return (h - lo) / p * 100.0


def qlike(realised: npt.ArrayLike, forecast: npt.ArrayLike) -> float | None:
    """Mean QLIKE loss x/f − ln(x/f) − 1 of variance forecasts f for realised variances x."""
    x, f = _arrays(realised, forecast)
    if not x.size:
        return None
    if np.any(x <= 0) or np.any(f <= 0):
        raise InvalidInputError("QLIKE needs positive realised and forecast variances")
    return _finite(float(np.mean(qlike_losses(x, f))))


def qlike_losses(realised: npt.ArrayLike, forecast: npt.ArrayLike) -> FloatArray:
    """Per-day QLIKE losses (for Diebold–Mariano tests on QLIKE)."""
    x, f = _arrays(realised, forecast)
    ratio = x / f
    return ratio - np.log(ratio) - 1.0


def winkler(
    actual: npt.ArrayLike, lower: npt.ArrayLike, upper: npt.ArrayLike, level: int
) -> float | None:
    """Mean Winkler score: width + (2/α)(lower − y)⁺ + (2/α)(y − upper)⁺, α = 1 − level/100."""
    y, lo, hi = _arrays(actual, lower, upper)
    if not 0 < level < 100:
        raise InvalidInputError(f"level must be an integer percent in 1..99, got `{level}`")
    if not y.size:
        return None
    alpha = 1.0 - level / 100.0
    score = (hi - lo) + (2.0 / alpha) * (np.maximum(lo - y, 0.0) + np.maximum(y - hi, 0.0))
    return _finite(float(np.mean(score)))


def range_mase(
    actual: npt.ArrayLike, forecast: npt.ArrayLike, naive_range: npt.ArrayLike
) -> float | None:
    """Range MASE: MAE(range forecast) / MAE(naive range = the origin day's) on the same days."""
    return mase(actual, forecast, naive_range)


# --- Interval calibration, VaR backtests and direction probability (issue 16) ---------------


@dataclass(frozen=True)
class LRTest:
    """A likelihood-ratio test: statistic ~ χ²₁ under the null, and its p-value."""

    statistic: float
    pvalue: float


def chi2_1_sf(x: float) -> float:
    """Upper tail of χ² with 1 dof: P(X > x) = erfc(√(x/2)), exact."""
    return math.erfc(math.sqrt(x / 2.0)) if x > 0 else 1.0


def _xlogy(x: float, y: float) -> float:
    """x·ln(y) with 0·ln(0) = 0 (likelihoods of empty cells)."""
    return 0.0 if x == 0 else x * math.log(y)


def _bernoulli_loglik(ones: float, zeros: float, p: float) -> float:
    """ln L of ``ones`` successes and ``zeros`` failures with success probability ``p``."""
    return _xlogy(ones, p) + _xlogy(zeros, 1.0 - p)


def _violations(values: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """A 1-D boolean array of violation flags."""
    return np.asarray(values, dtype=bool).reshape(-1)


def kupiec_pof(violations: npt.ArrayLike, p: float) -> LRTest | None:
    """Kupiec proportion-of-failures test that the violation rate is ``p`` (e.g. 0.05 for VaR 95).

    LR = −2 ln[(1−p)^(n−x) p^x] + 2 ln[(1−x/n)^(n−x) (x/n)^x]; None for no days.
    """
    if not 0 < p < 1:
        raise InvalidInputError(f"violation probability must be in (0, 1), got `{p}`")
    v = _violations(violations)
    n, x = v.size, int(v.sum())
    if not n:
        return None
    stat = 2.0 * (_bernoulli_loglik(x, n - x, x / n) - _bernoulli_loglik(x, n - x, p))
    stat = max(stat, 0.0)
    return LRTest(statistic=stat, pvalue=chi2_1_sf(stat))


def christoffersen_independence(violations: npt.ArrayLike) -> LRTest | None:
    """Christoffersen (1998) independence test: is a violation as likely after a violation?

    First-order Markov transitions n_ij (i = yesterday, j = today); LR = −2 ln L(π) +
    2 ln L(π01, π11). None when fewer than 2 days or no transition out of one state exists.
    """
    v = _violations(violations).astype(np.int64)
    if v.size < 2:
        return None
    prev, cur = v[:-1], v[1:]
    n00, n01 = int(np.sum((prev == 0) & (cur == 0))), int(np.sum((prev == 0) & (cur == 1)))
    n10, n11 = int(np.sum((prev == 1) & (cur == 0))), int(np.sum((prev == 1) & (cur == 1)))
    if n00 + n01 == 0 or n10 + n11 == 0:
        return None
    pi = (n01 + n11) / (n00 + n01 + n10 + n11)
    pi01, pi11 = n01 / (n00 + n01), n11 / (n10 + n11)
    restricted = _bernoulli_loglik(n01 + n11, n00 + n10, pi)
    markov = _bernoulli_loglik(n01, n00, pi01) + _bernoulli_loglik(n11, n10, pi11)
    stat = max(2.0 * (markov - restricted), 0.0)
    return LRTest(statistic=stat, pvalue=chi2_1_sf(stat))


def brier(p: npt.ArrayLike, outcome: npt.ArrayLike) -> float | None:
    """Mean squared gap between probability and 0/1 outcome."""
    prob, out = _arrays(p, outcome)
    return _finite(float(np.mean((prob - out) ** 2))) if prob.size else None


def brier_skill(p: npt.ArrayLike, outcome: npt.ArrayLike) -> float | None:
    """1 − Brier / 0.25: skill against always saying 0.5 (whose Brier is 0.25 on any days)."""
    score = brier(p, outcome)
    return None if score is None else 1.0 - score / 0.25


def calibration_error(p: npt.ArrayLike, outcome: npt.ArrayLike, bins: int = 10) -> float | None:
    """Σ_b (n_b/n)·|mean p_b − observed rate_b| over ``bins`` equal-width bins of p in [0, 1]."""
    prob, out = _arrays(p, outcome)
    if not prob.size:
        return None
    which = np.clip((prob * bins).astype(np.int64), 0, bins - 1)  # p = 1 joins the top bin
    total = 0.0
    for b in np.unique(which):
        inside = which == b
        total += float(inside.sum()) * abs(float(prob[inside].mean() - out[inside].mean()))
    return total / prob.size


def worst_rolling_coverage(
    actual: npt.ArrayLike, lower: npt.ArrayLike, upper: npt.ArrayLike, window: int = 90
) -> float | None:
    """The lowest coverage over any ``window`` consecutive rows; None for fewer rows."""
    a, lo, hi = _arrays(actual, lower, upper)
    if window < 1:
        raise InvalidInputError(f"window must be >= 1, got `{window}`")
    if a.size < window:
        return None
    inside = np.concatenate([[0], np.cumsum((a >= lo) & (a <= hi))])
    return float(np.min(inside[window:] - inside[:-window])) / window


def coverage_by_vol_tercile(
    actual: npt.ArrayLike, lower: npt.ArrayLike, upper: npt.ArrayLike, vol: npt.ArrayLike
) -> dict[str, float | None]:
    """Coverage on the rows in the low / mid / high third of ``vol`` (a realised volatility).

    Cut at the 1/3 and 2/3 quantiles of ``vol``; ties go to the lower tercile. The backtest
    passes the 30-day realised volatility of daily log returns through each target day.
    """
    a, lo, hi, v = _arrays(actual, lower, upper, vol)
    if not a.size:
        return {"low": None, "mid": None, "high": None}
    cut1, cut2 = np.quantile(v, [1 / 3, 2 / 3])
    groups = {"low": v <= cut1, "mid": (v > cut1) & (v <= cut2), "high": v > cut2}
    return {k: coverage(a[m], lo[m], hi[m]) for k, m in groups.items()}
