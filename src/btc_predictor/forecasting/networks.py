"""Neural forecasters: the original's seed LSTM, and return models (LSTM, GRU, Transformer).

Each model is a private ``nn.Module`` holding only the math, wrapped by a *serving graph*
module that maps raw float64 closes ``[B, context_length]`` to float64 price levels
``[B, max_horizon]``. The same graph answers ``predict`` and is exported to ONNX, so the
served numbers are the tested numbers.

Return models (``lstm``, ``gru``, ``transformer``) share one recipe, chosen on evidence in
``bench/RECIPE_NOTES.md``: standardized daily log returns in, cumulative log return per
horizon out (a direct multi-output head, no recursion), batched training with chronological
early stopping. The head starts at zero, i.e. at the naive forecast, and the weights of the
best validation epoch are kept, including "epoch 0"; the head is then shrunk toward zero by
the least-squares factor α ∈ [0, 1] on the validation windows. When the data holds no
signal the model stays at (or near) the random-walk forecast instead of chasing noise.
"""

from __future__ import annotations

import abc
import contextlib
import io
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, Literal, Self, TypedDict, Unpack

import numpy as np
import numpy.typing as npt
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import Tensor, nn

from btc_predictor.errors import (
    ArtifactError,
    InvalidInputError,
    NoModelError,
    NotEnoughDataError,
)
from btc_predictor.forecasting.base import FloatArray, JSONValue, ProgressFn
from btc_predictor.forecasting.baselines import check_closes, check_horizon

Float32Array = npt.NDArray[np.float32]
LossName = Literal["mse", "huber"]

_MIN_TRAIN_WINDOWS = 8
_ONNX_OPSET = 17
_PREDICT_CHUNK = 512


# --------------------------------------------------------------------------- training core


@dataclass(frozen=True)
class _Split:
    """Chronological training and validation samples (inputs ``x``, targets ``t``)."""

    x_train: Tensor
    t_train: Tensor
    x_val: Tensor
    t_val: Tensor


@dataclass(frozen=True)
class _TrainSpec:
    """How to train: epochs, batch, Adam settings, loss, early stopping and clipping."""

    epochs: int
    batch_size: int
    lr: float
    eps: float = 1e-8
    loss: LossName = "mse"
    patience: int | None = None  # None: no early stopping, keep the last epoch (Keras default)
    clip_norm: float | None = None


@dataclass(frozen=True)
class _TrainResult:
    """What training did: epochs run, the kept epoch (0 = initial weights), its val loss."""

    epochs_run: int
    best_epoch: int
    val_loss: float


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[torch.Generator]:
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


def _val_loss(net: nn.Module, data: _Split, loss: nn.Module) -> float:
    """Loss on the validation samples, in eval mode and without gradients."""
    net.eval()
    with torch.no_grad():
        value: Tensor = loss(net(data.x_val), data.t_val)
    return float(value)


def _run_epoch(
    net: nn.Module,
    opt: torch.optim.Optimizer,
    data: _Split,
    spec: _TrainSpec,
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


def _train(
    net: nn.Module,
    data: _Split,
    spec: _TrainSpec,
    gen: torch.Generator,
    progress: ProgressFn | None,
) -> _TrainResult:
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
    return _TrainResult(epochs_run=epoch, best_epoch=best_epoch, val_loss=best)


# --------------------------------------------------------------------------- input checks


def _epochs(requested: int | None, default: int) -> int:
    """The epoch cap: the caller's when given (must be ≥ 1), else the model default."""
    if requested is None:
        return default
    if requested < 1:
        raise InvalidInputError(f"epochs must be ≥ 1, got `{requested}`")
    return requested


# --------------------------------------------------------------------------- ONNX export


def _export_onnx(graph: nn.Module, context_length: int) -> bytes:
    """Export a serving graph (float64 closes → float64 prices) to self-contained ONNX bytes."""
    dummy = torch.full((2, context_length), 100.0, dtype=torch.float64)  # [2, W], log-safe
    buffer = io.BytesIO()
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


class _TorchForecaster(abc.ABC):
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


# --------------------------------------------------------------------------- seed LSTM


class _SeedNet(nn.Module):
    """The original Keras stack: LSTM(50, sequences) → LSTM(50) → Dense(25) → Dense(1)."""

    def __init__(self, hidden: int = 50, dense: int = 25) -> None:
        super().__init__()
        self.lstm1 = nn.LSTM(1, hidden, batch_first=True)
        self.lstm2 = nn.LSTM(hidden, hidden, batch_first=True)
        self.dense = nn.Linear(hidden, dense)  # linear activation, as Keras' Dense default
        self.out = nn.Linear(dense, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Next scaled close from a scaled window."""
        seq, _ = self.lstm1(x)  # [B, W, 1] → [B, W, 50]
        seq, _ = self.lstm2(seq)  # [B, W, 50]
        step: Tensor = self.out(self.dense(seq[:, -1]))  # [B, 50] → [B, 25] → [B, 1]
        return step


def _keras_init(net: _SeedNet) -> None:
    """Keras defaults: glorot-uniform kernels, orthogonal recurrent, zero bias, forget bias 1."""
    with torch.no_grad():
        for lstm in (net.lstm1, net.lstm2):
            hidden = lstm.hidden_size
            params = dict(lstm.named_parameters())
            nn.init.xavier_uniform_(params["weight_ih_l0"])  # [4h, in]: Keras' [in, 4h] fans
            nn.init.orthogonal_(params["weight_hh_l0"])  # [4h, h]
            params["bias_ih_l0"].zero_()
            params["bias_ih_l0"][hidden : 2 * hidden] = 1.0  # gate order i, f, g, o in both
            params["bias_hh_l0"].zero_()  # Keras has one bias; keep the second at zero
        for dense in (net.dense, net.out):
            nn.init.xavier_uniform_(dense.weight)
            dense.bias.zero_()


class _SeedGraph(nn.Module):
    """MinMax-scaled closes → seed net → recursive rollout → price levels."""

    def __init__(self, net: _SeedNet, low: float, high: float, horizon: int) -> None:
        super().__init__()
        self.net, self.low, self.span, self.horizon = net, low, high - low, horizon

    def forward(self, closes: Tensor) -> Tensor:
        """Price levels for horizons 1..H, each step fed back into the window."""
        x = ((closes - self.low) / self.span).to(torch.float32)  # [B, W] scaled to [0, 1]
        steps = []
        for _ in range(self.horizon):  # unrolled when traced for ONNX
            step = self.net(x.unsqueeze(-1))  # [B, W, 1] → [B, 1]
            steps.append(step)
            x = torch.cat([x[:, 1:], step], dim=1)  # [B, W]: drop oldest, append prediction
        scaled = torch.cat(steps, dim=1).to(torch.float64)  # [B, H]
        return scaled * self.span + self.low  # [B, H] price levels


class SeedLSTMForecaster(_TorchForecaster):
    """The original's recipe, kept as the comparison point (it loses to naive 2–3×).

    40 MinMax(0, 1)-scaled closes → LSTM(50, return sequences) → LSTM(50) → Dense(25) →
    Dense(1); Adam (lr 1e-3, Keras eps 1e-7), MSE, 10 epochs, batch 1, Keras-default weight
    init; the last 20% of windows validate (Keras ``validation_split=0.2``: not shuffled,
    split at floor(0.8·n)); the training part is reshuffled every epoch by a seeded generator.
    Horizons beyond 1 come from a recursive rollout (predictions fed back), in the ONNX
    graph too. One deliberate difference: the scaler is fitted on the training closes only
    (the original fitted it on all prices, leaking the test range into training).

    Args:
        window: closes per input window (40 in the original).
        max_horizon: longest horizon, reached by recursion.
        epochs: training epochs (10 in the original); ``fit(epochs=...)`` overrides.
        batch_size: samples per step (1 in the original).
        hidden: LSTM units (50); dense: units of the hidden Dense layer (25).
        validation_split: trailing share of windows used for validation loss only.
    """

    name: ClassVar[str] = "seed-lstm"

    def __init__(
        self,
        *,
        window: int = 40,
        max_horizon: int = 30,
        epochs: int = 10,
        batch_size: int = 1,
        hidden: int = 50,
        dense: int = 25,
        validation_split: float = 0.2,
    ) -> None:
        super().__init__(window=window, max_horizon=max_horizon, epochs=epochs)
        self._batch_size, self._hidden, self._dense = batch_size, hidden, dense
        self._validation_split = validation_split

    def _hyper(self) -> dict[str, JSONValue]:
        return {
            "window": self._window,
            "max_horizon": self._max_horizon,
            "epochs": self._epochs,
            "batch_size": self._batch_size,
            "hidden": self._hidden,
            "dense": self._dense,
            "validation_split": self._validation_split,
        }

    def _build_graph(self, fitted: dict[str, JSONValue]) -> nn.Module:
        net = _SeedNet(self._hidden, self._dense)
        return _SeedGraph(net, float(fitted["min"]), float(fitted["max"]), self._max_horizon)

    def _samples(self, y: FloatArray, low: float, high: float) -> _Split:
        """40 → 1 windows of scaled closes, split like Keras' ``validation_split``."""
        scaled = torch.from_numpy((y - low) / (high - low)).to(torch.float32)  # [n]
        x = scaled.unfold(0, self._window, 1)[:-1].unsqueeze(-1)  # [n - W, W, 1]
        t = scaled[self._window :].unsqueeze(-1)  # [n - W, 1]
        cut = math.floor(len(x) * (1.0 - self._validation_split))
        if cut < 1 or cut == len(x):
            raise NotEnoughDataError(f"{self.name}: {len(x)} windows are too few to validate on")
        return _Split(x[:cut], t[:cut], x[cut:], t[cut:])

    def fit(
        self,
        y: FloatArray,
        *,
        seed: int = 0,
        epochs: int | None = None,
        progress: ProgressFn | None = None,
    ) -> Self:
        """Fit on closes ``y`` (the scaler sees ``y`` only); ``epochs`` caps training epochs."""
        y = check_closes(y, min_length=self._window + 2, what=f"{self.name} fit")
        low, high = float(y.min()), float(y.max())
        if high <= low:
            raise InvalidInputError(f"{self.name} cannot scale constant closes")
        spec = _TrainSpec(_epochs(epochs, self._epochs), self._batch_size, lr=1e-3, eps=1e-7)
        fitted: dict[str, JSONValue] = {"min": low, "max": high}
        with _seeded(seed) as gen:
            graph = self._build_graph(fitted)
            assert isinstance(graph, _SeedGraph)
            _keras_init(graph.net)
            result = _train(graph.net, self._samples(y, low, high), spec, gen, progress)
        fitted |= {"epochs_run": result.epochs_run, "val_loss": result.val_loss}
        self._graph, self._fitted = graph.eval(), fitted
        return self


# --------------------------------------------------------------------------- return models


def _shrink_head(head: nn.Linear, core: nn.Module, data: _Split) -> float:
    """Scale the head by α ∈ [0, 1] minimizing validation MSE of α·output; return α.

    α = 0 is the naive forecast; α < 1 shrinks toward it as much as validation supports.
    """
    with torch.no_grad():
        out = core(data.x_val).to(torch.float64)  # [n_val, H]
        target = data.t_val.to(torch.float64)  # [n_val, H]
        power = float((out * out).sum())
        alpha = 0.0 if power == 0.0 else min(max(float((out * target).sum()) / power, 0.0), 1.0)
        head.weight.mul_(alpha)
        head.bias.mul_(alpha)
    return alpha


def _zero_linear(n_in: int, n_out: int) -> nn.Linear:
    """A linear head that starts at zero output: the naive forecast."""
    head = nn.Linear(n_in, n_out)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return head


class _RecurrentCore(nn.Module):
    """LSTM or GRU over standardized returns → direct head for horizons 1..H."""

    def __init__(self, cell: Literal["lstm", "gru"], hidden: int, layers: int, horizon: int):
        super().__init__()
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(1, hidden, num_layers=layers, batch_first=True)
        self.head = _zero_linear(hidden, horizon)

    def forward(self, z: Tensor) -> Tensor:
        """Standardized cumulative log returns for each horizon."""
        seq, _ = self.rnn(z)  # [B, L, 1] → [B, L, hidden]
        out: Tensor = self.head(seq[:, -1])  # [B, hidden] → [B, H]
        return out


class _AttentionBlock(nn.Module):
    """Pre-norm self-attention + feed-forward block from basic ops (exports cleanly)."""

    def __init__(self, d_model: int, heads: int, ff: int) -> None:
        super().__init__()
        self.heads, self.d_model, self.head_dim = heads, d_model, d_model // heads
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff), nn.GELU(), nn.Linear(ff, d_model))

    def forward(self, x: Tensor) -> Tensor:
        """One attention block; shape preserved."""
        length = x.shape[1]  # x: [B, L, d]
        qkv = self.qkv(self.norm1(x)).reshape(-1, length, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, heads, L, d/heads]
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # [B, heads, L, L]
        mixed = torch.softmax(scores, dim=-1) @ v  # [B, heads, L, d/heads]
        x = x + self.proj(mixed.transpose(1, 2).reshape(-1, length, self.d_model))  # [B, L, d]
        out: Tensor = x + self.ff(self.norm2(x))  # [B, L, d]
        return out


class _TransformerCore(nn.Module):
    """Small Transformer encoder over standardized returns → direct head for horizons 1..H."""

    def __init__(self, length: int, d_model: int, heads: int, layers: int, ff: int, horizon: int):
        super().__init__()
        self.embed = nn.Linear(1, d_model)
        self.position = nn.Parameter(torch.randn(length, d_model) * 0.02)  # learned, [L, d]
        self.blocks = nn.ModuleList(_AttentionBlock(d_model, heads, ff) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = _zero_linear(d_model, horizon)

    def forward(self, z: Tensor) -> Tensor:
        """Standardized cumulative log returns for each horizon."""
        h = self.embed(z) + self.position  # [B, L, 1] → [B, L, d]
        for block in self.blocks:
            h = block(h)  # [B, L, d]
        out: Tensor = self.head(self.norm(h[:, -1]))  # [B, d] → [B, H]
        return out


class _ReturnGraph(nn.Module):
    """Closes → standardized log returns → core → cumulative returns → price levels."""

    scale: Tensor  # [H] std·√h, a non-persistent buffer rebuilt from config

    def __init__(self, core: nn.Module, mean: float, std: float, horizon: int, clip: float):
        super().__init__()
        self.core, self.mean, self.std, self.clip = core, mean, std, clip
        scale = std * torch.sqrt(torch.arange(1, horizon + 1, dtype=torch.float64))  # [H]
        self.register_buffer("scale", scale, persistent=False)  # from config, not weights

    def features(self, closes: Tensor) -> Tensor:
        """Standardized, clipped log returns in float32 for the core."""
        logs = torch.log(closes)  # [B, W] float64
        returns = logs[:, 1:] - logs[:, :-1]  # [B, W-1]
        z = ((returns - self.mean) / self.std).clamp(-self.clip, self.clip)  # [B, W-1]
        return z.to(torch.float32).unsqueeze(-1)  # [B, W-1, 1]

    def forward(self, closes: Tensor) -> Tensor:
        """Price levels for horizons 1..H."""
        steps: Tensor = self.core(self.features(closes))  # [B, H] in units of std·√h
        cum = steps.to(torch.float64) * self.scale  # [B, H] cumulative log returns
        return closes[:, -1:] * torch.exp(cum)  # [B, 1] * [B, H] → [B, H] price levels


class ReturnOptions(TypedDict, total=False):
    """Keyword options shared by the return models (see ``_ReturnForecaster``)."""

    window: int
    max_horizon: int
    epochs: int
    batch_size: int
    lr: float
    patience: int
    val_fraction: float
    loss: LossName
    clip: float
    shrink: bool


class _ReturnForecaster(_TorchForecaster):
    """Shared recipe of the return models; subclasses only choose the core."""

    def __init__(self, **options: Unpack[ReturnOptions]) -> None:
        super().__init__(
            window=options.get("window", 40),
            max_horizon=options.get("max_horizon", 30),
            epochs=options.get("epochs", 40),
        )
        self._batch_size = options.get("batch_size", 64)
        self._lr = options.get("lr", 1e-3)
        self._patience = options.get("patience", 5)
        self._val_fraction = options.get("val_fraction", 0.2)
        self._loss: LossName = options.get("loss", "mse")
        self._clip = options.get("clip", 5.0)
        self._shrink = options.get("shrink", True)

    @abc.abstractmethod
    def _make_core(self) -> nn.Module:
        """A freshly initialized core network."""

    def _hyper(self) -> dict[str, JSONValue]:
        return {
            "window": self._window,
            "max_horizon": self._max_horizon,
            "epochs": self._epochs,
            "batch_size": self._batch_size,
            "lr": self._lr,
            "patience": self._patience,
            "val_fraction": self._val_fraction,
            "loss": self._loss,
            "clip": self._clip,
            "shrink": self._shrink,
        }

    def _build_graph(self, fitted: dict[str, JSONValue]) -> nn.Module:
        return _ReturnGraph(
            self._make_core(),
            float(fitted["mean"]),
            float(fitted["std"]),
            self._max_horizon,
            self._clip,
        )

    def _samples(self, graph: _ReturnGraph, y: FloatArray) -> _Split:
        """Windows and per-horizon targets, split in time with a purge gap of H days."""
        w, h = self._window, self._max_horizon
        origins = len(y) - w - h + 1  # origin t = w-1+i sees y[i : i+w], targets t+1..t+h
        n_val = max(1, round(self._val_fraction * origins))
        n_train = origins - n_val - h + 1  # training targets end by the first validation origin
        if n_train < _MIN_TRAIN_WINDOWS:
            raise NotEnoughDataError(
                f"{self.name}: {len(y)} closes leave {max(n_train, 0)} training windows for "
                f"window {w} and horizon {h}; need ≥ {_MIN_TRAIN_WINDOWS}"
            )
        with torch.no_grad():
            x = graph.features(torch.from_numpy(sliding_window_view(y, w)[:origins].copy()))
        future = sliding_window_view(np.log(y), h + 1)[w - 1 : w - 1 + origins]  # [n, h+1]
        cum = (future[:, 1:] - future[:, :1]) / graph.scale.numpy()  # [n, h] standardized
        t = torch.from_numpy(cum).to(torch.float32)
        return _Split(x[:n_train], t[:n_train], x[-n_val:], t[-n_val:])

    def fit(
        self,
        y: FloatArray,
        *,
        seed: int = 0,
        epochs: int | None = None,
        progress: ProgressFn | None = None,
    ) -> Self:
        """Fit on closes ``y`` (scaler statistics from ``y`` only); ``epochs`` caps epochs."""
        y = check_closes(
            y, min_length=self._window + self._max_horizon + 1, what=f"{self.name} fit"
        )
        returns = np.diff(np.log(y))
        fitted: dict[str, JSONValue] = {
            "mean": float(returns.mean()),
            "std": float(max(returns.std(), 1e-12)),
        }
        spec = _TrainSpec(
            _epochs(epochs, self._epochs),
            self._batch_size,
            lr=self._lr,
            loss=self._loss,
            patience=self._patience,
            clip_norm=1.0,
        )
        with _seeded(seed) as gen:
            graph = self._build_graph(fitted)
            assert isinstance(graph, _ReturnGraph)
            data = self._samples(graph, y)
            result = _train(graph.core, data, spec, gen, progress)
            head = graph.core.head
            assert isinstance(head, nn.Linear)
            alpha = _shrink_head(head, graph.core, data) if self._shrink else 1.0
        fitted |= {
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "val_loss": result.val_loss,
            "shrink_alpha": alpha,
        }
        self._graph, self._fitted = graph.eval(), fitted
        return self


class _RecurrentForecaster(_ReturnForecaster):
    """Shared by LSTM and GRU: a recurrent core of ``cell`` + direct head."""

    cell: ClassVar[Literal["lstm", "gru"]]

    def __init__(self, *, hidden: int = 32, layers: int = 1, **options: Unpack[ReturnOptions]):
        super().__init__(**options)
        self._hidden, self._layers = hidden, layers

    def _hyper(self) -> dict[str, JSONValue]:
        return super()._hyper() | {"hidden": self._hidden, "layers": self._layers}

    def _make_core(self) -> nn.Module:
        return _RecurrentCore(self.cell, self._hidden, self._layers, self._max_horizon)


class LSTMForecaster(_RecurrentForecaster):
    """LSTM on standardized log returns with a direct head for horizons 1..H (the default).

    Args:
        hidden: LSTM units per layer (32).
        layers: stacked LSTM layers (1).
        **options: shared recipe options: ``window`` (closes per input, 40), ``max_horizon``
            (30), ``epochs`` (max epochs, 40), ``batch_size`` (64), ``lr`` (1e-3),
            ``patience`` (early-stopping epochs, 5), ``val_fraction`` (trailing share of
            windows for early stopping, 0.2), ``loss`` ("mse" or "huber"), ``clip``
            (standardized-return clip, 5.0), ``shrink`` (scale the head by the validation
            least-squares factor α ∈ [0, 1], True).
    """

    name: ClassVar[str] = "lstm"
    cell: ClassVar[Literal["lstm", "gru"]] = "lstm"


class GRUForecaster(_RecurrentForecaster):
    """GRU on standardized log returns with a direct head for horizons 1..H.

    Args:
        hidden: GRU units per layer (32).
        layers: stacked GRU layers (1).
        **options: shared recipe options, as for ``LSTMForecaster``.
    """

    name: ClassVar[str] = "gru"
    cell: ClassVar[Literal["lstm", "gru"]] = "gru"


class TransformerForecaster(_ReturnForecaster):
    """Small Transformer encoder on standardized log returns, direct head for horizons 1..H.

    Args:
        d_model: embedding width (16).
        heads: attention heads, must divide ``d_model`` (4).
        layers: encoder blocks (1).
        ff: feed-forward width (32).
        **options: shared recipe options, as for ``LSTMForecaster``.
    """

    name: ClassVar[str] = "transformer"

    def __init__(
        self,
        *,
        d_model: int = 16,
        heads: int = 4,
        layers: int = 1,
        ff: int = 32,
        **options: Unpack[ReturnOptions],
    ) -> None:
        super().__init__(**options)
        if d_model % heads:
            raise InvalidInputError(f"heads `{heads}` must divide d_model `{d_model}`")
        self._d_model, self._heads, self._layers, self._ff = d_model, heads, layers, ff

    def _hyper(self) -> dict[str, JSONValue]:
        return super()._hyper() | {
            "d_model": self._d_model,
            "heads": self._heads,
            "layers": self._layers,
            "ff": self._ff,
        }

    def _make_core(self) -> nn.Module:
        return _TransformerCore(
            self._window - 1,
            self._d_model,
            self._heads,
            self._layers,
            self._ff,
            self._max_horizon,
        )
