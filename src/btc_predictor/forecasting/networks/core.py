"""The torch core shared by every network forecaster: seeded training with chronological
early stopping, input checks, ONNX export, and the ``TorchForecaster`` base class.

Each model is a private ``nn.Module`` holding only the math, wrapped by a *serving graph*
module that maps raw float64 closes ``[B, context_length]`` to float64 price levels
``[B, max_horizon]``. The same graph answers ``predict`` and is exported to ONNX, so the
served numbers are the tested numbers.
"""

from __future__ import annotations

import abc
import contextlib
import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, Literal, Self

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from btc_predictor.errors import (
    ArtifactError,
    InvalidInputError,
    NoModelError,
)
from btc_predictor.forecasting.base import FloatArray, JSONValue, ProgressFn
from btc_predictor.forecasting.baselines import check_closes, check_horizon

Float32Array = npt.NDArray[np.float32]
LossName = Literal["mse", "huber"]

MIN_TRAIN_WINDOWS = 8
_ONNX_OPSET = 17
_PREDICT_CHUNK = 512


# --------------------------------------------------------------------------- training core


@dataclass(frozen=True)
class Split:
    """Chronological training and validation samples (inputs ``x``, targets ``t``)."""

    x_train: Tensor
    t_train: Tensor
    x_val: Tensor
    t_val: Tensor


@dataclass(frozen=True)
class TrainSpec:
    """How to train: epochs, batch, Adam settings, loss, early stopping and clipping."""

    epochs: int
    batch_size: int
    lr: float
    eps: float = 1e-8
    loss: LossName = "mse"
    patience: int | None = None  # None: no early stopping, keep the last epoch (Keras default)
    clip_norm: float | None = None


@dataclass(frozen=True)
class TrainResult:
    """What training did: epochs run, the kept epoch (0 = initial weights), its val loss."""

    epochs_run: int
    best_epoch: int
    val_loss: float


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[torch.Generator]:
    """Seed torch's global RNG and turn on deterministic kernels, restoring both after."""
    previous = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        try:
            yield torch.Generator().manual_seed(seed)
        finally:
            torch.use_deterministic_algorithms(previous)


def _loss_fn(name: LossName) -> nn.Module:
    """The training loss by name."""
    return nn.HuberLoss(delta=1.0) if name == "huber" else nn.MSELoss()


def _val_loss(net: nn.Module, data: Split, loss: nn.Module) -> float:
    """Loss on the validation samples, in eval mode and without gradients."""
    net.eval()
    with torch.no_grad():
        value: Tensor = loss(net(data.x_val), data.t_val)
    return float(value)


def _run_epoch(
    net: nn.Module,
    opt: torch.optim.Optimizer,
    data: Split,
    spec: TrainSpec,
    loss: nn.Module,
    gen: torch.Generator,
) -> None:
    """One pass over the training samples in a seeded shuffled order."""
    net.train()
    order = torch.randperm(len(data.x_train), generator=gen)
    for start in range(0, len(order), spec.batch_size):
        idx = order[start : start + spec.batch_size]
        opt.zero_grad()
        value: Tensor = loss(net(data.x_train[idx]), data.t_train[idx])
        value.backward()  # type: ignore[no-untyped-call]
        if spec.clip_norm is not None:
            nn.utils.clip_grad_norm_(net.parameters(), spec.clip_norm)
        opt.step()


def train_network(
    net: nn.Module,
    data: Split,
    spec: TrainSpec,
    gen: torch.Generator,
    progress: ProgressFn | None,
) -> TrainResult:
    """Train ``net`` in place; with ``patience`` keep the best validation epoch (0 = init)."""
    opt = torch.optim.Adam(net.parameters(), lr=spec.lr, eps=spec.eps)
    loss = _loss_fn(spec.loss)
    best, best_epoch, epoch = _val_loss(net, data, loss), 0, 0
    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    for epoch in range(1, spec.epochs + 1):
        _run_epoch(net, opt, data, spec, loss, gen)
        val = _val_loss(net, data, loss)
        if progress is not None:
            progress(epoch, spec.epochs, val)
        if spec.patience is None or val < best:
            best, best_epoch = val, epoch
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        elif epoch - best_epoch >= spec.patience:
            break
    net.load_state_dict(best_state)
    net.eval()
    return TrainResult(epochs_run=epoch, best_epoch=best_epoch, val_loss=best)


# --------------------------------------------------------------------------- input checks


def resolve_epochs(requested: int | None, default: int) -> int:
    """The epoch cap: the caller's when given (must be ≥ 1), else the model default."""
    if requested is None:
        return default
    if requested < 1:
        raise InvalidInputError(f"epochs must be ≥ 1, got `{requested}`")
    return requested


# --------------------------------------------------------------------------- ONNX export


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence the exporter's warnings that are expected here and not actionable."""
    with warnings.catch_warnings():
        # dynamo=False on purpose: the TorchScript exporter writes one self-contained file and
        # needs no onnxscript; torch marks it deprecated, which is not actionable here.
        warnings.filterwarnings(
            "ignore", "You are using the legacy TorchScript", DeprecationWarning
        )
        warnings.filterwarnings("ignore", "The feature will be removed", DeprecationWarning)
        # nn.LSTM/GRU read a static flag of their flattened weights as a Python bool while traced.
        warnings.filterwarnings(
            "ignore", "Converting a tensor to a Python boolean", module=r"torch\.nn\.modules\.rnn"
        )
        # Initial states are implicit zeros, so any batch size works; tests run batch 1 and 3.
        warnings.filterwarnings("ignore", "Exporting a model to ONNX with a batch", UserWarning)
        yield


def _export_onnx(graph: nn.Module, context_length: int) -> bytes:
    """Export a serving graph (float64 closes → float64 prices) to self-contained ONNX bytes."""
    dummy = torch.full((2, context_length), 100.0, dtype=torch.float64)  # [2, W], log-safe
    buffer = io.BytesIO()
    with _quiet_export():
        torch.onnx.export(
            graph,
            (dummy,),
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter accepts file objects
            input_names=["closes"],
            output_names=["forecast"],
            dynamic_axes={"closes": {0: "batch"}, "forecast": {0: "batch"}},
            opset_version=_ONNX_OPSET,
            dynamo=False,
        )
    return buffer.getvalue()


# --------------------------------------------------------------------------- shared forecaster


class TorchForecaster(abc.ABC):
    """Shared plumbing: a fitted serving graph answers predict, ONNX and artifacts."""

    name: ClassVar[str]
    is_baseline: ClassVar[bool] = False

    def __init__(self, *, window: int, max_horizon: int, epochs: int) -> None:
        if window < 2 or max_horizon < 1 or epochs < 1:
            raise InvalidInputError(
                f"need window ≥ 2, max_horizon ≥ 1, epochs ≥ 1; got `{window}`, "
                f"`{max_horizon}`, `{epochs}`"
            )
        self._window, self._max_horizon, self._epochs = window, max_horizon, epochs
        self._graph: nn.Module | None = None
        self._fitted: dict[str, JSONValue] | None = None

    @property
    def context_length(self) -> int:
        """How many trailing closes ``predict`` and the ONNX graph need."""
        return self._window

    @property
    def max_horizon(self) -> int:
        """The longest horizon this model forecasts."""
        return self._max_horizon

    @abc.abstractmethod
    def fit(
        self,
        y: FloatArray,
        *,
        seed: int = 0,
        epochs: int | None = None,
        progress: ProgressFn | None = None,
    ) -> Self:
        """Fit on closes ``y``; ``epochs`` caps training epochs (None: model default)."""

    @abc.abstractmethod
    def _hyper(self) -> dict[str, JSONValue]:
        """Constructor keyword arguments that rebuild this model."""

    @abc.abstractmethod
    def _build_graph(self, fitted: dict[str, JSONValue]) -> nn.Module:
        """A fresh serving graph for the given fitted statistics."""

    def _require(self) -> nn.Module:
        """The fitted serving graph, or NoModelError."""
        if self._graph is None:
            raise NoModelError(f"{self.name} is not fitted; call fit() first")
        return self._graph

    def predict(self, history: FloatArray, horizon: int) -> FloatArray:
        """Forecast closes for the next ``horizon`` days after ``history``; shape ``(horizon,)``."""
        check_horizon(horizon, self._max_horizon)
        window = check_closes(history, min_length=self._window, what="history")[-self._window :]
        return self.predict_batch(window[None, :])[0, :horizon]

    def predict_batch(self, windows: FloatArray) -> FloatArray:
        """Forecast horizons 1..max_horizon for each row of ``windows`` ``[n, context_length]``."""
        graph = self._require()
        arr = np.ascontiguousarray(windows, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != self._window:
            raise InvalidInputError(f"windows must be [n, {self._window}], got `{arr.shape}`")
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise InvalidInputError("closes must be finite and positive")
        parts = [np.empty((0, self._max_horizon))]
        with torch.inference_mode():
            for start in range(0, len(arr), _PREDICT_CHUNK):
                out: Tensor = graph(torch.from_numpy(arr[start : start + _PREDICT_CHUNK]))
                parts.append(out.numpy())
        return np.concatenate(parts).astype(np.float64)

    def config(self) -> dict[str, JSONValue]:
        """Hyperparameters and fitted statistics (scaler, training summary) for meta.json."""
        return {"name": self.name, "hyper": self._hyper(), "fitted": self._fitted}

    def tensors(self) -> dict[str, Float32Array]:
        """Learned weights (the graph's state_dict) as float32 numpy arrays."""
        state = self._require().state_dict()
        return {k: v.detach().to(torch.float32).numpy().copy() for k, v in state.items()}

    def to_onnx(self) -> bytes:
        """The serving graph: ``closes`` f64 [batch, W] → ``forecast`` f64 [batch, H] prices."""
        return _export_onnx(self._require(), self._window)

    @classmethod
    def from_artifacts(cls, config: dict[str, JSONValue], tensors: dict[str, Float32Array]) -> Self:
        """Rebuild a fitted model from ``config()`` and ``tensors()`` output."""
        if config.get("name") != cls.name or not isinstance(config.get("fitted"), dict):
            raise ArtifactError(f"config is not a fitted {cls.name} model")
        try:
            model = cls(**config["hyper"])
        except TypeError as exc:
            raise ArtifactError(f"{cls.name} hyperparameters are not understood: {exc}") from exc
        graph = model._build_graph(config["fitted"])
        state = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in tensors.items()}
        try:
            graph.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ArtifactError(f"{cls.name} weights do not match its config: {exc}") from exc
        model._graph, model._fitted = graph.eval(), dict(config["fitted"])
        return model
