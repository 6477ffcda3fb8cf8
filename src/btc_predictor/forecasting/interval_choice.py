"""Per horizon, σ̂-scaled adaptive intervals only where they beat static ones on realised days.

Scaling the conformal score by σ̂ pays when σ̂ tracks the size of the coming move: at h=1 the
adaptive 90% intervals score 3.5% (BTC) / 2.7% (ETH) better Winkler than static ones at the
same coverage. Over a week it need not: in the walk-forward bench (lstm, 2020-01-01 →) the
h=7 adaptive intervals scored 11–15% *worse* (wider for the same coverage), because the 7-day
σ̂ explains less of the 7-day move than its noise adds to the band. So each horizon takes the
method with the lower mean interval score on days already realised — static only when its
advantage is significant (Diebold–Mariano on the daily interval scores, HAC lag h−1 for the
overlapping h-day targets, one-sided p < 0.05: H₀ "static is no better"), since adaptive is
the default and a small sample's noise must not switch it off:

- training: over the version's holdout, both methods replayed day by day (each origin's band
  from scores realised before it), so the choice is out of sample; stored in meta.json;
- walk-forward backtests: per fold, over the origins realised by the fold's first day.

The interval score (Winkler, in log-price units) of a band ``±q`` around the forecast for a log
residual ``r`` is ``2q + (2/α)·max(|r| − q, 0)``: width plus the miss penalty, a proper score
for the ``(1 − α)`` interval (Gneiting & Raftery 2007), so a wider band only wins by covering
more. Ties, insignificant differences and too few comparable days keep adaptive.

Measured before the significance rule (``bench/risk_intervals.py``, naive, mean comparison
only): ETH's short history (21 months) switched 6 of 28 folds to static at h=1 on noise, and
its worst 90-day h=1 coverage fell from 0.82 to 0.78; BTC chose static at h=7 in 74 of 79
folds and at h=1 in none.
"""

from __future__ import annotations

import bisect
import math
from collections import deque

import numpy as np
import numpy.typing as npt

from btc_predictor.forecasting import adaptive, metrics
from btc_predictor.forecasting.base import FloatArray
from btc_predictor.forecasting.intervals import DEFAULT_WINDOW, MIN_RESIDUALS

# The level the choice is made at: the headline 90%, the same for every served level so one
# distribution serves intervals, VaR and p_up of a horizon.
CHOICE_LEVEL = 90
# Fewer comparable days than this keep adaptive whatever the test says (a quarter of days).
MIN_COMPARED = 90
# Static replaces adaptive only when its lower interval score is significant at this level
# (one-sided: the question is only whether static is better).
SWITCH_ALPHA = 0.05


def band_scores(
    residuals: npt.ArrayLike,
    sigma: npt.ArrayLike,
    h: int,
    *,
    level: int = CHOICE_LEVEL,
    window: int | None = DEFAULT_WINDOW,
) -> tuple[FloatArray, FloatArray]:
    """Per origin, the interval scores of the adaptive and of the static band (NaN where
    either has no band yet or the residual is unknown).

    ``residuals[j]`` is origin ``j``'s log residual at horizon ``h`` (consecutive origins),
    ``sigma[j]`` its σ̂. Both bands are replayed causally: origin ``j``'s band reads only
    scores whose target was realised by ``j``, so any prefix of the output equals a replay
    of that prefix alone.
    """
    r = np.abs(np.asarray(residuals, dtype=np.float64).reshape(-1))
    s = np.asarray(sigma, dtype=np.float64).reshape(-1)
    good = np.isfinite(s) & (s > 0)
    scaled = np.where(good, r / np.where(good, s, 1.0), np.nan)
    fraction = level / 100.0
    q_adaptive = replay(scaled, h, fraction, step=adaptive.DEFAULT_ETA, window=window) * s
    q_static = replay(r, h, fraction, step=0.0, window=window)
    alpha = 1.0 - fraction
    return _interval_score(r, q_adaptive, alpha), _interval_score(r, q_static, alpha)


def replay(
    scores: FloatArray, h: int, level: float, *, step: float, window: int | None
) -> FloatArray:
    """The tracker's quantile per origin at one level (``step`` = η; 0: plain split conformal),
    equal to ``adaptive.quantile_path(scores, [level], h, …)[:n, 0]``.

    A sorted window kept with bisect instead of one sort per row: the choice replays 60
    series per price training, and the general replay took 1.5 s of a 0.3 s drift training
    (580 holdout days x 30 horizons); this one takes ~0.1 s.
    """
    need = max(MIN_RESIDUALS, math.ceil(level / (1.0 - level) - 1e-9))
    out = np.full(scores.size, np.nan)
    kept: list[float] = []  # the window, sorted
    order: deque[float] = deque()  # the window in arrival order
    theta, count = 0.0, 0
    for i in range(scores.size):
        j = i - h
        if j >= 0 and math.isfinite(scores[j]):
            if not math.isnan(out[j]):  # only days that had a band move the level
                theta += step * (float(scores[j] > out[j]) - (1.0 - level))
            bisect.insort(kept, float(scores[j]))
            order.append(float(scores[j]))
            count += 1
            if window is not None and len(order) > window:
                del kept[bisect.bisect_left(kept, order.popleft())]
        if count >= need:
            n = len(kept)
            rank = min(max(math.ceil((n + 1) * level - 1e-9), 1), n)
            out[i] = max(kept[rank - 1] + theta, 0.0)
    return out


def _interval_score(abs_residual: FloatArray, q: FloatArray, alpha: float) -> FloatArray:
    """``2q + (2/α)·max(|r| − q, 0)``; NaN where ``q`` or ``|r|`` is unknown."""
    with np.errstate(invalid="ignore"):
        return 2.0 * q + (2.0 / alpha) * np.maximum(abs_residual - q, 0.0)


def scaled_wins(adaptive_scores: npt.ArrayLike, static_scores: npt.ArrayLike, h: int) -> bool:
    """True unless static bands scored significantly lower over the days both have (one-sided
    DM test at :data:`SWITCH_ALPHA`; under :data:`MIN_COMPARED` such days keep adaptive)."""
    a = np.asarray(adaptive_scores, dtype=np.float64).reshape(-1)
    b = np.asarray(static_scores, dtype=np.float64).reshape(-1)
    both = np.isfinite(a) & np.isfinite(b)
    if np.count_nonzero(both) < MIN_COMPARED:
        return True
    dm = metrics.diebold_mariano(a[both], b[both], h=h)  # scores ≥ 0: |a| − |b| = a − b
    return dm is None or not (dm.statistic > 0 and dm.pvalue / 2 < SWITCH_ALPHA)


def static_horizons(
    residuals_per_horizon: list[FloatArray], sigma: FloatArray, *, window: int | None
) -> list[int]:
    """The horizons (1-based) whose static bands beat adaptive ones over the whole series:
    ``residuals_per_horizon[h-1][j]`` and ``sigma[j, h-1]`` as in
    :func:`~btc_predictor.forecasting.adaptive.holdout_scores`."""
    out = []
    for h, residuals in enumerate(residuals_per_horizon, start=1):
        r = np.asarray(residuals, dtype=np.float64).reshape(-1)
        if h > sigma.shape[1]:
            break
        a, b = band_scores(r, sigma[: r.size, h - 1], h, window=window)
        if not scaled_wins(a, b, h):
            out.append(h)
    return out
