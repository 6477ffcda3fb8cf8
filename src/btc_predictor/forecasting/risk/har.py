"""``har``: a HAR regression on the log range-based variance (the default risk model).

Features at origin t: 1, log v_t, mean(log v_{t−4..t}), mean(log v_{t−21..t}) with v the
daily range variance (daily / weekly / monthly terms, Corsi 2009). One least-squares fit per
horizon h on training days only (direct forecasts of log v_{t+h}); the variance forecast is the
mean E[v_{t+h}] = exp(x·β_h)·mean(exp(residuals_h)) (Duan's smearing: log-variance residuals are
far from normal, so the lognormal ½s² correction would be biased); range_pct_h = 100·κ_h·σ_h.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np

from btc_predictor.errors import InvalidInputError
from btc_predictor.forecasting.base import FloatArray, JSONValue
from btc_predictor.forecasting.risk.base import RiskModel, Tensors, range_scale, tensor
from btc_predictor.forecasting.risk.ohlc import ESTIMATORS, OHLC

WEEK, MONTH = 5, 22
N_FEATURES = 4  # intercept, daily, weekly, monthly
# Fewer training rows than this leave 4 coefficients per horizon poorly determined.
MIN_ROWS = 60


def trailing_mean(values: FloatArray, window: int) -> FloatArray:
    """mean(values[t−window+1..t]) per t; NaN for t < window−1 (causal)."""
    out = np.full(values.shape, np.nan)
    if values.size >= window:
        sums = np.cumsum(np.concatenate([[0.0], values]))
        out[window - 1 :] = (sums[window:] - sums[:-window]) / window
    return out


class HarRange(RiskModel):
    """HAR on log Parkinson variance (estimator configurable), direct per-horizon least squares."""

    name: ClassVar[str] = "har"

    def __init__(self, max_horizon: int = 30, estimator: str = "parkinson") -> None:
        super().__init__(max_horizon)
        if estimator not in ESTIMATORS:
            raise InvalidInputError(
                f"estimator must be one of {', '.join(ESTIMATORS)}, got `{estimator}`"
            )
        self._estimator = estimator
        self._beta: FloatArray | None = None  # [H, 4]
        self._smear: FloatArray | None = None  # [H]: mean(exp(residual))
        self._kappa: FloatArray | None = None  # [H]

    @property
    def min_history(self) -> int:
        """The monthly term needs 22 days."""
        return MONTH

    def _is_fitted(self) -> bool:
        return self._beta is not None

    def _features(self, ohlc: OHLC) -> FloatArray:
        """``[n, 4]`` HAR regressors per day (NaN rows before day MONTH−1)."""
        logv = np.log(ohlc.variance(self._estimator))
        ones = np.ones_like(logv)
        return np.column_stack([ones, logv, trailing_mean(logv, WEEK), trailing_mean(logv, MONTH)])

    def fit(self, ohlc: OHLC, *, seed: int = 0) -> Self:
        """Least squares per horizon on the training candles, then smearing factors and κ_h."""
        ohlc.require(MONTH + MIN_ROWS + self._max_horizon, self.name)
        x = self._features(ohlc)
        logv = x[:, 1]
        n, horizons = len(ohlc), self._max_horizon
        beta = np.empty((horizons, N_FEATURES))
        smear = np.empty(horizons)
        for h in range(1, horizons + 1):
            rows = np.arange(MONTH - 1, n - h)
            coef, *_ = np.linalg.lstsq(x[rows], logv[rows + h], rcond=None)
            beta[h - 1] = coef
            smear[h - 1] = float(np.mean(np.exp(logv[rows + h] - x[rows] @ coef)))
        self._beta, self._smear = beta, smear
        sigma = np.sqrt(self._variance_paths(x))
        self._kappa = range_scale(ohlc.range_pct(), sigma, MONTH - 1)
        return self

    def _variance_paths(self, x: FloatArray) -> FloatArray:
        """E[v_{t+h}] for every day t and horizon: ``[n, H]`` (NaN rows before MONTH−1)."""
        assert self._beta is not None and self._smear is not None
        return np.exp(x @ self._beta.T) * self._smear[None, :]

    def _paths(self, ohlc: OHLC) -> tuple[FloatArray, FloatArray]:
        variance = self._variance_paths(self._features(ohlc))
        assert self._kappa is not None
        return variance, 100.0 * self._kappa[None, :] * np.sqrt(variance)

    def config(self) -> dict[str, JSONValue]:
        """Hyperparameters for meta.json."""
        return {**super().config(), "estimator": self._estimator, "week": WEEK, "month": MONTH}

    def tensors(self) -> Tensors:
        """Coefficients ``[H, 4]``, smearing factors and κ_h ``[H]``."""
        assert self._beta is not None and self._smear is not None and self._kappa is not None
        return {
            "beta": self._beta.copy(),
            "smear": self._smear.copy(),
            "range_scale": self._kappa.copy(),
        }

    @classmethod
    def from_artifacts(cls, config: dict[str, JSONValue], tensors: dict[str, Any]) -> Self:
        """Rebuild a fitted model."""
        horizon = cls._check_config(config)
        model = cls(max_horizon=horizon, estimator=str(config["estimator"]))
        model._beta = tensor(tensors, "beta", (horizon, N_FEATURES))
        model._smear = tensor(tensors, "smear", (horizon,))
        model._kappa = tensor(tensors, "range_scale", (horizon,))
        return model
