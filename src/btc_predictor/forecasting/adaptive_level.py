"""The coverage level the adaptive correction actually applies for a nominal one.

The tracker moves the quantile by ``θ`` σ-units and ACI moves the order statistic; either way
the served quantile ``q`` sits at some rank of the score window. That rank's share,
``#{s ≤ q} / (n + 1)`` (the split-conformal convention behind ``ceil((n+1)·L)``), is the level
the intervals really apply: near the nominal one in a steady regime, far from it while the
intervals chase a regime change (a run of misses pushes it up, a calm spell down).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from btc_predictor.forecasting.adaptive import DEFAULT_METHOD, Method, adaptive_quantiles
from btc_predictor.forecasting.intervals import DEFAULT_WINDOW


def applied_level(
    scores: npt.ArrayLike,
    h: int,
    level: int,
    *,
    method: Method = DEFAULT_METHOD,
    step: float | None = None,
    window: int | None = DEFAULT_WINDOW,
) -> float | None:
    """The level (fraction) applied now for nominal ``level`` %; None while in burn-in.

    ``scores`` as for :func:`~btc_predictor.forecasting.adaptive.adaptive_quantiles` (NaN or
    None: an origin without a score)."""
    values = np.asarray(scores, dtype=np.float64).reshape(-1)  # None becomes NaN
    q = adaptive_quantiles(values, [level], h, method=method, step=step, window=window)
    if q is None:
        return None
    known = values[np.isfinite(values)]
    recent = known if window is None else known[-window:]
    return float(np.count_nonzero(recent <= q[0])) / (recent.size + 1)
