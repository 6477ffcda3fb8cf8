"""The RiskForecaster protocol (beside ``Forecaster``) and the machinery its models share.

Conventions (all risk models):
- Input is an :class:`~btc_predictor.forecasting.risk.ohlc.OHLC` of ascending contiguous days.
- ``fit(ohlc)`` learns only from the candles given (the caller passes data up to the fold
  start); ``forecast(ohlc, horizon)`` forecasts from the last day ``t`` of ``ohlc`` for target
  days ``t+1..t+horizon``; ``forecast_batch(ohlc, origins)`` does the same from many origins,
  row ``i`` using only ``ohlc`` days ``0..origins[i]`` (no look-ahead).
- Per horizon h: ``volatility`` = σ of the one-day log return on day t+h (a fraction such as
  0.031, not annualised, not cumulative); ``range_pct`` = the forecast of day t+h's
  (high − low) / previous close · 100. Variances are E[σ²] (what QLIKE rewards); ranges are
  conditional medians (what the MAE behind range MASE rewards).
- A fitted model is ``config()`` (JSON: hyperparameters) + ``tensors()`` (float64 arrays for
  weights.safetensors: every fitted number, exactly), rebuilt by ``from_artifacts``; serving is
  numpy only (no ``arch``, no torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Self, TypeAlias

import numpy as np
import numpy.typing as npt

from btc_predictor.errors import ArtifactError, InvalidInputError, NoModelError, NotEnoughDataError
from btc_predictor.forecasting.base import FloatArray, JSONValue
from btc_predictor.forecasting.baselines import check_horizon
from btc_predictor.forecasting.risk.ohlc import OHLC

IntArray: TypeAlias = npt.NDArray[np.int64]
Tensors: TypeAlias = dict[str, npt.NDArray[np.float64]]

MIN_RANGE_SCALE = 0.01


@dataclass(frozen=True)
class RiskForecast:
    """One origin's forecast; each array has shape ``(horizon,)``, index h−1."""

    volatility: FloatArray
    range_pct: FloatArray


@dataclass(frozen=True)
class RiskForecastBatch:
    """Forecasts from many origins; each array has shape ``[n_origins, max_horizon]``."""

    origins: IntArray
    volatility: FloatArray
    range_pct: FloatArray

    @property
    def variance(self) -> FloatArray:
        """Forecast variance of the one-day log return (volatility²)."""
        return self.volatility**2


class RiskForecaster(Protocol):
    """A risk model: fit on daily OHLC, forecast volatility and range for h = 1..max_horizon."""

    name: ClassVar[str]
    is_baseline: ClassVar[bool]

    @property
    def max_horizon(self) -> int:
        """The longest horizon this model forecasts."""
        ...

    @property
    def min_history(self) -> int:
        """The fewest days of candles a forecast origin needs (the origin is the last)."""
        ...

    def fit(self, ohlc: OHLC, *, seed: int = 0) -> Self:
        """Fit on ``ohlc`` (training data only); deterministic given ``seed``."""
        ...

    def forecast(self, ohlc: OHLC, horizon: int) -> RiskForecast:
        """Forecast from the last day of ``ohlc`` for horizons 1..``horizon``."""
        ...

    def forecast_batch(self, ohlc: OHLC, origins: npt.ArrayLike) -> RiskForecastBatch:
        """Forecasts from each origin index (each seeing only days up to it)."""
        ...

    def config(self) -> dict[str, JSONValue]:
        """Hyperparameters for meta.json (includes the model ``name``)."""
        ...

    def tensors(self) -> Tensors:
        """Every fitted number, as float64 arrays for weights.safetensors."""
        ...

    @classmethod
    def from_artifacts(cls, config: dict[str, JSONValue], tensors: dict[str, Any]) -> Self:
        """Rebuild a fitted model from ``config()`` and ``tensors()`` output."""
        ...


class RiskModel:
    """Shared machinery: a subclass computes, for every day t of the candles at once (causally),
    the forecast variance and range paths ``[n, H]``; the rest is slicing and validation."""

    name: ClassVar[str]
    is_baseline: ClassVar[bool] = False

    def __init__(self, max_horizon: int = 30) -> None:
        if isinstance(max_horizon, bool) or not isinstance(max_horizon, int) or max_horizon < 1:
            raise InvalidInputError(f"max_horizon must be an integer >= 1, got `{max_horizon}`")
        self._max_horizon = max_horizon

    @property
    def max_horizon(self) -> int:
        """The longest horizon forecast."""
        return self._max_horizon

    @property
    def min_history(self) -> int:
        """Days needed at an origin; subclasses with longer memory override."""
        return 1

    # --- subclass hooks ---------------------------------------------------------------------

    def _paths(self, ohlc: OHLC) -> tuple[FloatArray, FloatArray]:
        """(variance, range_pct), each ``[n, H]``; row t uses days 0..t only."""
        raise NotImplementedError

    def _is_fitted(self) -> bool:
        """Whether the fitted parameters are present."""
        return True

    # --- forecasting ------------------------------------------------------------------------

    def forecast(self, ohlc: OHLC, horizon: int) -> RiskForecast:
        """Forecast from the last day of ``ohlc`` for horizons 1..``horizon``."""
        check_horizon(horizon, self._max_horizon)
        batch = self.forecast_batch(ohlc, [len(ohlc) - 1])
        return RiskForecast(
            volatility=batch.volatility[0, :horizon], range_pct=batch.range_pct[0, :horizon]
        )

    def forecast_batch(self, ohlc: OHLC, origins: npt.ArrayLike) -> RiskForecastBatch:
        """Forecasts from each origin index; row i sees only days ``0..origins[i]``."""
        if not self._is_fitted():
            raise NoModelError(f"the {self.name} risk model is not fitted; call fit() first")
        idx = np.asarray(origins, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < self.min_history - 1 or idx.max() >= len(ohlc)):
            raise NotEnoughDataError(
                f"{self.name}: forecast origins need {self.min_history} days of candles "
                "and must lie inside the candles"
            )
        last = int(idx.max()) + 1 if idx.size else 0
        variance, ranges = self._paths(ohlc.head(max(last, 1)))
        return RiskForecastBatch(
            origins=idx, volatility=np.sqrt(variance[idx]), range_pct=ranges[idx]
        )

    # --- artifacts --------------------------------------------------------------------------

    def config(self) -> dict[str, JSONValue]:
        """Hyperparameters for meta.json."""
        return {"name": self.name, "max_horizon": self._max_horizon}

    @classmethod
    def _check_config(cls, config: dict[str, JSONValue]) -> int:
        """The ``max_horizon`` of a config written by this class, or ArtifactError."""
        if config.get("name") != cls.name or not isinstance(config.get("max_horizon"), int):
            raise ArtifactError(f"config is not a {cls.name} risk model")
        return int(config["max_horizon"])


def tensor(tensors: dict[str, Any], key: str, shape: tuple[int, ...]) -> FloatArray:
    """``tensors[key]`` as float64 of ``shape``, or ArtifactError."""
    if key not in tensors:
        raise ArtifactError(f"risk model tensors lack `{key}`")
    value = np.asarray(tensors[key], dtype=np.float64)
    if value.shape != shape or not np.all(np.isfinite(value)):
        raise ArtifactError(f"risk model tensor `{key}` has shape {value.shape}, expected {shape}")
    return value


def range_scale(ranges: FloatArray, sigma_paths: FloatArray, first_origin: int) -> FloatArray:
    """Per-horizon κ_h with range_pct ≈ 100·κ_h·σ_h, fitted on the given (training) days.

    κ_h = median over origins t ≥ ``first_origin`` with t+h inside the data of
    range_pct[t+h] / (100·σ̂_{t+h|t}): the multiplier that makes 100·κ_h·σ the conditional
    median of the range under a multiplicative error (MAE-optimal, as range MASE wants). For
    Brownian motion E[ln(H/L)] = σ·sqrt(8/π), κ ≈ 1.6; the fitted κ absorbs the gap between
    24/7 candles and that ideal, and the median-vs-mean gap.
    """
    n, horizons = sigma_paths.shape
    kappa = np.empty(horizons, dtype=np.float64)
    for h in range(1, horizons + 1):
        origins = np.arange(first_origin, n - h)
        if origins.size < 1:
            kappa[h - 1] = kappa[h - 2] if h > 1 else np.sqrt(8.0 / np.pi)
            continue
        ratio = ranges[origins + h] / (100.0 * sigma_paths[origins, h - 1])
        kappa[h - 1] = float(np.median(ratio))
    # A training window of mostly zero-range days would give κ = 0: a range forecast of 0.
    return np.maximum(kappa, MIN_RANGE_SCALE)
