"""Baselines every model is compared with: naive (tomorrow = today) and drift.

Both forecast ``last close · factor[h]`` with a fixed factor per horizon (1 for naive,
``exp(h·μ)`` for drift), so one tiny ONNX graph serves both.
"""

from __future__ import annotations

from typing import ClassVar, Self

import numpy as np
import numpy.typing as npt

from btc_predictor.errors import (
    ArtifactError,
    HorizonExceedsModelError,
    InvalidInputError,
    NoModelError,
    NotEnoughDataError,
)
from btc_predictor.forecasting.base import FloatArray, JSONValue, ProgressFn

ONNX_OPSET = 17


def check_closes(y: npt.ArrayLike, *, min_length: int, what: str = "closes") -> FloatArray:
    """Return ``y`` as 1-D float64 if all values are finite and positive and there are enough."""
    values = np.asarray(y, dtype=np.float64)
    if values.ndim != 1:
        raise InvalidInputError(f"{what} must be 1-D, got shape `{values.shape}`")
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise InvalidInputError(f"{what} must be finite and positive")
    if values.size < min_length:
        raise NotEnoughDataError(f"{what}: need at least {min_length} days, got {values.size}")
    return values


def check_horizon(horizon: int, max_horizon: int) -> None:
    """Raise unless 1 <= horizon <= max_horizon."""
    if horizon < 1:
        raise InvalidInputError(f"horizon must be >= 1, got `{horizon}`")
    if horizon > max_horizon:
        raise HorizonExceedsModelError(
            f"horizon {horizon} exceeds the model's maximum of {max_horizon} days"
        )


class _ScaledLastClose:
    """Shared machinery: forecast[h] = last close · factors[h−1]."""

    name: ClassVar[str]
    is_baseline: ClassVar[bool] = True

    def __init__(self, max_horizon: int = 30) -> None:
        if max_horizon < 1:
            raise InvalidInputError(f"max_horizon must be >= 1, got `{max_horizon}`")
        self._max_horizon = max_horizon
        self._drift: float | None = None  # mean daily log return; None until fitted

    @property
    def context_length(self) -> int:
        """Only the last close is needed."""
        return 1

    @property
    def max_horizon(self) -> int:
        """The longest horizon forecast."""
        return self._max_horizon

    def _factors(self) -> FloatArray:
        """Multipliers of the last close for horizons 1..max_horizon; shape ``(H,)``."""
        if self._drift is None:
            raise NoModelError(f"the {self.name} forecaster is not fitted; call fit() first")
        steps = np.arange(1, self._max_horizon + 1, dtype=np.float64)
        return np.exp(steps * self._drift)

    def predict(self, history: FloatArray, horizon: int) -> FloatArray:
        """Forecast closes for the next ``horizon`` days; shape ``(horizon,)``."""
        check_horizon(horizon, self._max_horizon)
        last = float(check_closes(history, min_length=1, what="history")[-1])
        return last * self._factors()[:horizon]

    def predict_batch(self, windows: FloatArray) -> FloatArray:
        """Forecast from many windows ``[n, context]`` at once; shape ``[n, max_horizon]``."""
        values = np.asarray(windows, dtype=np.float64)
        return values[:, -1:] * self._factors()[None, :]

    def tensors(self) -> dict[str, npt.NDArray[np.float32]]:
        """Baselines have no learned weights."""
        return {}

    def config(self) -> dict[str, JSONValue]:
        """Hyperparameters and the fitted drift for meta.json."""
        return {"name": self.name, "max_horizon": self._max_horizon, "drift_per_day": self._drift}

    @classmethod
    def _from_config(cls, config: dict[str, JSONValue]) -> Self:
        """Rebuild from ``config()`` output, or raise ArtifactError."""
        if config.get("name", cls.name) != cls.name or "max_horizon" not in config:
            raise ArtifactError(f"config is not a {cls.name} model")
        model = cls(max_horizon=int(config["max_horizon"]))
        drift = config.get("drift_per_day", model._drift)
        model._drift = None if drift is None else float(drift)
        return model

    def to_onnx(self) -> bytes:
        """Serving graph: ``forecast = closes[:, -1:] · factors`` (float64, opset 17)."""
        # Imported here so that serving (onnxruntime only) never needs the onnx package.
        from onnx import TensorProto, helper, numpy_helper

        starts, ends, axes = (
            numpy_helper.from_array(np.array([v], dtype=np.int64), name)
            for v, name in ((-1, "starts"), (np.iinfo(np.int64).max, "ends"), (1, "axes"))
        )
        factors = numpy_helper.from_array(self._factors()[None, :], "factors")  # [1, H]
        graph = helper.make_graph(
            [
                helper.make_node("Slice", ["closes", "starts", "ends", "axes"], ["last"]),
                helper.make_node("Mul", ["last", "factors"], ["forecast"]),  # [batch, H]
            ],
            f"{self.name}_forecaster",
            [helper.make_tensor_value_info("closes", TensorProto.DOUBLE, ["batch", 1])],
            [
                helper.make_tensor_value_info(
                    "forecast", TensorProto.DOUBLE, ["batch", self._max_horizon]
                )
            ],
            initializer=[starts, ends, axes, factors],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
        model.ir_version = 8  # readable by every onnxruntime that supports opset 17
        return bytes(model.SerializeToString())


class NaiveForecaster(_ScaledLastClose):
    """Every horizon's forecast is the last close ("tomorrow = today").

    The reference for MASE; at daily resolution BTC is hard to beat by it.

    Examples
    --------
    >>> import numpy as np
    >>> model = NaiveForecaster(max_horizon=3).fit(np.array([100.0, 101.0, 99.0]))
    >>> model.predict(np.array([100.0, 105.0]), 3).tolist()
    [105.0, 105.0, 105.0]
    """

    name: ClassVar[str] = "naive"

    def __init__(self, max_horizon: int = 30) -> None:
        super().__init__(max_horizon)
        self._drift = 0.0  # naive needs no data: it is usable without fit()

    def fit(
        self,
        y: FloatArray,
        *,
        seed: int = 0,
        epochs: int | None = None,
        progress: ProgressFn | None = None,
    ) -> Self:
        """Validate ``y``; there is nothing to learn."""
        check_closes(y, min_length=1)
        return self

    def config(self) -> dict[str, JSONValue]:
        """Hyperparameters for meta.json (naive has no fitted statistics)."""
        return {"name": self.name, "max_horizon": self._max_horizon}

    @classmethod
    def from_artifacts(
        cls, config: dict[str, JSONValue], tensors: dict[str, npt.NDArray[np.float32]]
    ) -> Self:
        """Rebuild from ``config()`` output."""
        return cls._from_config(config)


class DriftForecaster(_ScaledLastClose):
    """Last close grown at the fit window's mean daily log return: ``y_t · exp(h·μ)``.

    μ = (log y_last − log y_first) / (n − 1), fitted on the training window only.

    Examples
    --------
    >>> import numpy as np
    >>> model = DriftForecaster(max_horizon=2).fit(np.array([100.0, 110.0, 121.0]))
    >>> np.round(model.predict(np.array([200.0]), 2), 6).tolist()
    [220.0, 242.0]
    """

    name: ClassVar[str] = "drift"

    def fit(
        self,
        y: FloatArray,
        *,
        seed: int = 0,
        epochs: int | None = None,
        progress: ProgressFn | None = None,
    ) -> Self:
        """Estimate μ, the mean daily log return of ``y``."""
        values = check_closes(y, min_length=2)
        self._drift = float(np.log(values[-1]) - np.log(values[0])) / (values.size - 1)
        return self

    @classmethod
    def from_artifacts(
        cls, config: dict[str, JSONValue], tensors: dict[str, npt.NDArray[np.float32]]
    ) -> Self:
        """Rebuild a fitted model from ``config()`` output."""
        return cls._from_config(config)
