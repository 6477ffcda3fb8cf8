"""The Forecaster protocol every model implements, and the types shared by the core.

Conventions (all models):
- ``y`` is a 1-D float64 array of daily closes, ascending, contiguous days, no NaN.
- ``predict(history, horizon)`` forecasts closes for days t+1..t+horizon where t is the last
  day of ``history``; only the last ``context_length`` values of ``history`` are used.
  A horizon below 1 raises InvalidInputError; above ``max_horizon``,
  HorizonExceedsModelError.
- ``predict_batch(windows)`` is the same for many origins at once (backtests, holdouts).
- Models never see dates, files, the database or the environment.
- The exported ONNX graph has one input ``closes`` (float64, ``[batch, context_length]``) and
  one output ``forecast`` (float64, ``[batch, max_horizon]``, price levels), so serving is
  ``onnxruntime`` + numpy with no model-specific code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Protocol, Self, TypeAlias

import numpy as np
import numpy.typing as npt

FloatArray: TypeAlias = npt.NDArray[np.float64]
JSONValue: TypeAlias = Any  # values of meta.json: str, int, float, bool, None, lists, dicts

# Called after each training step: (done, total, validation_loss or None). A step is an
# epoch; composite fits (the ensemble) count member fits instead.
ProgressFn: TypeAlias = Callable[[int, int, float | None], None]


class Forecaster(Protocol):
    """A forecasting model: fit on closes, forecast horizons 1..max_horizon."""

    name: ClassVar[str]
    is_baseline: ClassVar[bool]

    @property
    def context_length(self) -> int:
        """How many trailing closes ``predict`` and the ONNX graph need."""
        ...

    @property
    def max_horizon(self) -> int:
        """The longest horizon this fitted model forecasts."""
        ...

    def fit(
        self,
        y: FloatArray,
        *,
        seed: int = 0,
        epochs: int | None = None,
        progress: ProgressFn | None = None,
    ) -> Self:
        """Fit on closes ``y``; ``epochs`` caps training epochs (None: model default)."""
        ...

    def predict(self, history: FloatArray, horizon: int) -> FloatArray:
        """Forecast closes for the next ``horizon`` days after ``history``; shape ``(horizon,)``."""
        ...

    def predict_batch(self, windows: FloatArray) -> FloatArray:
        """Forecasts from many windows ``[n, context_length]``; shape ``[n, max_horizon]``."""
        ...

    def config(self) -> dict[str, JSONValue]:
        """Hyperparameters and fitted statistics for meta.json (includes the model ``name``)."""
        ...

    def tensors(self) -> dict[str, npt.NDArray[np.float32]]:
        """Learned weights for weights.safetensors (empty for baselines)."""
        ...

    def to_onnx(self) -> bytes:
        """The serving graph (see module docstring) as a serialized ONNX model."""
        ...

    @classmethod
    def from_artifacts(
        cls, config: dict[str, JSONValue], tensors: dict[str, npt.NDArray[np.float32]]
    ) -> Self:
        """Rebuild a fitted model from ``config()`` and ``tensors()`` output."""
        ...
