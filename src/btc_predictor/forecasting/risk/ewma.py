"""``ewma-vol``: RiskMetrics-style exponentially weighted average of the daily range variance."""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np

from btc_predictor.errors import InvalidInputError
from btc_predictor.forecasting.base import FloatArray, JSONValue
from btc_predictor.forecasting.risk.base import RiskModel, Tensors, range_scale, tensor
from btc_predictor.forecasting.risk.ohlc import OHLC

# Days whose EWMA state still leans on its start value are left out of the κ fit.
WARMUP_DAYS = 20


def ewma(values: FloatArray, decay: float) -> FloatArray:
    """s_t = decay·s_{t−1} + (1 − decay)·v_t with s_0 = v_0 (causal: s_t uses v_0..v_t)."""
    out = np.empty_like(values)
    state = float(values[0]) if values.size else 0.0
    weight = 1.0 - decay
    for t, value in enumerate(values.tolist()):
        state = decay * state + weight * value
        out[t] = state
    return out


class EwmaVol(RiskModel):
    """σ²_{t+h} = EWMA (decay λ, RiskMetrics' 0.94) of Parkinson variances up to t, every h.

    The EWMA has no mean reversion, so the variance path is flat in h; range_pct_h =
    100·κ_h·σ with κ_h fitted on the training days (see ``range_scale``).
    """

    name: ClassVar[str] = "ewma-vol"

    def __init__(self, max_horizon: int = 30, decay: float = 0.94) -> None:
        super().__init__(max_horizon)
        if not 0.0 < decay < 1.0:
            raise InvalidInputError(f"decay must be in (0, 1), got `{decay}`")
        self._decay = float(decay)
        self._kappa: FloatArray | None = None

    def _is_fitted(self) -> bool:
        return self._kappa is not None

    def _variance_paths(self, ohlc: OHLC) -> FloatArray:
        """The EWMA state at each day, repeated over horizons: ``[n, H]``."""
        state = ewma(ohlc.variance("parkinson"), self._decay)
        return np.repeat(state[:, None], self._max_horizon, axis=1)

    def fit(self, ohlc: OHLC, *, seed: int = 0) -> Self:
        """Fit κ_h (range per σ) on the training candles."""
        ohlc.require(WARMUP_DAYS + 2, self.name)
        sigma = np.sqrt(self._variance_paths(ohlc))
        self._kappa = range_scale(ohlc.range_pct(), sigma, WARMUP_DAYS)
        return self

    def _paths(self, ohlc: OHLC) -> tuple[FloatArray, FloatArray]:
        variance = self._variance_paths(ohlc)
        assert self._kappa is not None
        return variance, 100.0 * self._kappa[None, :] * np.sqrt(variance)

    def config(self) -> dict[str, JSONValue]:
        """Hyperparameters for meta.json."""
        return {**super().config(), "decay": self._decay, "estimator": "parkinson"}

    def tensors(self) -> Tensors:
        """κ_h per horizon."""
        assert self._kappa is not None, "fit first"
        return {"range_scale": self._kappa.copy()}

    @classmethod
    def from_artifacts(cls, config: dict[str, JSONValue], tensors: dict[str, Any]) -> Self:
        """Rebuild a fitted model."""
        horizon = cls._check_config(config)
        model = cls(max_horizon=horizon, decay=float(config["decay"]))
        model._kappa = tensor(tensors, "range_scale", (horizon,))
        return model
