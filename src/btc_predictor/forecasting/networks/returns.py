"""Return models (``lstm``, ``gru``, ``transformer``): one recipe, chosen on evidence in
``bench/RECIPE_NOTES.md``.

Standardized daily log returns in, cumulative log return per horizon out (a direct
multi-output head, no recursion), batched training with chronological early stopping. The
head starts at zero, i.e. at the naive forecast, and the weights of the best validation epoch
are kept, including "epoch 0"; the head is then shrunk toward zero by the least-squares factor
α ∈ [0, 1] on the validation windows. When the data holds no signal the model stays at (or
near) the random-walk forecast instead of chasing noise.
"""

from __future__ import annotations

import abc
import math
from typing import ClassVar, Literal, Self, TypedDict, Unpack

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import Tensor, nn

from btc_predictor.errors import (
    InvalidInputError,
    NotEnoughDataError,
)
from btc_predictor.forecasting.base import FloatArray, JSONValue, ProgressFn
from btc_predictor.forecasting.baselines import check_closes
from btc_predictor.forecasting.networks.core import (
    MIN_TRAIN_WINDOWS,
    LossName,
    Split,
    TorchForecaster,
    TrainSpec,
    resolve_epochs,
    seeded,
    train_network,
)

# --------------------------------------------------------------------------- return models


def _shrink_head(head: nn.Linear, core: nn.Module, data: Split) -> float:
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


def _return_scaler(y: FloatArray) -> dict[str, JSONValue]:
    """Mean and standard deviation of the daily log returns of ``y`` (floored above zero)."""
    returns = np.diff(np.log(y))
    return {"mean": float(returns.mean()), "std": float(max(returns.std(), 1e-12))}


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


class _ReturnForecaster(TorchForecaster):
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

    def _samples(self, graph: _ReturnGraph, y: FloatArray) -> Split:
        """Windows and per-horizon targets, split in time with a purge gap of H days."""
        w, h = self._window, self._max_horizon
        origins = len(y) - w - h + 1  # origin t = w-1+i sees y[i : i+w], targets t+1..t+h
        n_val = max(1, round(self._val_fraction * origins))
        n_train = origins - n_val - h + 1  # training targets end by the first validation origin
        if n_train < MIN_TRAIN_WINDOWS:
            raise NotEnoughDataError(
                f"{self.name}: {len(y)} closes leave {max(n_train, 0)} training windows for "
                f"window {w} and horizon {h}; need ≥ {MIN_TRAIN_WINDOWS}"
            )
        with torch.no_grad():
            x = graph.features(torch.from_numpy(sliding_window_view(y, w)[:origins].copy()))
        future = sliding_window_view(np.log(y), h + 1)[w - 1 : w - 1 + origins]  # [n, h+1]
        cum = (future[:, 1:] - future[:, :1]) / graph.scale.numpy()  # [n, h] standardized
        t = torch.from_numpy(cum).to(torch.float32)
        return Split(x[:n_train], t[:n_train], x[-n_val:], t[-n_val:])

    def _train_spec(self, epochs: int | None) -> TrainSpec:
        """The training loop's settings: the recipe's, with ``epochs`` capping the epochs."""
        return TrainSpec(
            resolve_epochs(epochs, self._epochs),
            self._batch_size,
            lr=self._lr,
            loss=self._loss,
            patience=self._patience,
            clip_norm=1.0,
        )

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
        fitted = _return_scaler(y)
        spec = self._train_spec(epochs)
        with seeded(seed) as gen:
            graph = self._build_graph(fitted)
            assert isinstance(graph, _ReturnGraph)
            data = self._samples(graph, y)
            result = train_network(graph.core, data, spec, gen, progress)
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
