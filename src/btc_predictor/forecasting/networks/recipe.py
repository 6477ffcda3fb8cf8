"""The original's recipe (``seed-lstm``), kept exactly for comparison: LSTM(50) → LSTM(50) →
Dense(25) → Dense(1) on MinMax-scaled closes, Keras-style initialisation, batch 1 by default
(the scaler is fitted on the training part only, unlike the original).
"""

from __future__ import annotations

import math
from typing import ClassVar, Self

import torch
from torch import Tensor, nn

from btc_predictor.errors import (
    InvalidInputError,
    NotEnoughDataError,
)
from btc_predictor.forecasting.base import FloatArray, JSONValue, ProgressFn
from btc_predictor.forecasting.baselines import check_closes
from btc_predictor.forecasting.networks.core import (
    Split,
    TorchForecaster,
    TrainSpec,
    resolve_epochs,
    seeded,
    train_network,
)

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


class SeedLSTMForecaster(TorchForecaster):
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

    def _samples(self, y: FloatArray, low: float, high: float) -> Split:
        """40 → 1 windows of scaled closes, split like Keras' ``validation_split``."""
        scaled = torch.from_numpy((y - low) / (high - low)).to(torch.float32)  # [n]
        x = scaled.unfold(0, self._window, 1)[:-1].unsqueeze(-1)  # [n - W, W, 1]
        t = scaled[self._window :].unsqueeze(-1)  # [n - W, 1]
        cut = math.floor(len(x) * (1.0 - self._validation_split))
        if cut < 1 or cut == len(x):
            raise NotEnoughDataError(f"{self.name}: {len(x)} windows are too few to validate on")
        return Split(x[:cut], t[:cut], x[cut:], t[cut:])

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
        spec = TrainSpec(resolve_epochs(epochs, self._epochs), self._batch_size, lr=1e-3, eps=1e-7)
        fitted: dict[str, JSONValue] = {"min": low, "max": high}
        with seeded(seed) as gen:
            graph = self._build_graph(fitted)
            assert isinstance(graph, _SeedGraph)
            _keras_init(graph.net)
            result = train_network(graph.net, self._samples(y, low, high), spec, gen, progress)
        fitted |= {"epochs_run": result.epochs_run, "val_loss": result.val_loss}
        self._graph, self._fitted = graph.eval(), fitted
        return self
