"""``har``: a HAR regression on the log range variance (the default risk model).

Recipe. v_t = Parkinson variance of day t (floored); u_t = log v_t − s[weekday(t)], the log
variance net of a weekday profile s (mean log v per weekday minus the overall mean, fitted on
the training days). Regressors at origin t: 1, u_t, mean(u_{t−4..t}), mean(u_{t−21..t})
(daily / weekly / monthly terms, Corsi 2009) and min(r_t, 0) with r_t the day's close-to-close
log return (leverage: falls raise tomorrow's range more than rises). One least-squares fit per
horizon h on training days only (direct forecasts of u_{t+h}). The variance forecast is the
mean E[v_{t+h}] = exp(x·β_h + s[weekday(t+h)])·mean(exp(residuals_h)) (Duan's smearing: log
variance residuals are far from normal, so the lognormal ½s² correction would be biased);
range_pct_h = 100·κ_h·σ_h (``range_scale``).

Evidence (walk-forward, refit every 30 days, H=7, measured in this worktree on BTC candles
from 2015-08-07, after the file's last zero-range day, and ETH from 2017-11-09; MASE = range
MASE vs naive-range, QLIKE gain vs ``garch`` refitted in the same folds):

=====================================  =======================  =======================
variant                                BTC 2020-01..2025-11      ETH 2020-01..2021-10
                                       h1 MASE / QLIKE gain      h1 MASE / QLIKE gain
=====================================  =======================  =======================
plain HAR, Parkinson                   0.788 / +4.2%             0.810 / +5.5%
plain HAR, Garman–Klass                0.792 / +3.2%             0.813 / +6.5%
+ weekday profile                      0.739 / +13.1%            0.783 / +9.0%
+ weekday profile + leverage (chosen)  0.730 / +13.7%            0.768 / +9.9%
=====================================  =======================  =======================

The same ranking holds on BTC 2017-01..2019-12, a period the reported benchmark never scores:
plain Parkinson 0.817 / +4.3%, Garman–Klass 0.827 / +2.7%, + weekday 0.816 / +5.4%, + weekday
+ leverage 0.804 / +5.7% (Garman–Klass with both: 0.811 / +4.5%). Parkinson beats Garman–Klass
as NOTES-RISK expects on 24/7 markets. Tried and left out (gains ≤ 0.5 points, or mixed): a
training window of the last 365/730/1095 days instead of all, logs of averages instead of
averages of logs, a floor at the training 0.5% quantile, a log r² term, the smearing factor
from the last 365 residuals only. The weekday profile is why ``har`` needs ``OHLC.day``.
With BTC's full file (from 2014-11-28, 8 zero-range days) the floor below (LOG_FLOOR_BELOW_MEDIAN)
keeps the chosen recipe at 0.730 / +12.6% (bench/RISK.md).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Self

import numpy as np

from btc_predictor.errors import InvalidInputError
from btc_predictor.forecasting.base import FloatArray, JSONValue
from btc_predictor.forecasting.risk.base import RiskModel, Tensors, range_scale, tensor
from btc_predictor.forecasting.risk.ohlc import ESTIMATORS, OHLC

WEEK, MONTH = 5, 22
N_FEATURES = 5  # intercept, daily, weekly, monthly, leverage
# Fewer training rows than this leave 5 coefficients per horizon poorly determined.
MIN_ROWS = 60
# A day's variance counts as at least 1% of the training median (σ a tenth of a typical
# day's): the global floor (1e-8) puts zero-range days ~11 log units below the median, and
# 8 such days in BTC's 2014–2015 candles alone moved the 2020–2025 h=1 QLIKE from 0.546 to
# 0.658 and range MASE from 0.730 to 0.739. On BTC/ETH the lowest non-zero-range day sits
# 4.6–3.7 log units below the median, so this floor only touches the zero-range days.
LOG_FLOOR_BELOW_MEDIAN = math.log(100.0)


def trailing_mean(values: FloatArray, window: int) -> FloatArray:
    """mean(values[t−window+1..t]) per t; NaN for t < window−1 (causal)."""
    out = np.full(values.shape, np.nan)
    if values.size >= window:
        sums = np.cumsum(np.concatenate([[0.0], values]))
        out[window - 1 :] = (sums[window:] - sums[:-window]) / window
    return out


def day_returns(ohlc: OHLC) -> FloatArray:
    """Close-to-close log return per day (day 0: close over its own open)."""
    log_close = np.log(ohlc.close)
    return np.diff(log_close, prepend=np.log(ohlc.open[0]))


class HarRange(RiskModel):
    """HAR on weekday-adjusted log Parkinson variance with a leverage term; direct per h."""

    name: ClassVar[str] = "har"

    def __init__(self, max_horizon: int = 30, estimator: str = "parkinson") -> None:
        super().__init__(max_horizon)
        if estimator not in ESTIMATORS:
            raise InvalidInputError(
                f"estimator must be one of {', '.join(ESTIMATORS)}, got `{estimator}`"
            )
        self._estimator = estimator
        self._log_floor: float | None = None  # fitted: median training log v − ln 100
        self._season: FloatArray | None = None  # [7]: weekday profile of log variance
        self._beta: FloatArray | None = None  # [H, 5]
        self._smear: FloatArray | None = None  # [H]: mean(exp(residual))
        self._kappa: FloatArray | None = None  # [H]

    @property
    def min_history(self) -> int:
        """The monthly term needs 22 days."""
        return MONTH

    def _is_fitted(self) -> bool:
        return self._beta is not None

    def _log_variance(self, ohlc: OHLC) -> FloatArray:
        """log v_t per day, at least the fitted floor (zero-range days are valid data)."""
        assert self._log_floor is not None
        return np.maximum(np.log(ohlc.variance(self._estimator)), self._log_floor)

    def _features(self, ohlc: OHLC) -> FloatArray:
        """``[n, 5]`` regressors per day (NaN rows before day MONTH−1)."""
        assert self._season is not None
        u = self._log_variance(ohlc) - self._season[ohlc.weekday()]
        leverage = np.minimum(day_returns(ohlc), 0.0)
        return np.column_stack(
            [np.ones_like(u), u, trailing_mean(u, WEEK), trailing_mean(u, MONTH), leverage]
        )

    def fit(self, ohlc: OHLC, *, seed: int = 0) -> Self:
        """Weekday profile, least squares per horizon, smearing factors and κ_h: training only."""
        ohlc.require(MONTH + MIN_ROWS + self._max_horizon, self.name)
        raw = np.log(ohlc.variance(self._estimator))
        self._log_floor = float(np.median(raw)) - LOG_FLOOR_BELOW_MEDIAN
        logv, weekday = self._log_variance(ohlc), ohlc.weekday()
        present = [k for k in range(7) if np.any(weekday == k)]
        season = np.zeros(7)
        season[present] = [float(logv[weekday == k].mean()) for k in present]
        season[present] -= float(np.mean(season[present]))
        self._season = season
        x = self._features(ohlc)
        u = x[:, 1]
        n, horizons = len(ohlc), self._max_horizon
        beta, smear = np.empty((horizons, N_FEATURES)), np.empty(horizons)
        for h in range(1, horizons + 1):
            rows = np.arange(MONTH - 1, n - h)
            coef, *_ = np.linalg.lstsq(x[rows], u[rows + h], rcond=None)
            beta[h - 1] = coef
            smear[h - 1] = float(np.mean(np.exp(u[rows + h] - x[rows] @ coef)))
        self._beta, self._smear = beta, smear
        self._kappa = range_scale(ohlc.range_pct(), np.sqrt(self._variance(ohlc)), MONTH - 1)
        return self

    def _variance(self, ohlc: OHLC) -> FloatArray:
        """E[v_{t+h}] for every day t and horizon: ``[n, H]`` (NaN rows before MONTH−1)."""
        assert self._beta is not None and self._smear is not None and self._season is not None
        steps = np.arange(1, self._max_horizon + 1)
        target_weekday = (ohlc.weekday()[:, None] + steps[None, :]) % 7
        log_mean: FloatArray = self._features(ohlc) @ self._beta.T + self._season[target_weekday]
        return np.exp(log_mean) * self._smear[None, :]

    def _paths(self, ohlc: OHLC) -> tuple[FloatArray, FloatArray]:
        variance = self._variance(ohlc)
        assert self._kappa is not None
        return variance, 100.0 * self._kappa[None, :] * np.sqrt(variance)

    def config(self) -> dict[str, JSONValue]:
        """Hyperparameters for meta.json."""
        return {
            **super().config(),
            "estimator": self._estimator,
            "terms": ["daily", "weekly", "monthly", "leverage", "weekday"],
            "week": WEEK,
            "month": MONTH,
        }

    def tensors(self) -> Tensors:
        """Log floor, weekday profile ``[7]``, coefficients ``[H, 5]``, smearing and κ_h ``[H]``."""
        assert self._beta is not None and self._smear is not None
        assert self._kappa is not None and self._season is not None
        assert self._log_floor is not None
        return {
            "log_floor": np.array([self._log_floor], dtype=np.float64),
            "season": self._season.copy(),
            "beta": self._beta.copy(),
            "smear": self._smear.copy(),
            "range_scale": self._kappa.copy(),
        }

    @classmethod
    def from_artifacts(cls, config: dict[str, JSONValue], tensors: dict[str, Any]) -> Self:
        """Rebuild a fitted model."""
        horizon = cls._check_config(config)
        model = cls(max_horizon=horizon, estimator=str(config.get("estimator")))
        model._log_floor = float(tensor(tensors, "log_floor", (1,))[0])
        model._season = tensor(tensors, "season", (7,))
        model._beta = tensor(tensors, "beta", (horizon, N_FEATURES))
        model._smear = tensor(tensors, "smear", (horizon,))
        model._kappa = tensor(tensors, "range_scale", (horizon,))
        return model
