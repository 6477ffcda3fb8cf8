"""Neural forecasters: shapes, determinism, ONNX parity, artifacts, recipe details."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import onnxruntime as ort
import pytest
import torch
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors

from btc_predictor.errors import (
    HorizonExceedsModelError,
    InvalidInputError,
    NoModelError,
    NotEnoughDataError,
)
from btc_predictor.forecasting.networks import (
    GRUForecaster,
    LSTMForecaster,
    SeedLSTMForecaster,
    TorchForecaster,
    TransformerForecaster,
)
from btc_predictor.forecasting.networks.recipe import _keras_init, _SeedGraph, _SeedNet

WINDOW, HORIZON = 10, 4

FACTORIES: dict[str, Callable[[], TorchForecaster]] = {
    "seed-lstm": lambda: SeedLSTMForecaster(
        window=WINDOW, max_horizon=HORIZON, hidden=4, dense=3, batch_size=4
    ),
    "lstm": lambda: LSTMForecaster(window=WINDOW, max_horizon=HORIZON, hidden=4),
    "gru": lambda: GRUForecaster(window=WINDOW, max_horizon=HORIZON, hidden=4),
    "transformer": lambda: TransformerForecaster(
        window=WINDOW, max_horizon=HORIZON, d_model=8, heads=2, ff=16
    ),
}


def random_walk(n: int = 240, seed: int = 0) -> np.ndarray:
    """Positive closes from a log random walk."""
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.03, n)))


def ar_returns(n: int = 900, phi: float = 0.7, seed: int = 1) -> np.ndarray:
    """Closes whose daily log returns follow AR(1): a signal a return model can learn."""
    rng = np.random.default_rng(seed)
    r = np.zeros(n)
    for i in range(1, n):
        r[i] = phi * r[i - 1] + rng.normal(0.0, 0.01)
    return 100.0 * np.exp(np.cumsum(r))


def windows_of(y: np.ndarray, n: int) -> np.ndarray:
    """The last ``n`` sliding windows of width WINDOW."""
    return np.lib.stride_tricks.sliding_window_view(y, WINDOW)[-n:].copy()


@pytest.fixture(scope="module", params=list(FACTORIES))
def fitted(request: pytest.FixtureRequest) -> TorchForecaster:
    """Each model fitted once on a random walk (2 epochs)."""
    return FACTORIES[request.param]().fit(random_walk(), seed=0, epochs=2)


def test_shapes_and_properties(fitted: TorchForecaster) -> None:
    y = random_walk()
    assert fitted.context_length == WINDOW and fitted.max_horizon == HORIZON
    forecast = fitted.predict(y, 3)
    assert forecast.shape == (3,) and forecast.dtype == np.float64
    batch = fitted.predict_batch(windows_of(y, 5))
    assert batch.shape == (5, HORIZON) and np.all(np.isfinite(batch)) and np.all(batch > 0)
    np.testing.assert_allclose(batch[-1, :3], forecast, rtol=1e-6)  # float32 GEMM by batch


@pytest.mark.parametrize("name", list(FACTORIES))
def test_same_seed_is_bitwise_identical(name: str) -> None:
    y = ar_returns(300)
    first = FACTORIES[name]().fit(y, seed=7, epochs=2)
    second = FACTORIES[name]().fit(y, seed=7, epochs=2)
    other = FACTORIES[name]().fit(y, seed=8, epochs=2)
    windows = windows_of(y, 6)
    np.testing.assert_array_equal(first.predict_batch(windows), second.predict_batch(windows))
    a, b, c = first.tensors(), second.tensors(), other.tensors()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


def test_fit_restores_global_torch_state() -> None:
    deterministic = torch.are_deterministic_algorithms_enabled()
    rng_state = torch.get_rng_state()
    FACTORIES["lstm"]().fit(random_walk(), seed=3, epochs=1)
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert torch.equal(torch.get_rng_state(), rng_state)


def test_onnx_matches_torch(fitted: TorchForecaster) -> None:
    session = ort.InferenceSession(fitted.to_onnx(), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, out.name, out.type) == (
        "closes",
        "tensor(double)",
        "forecast",
        "tensor(double)",
    )
    y = random_walk()
    for n in (1, 3):  # dynamic batch axis
        windows = windows_of(y, n)
        (onnx_out,) = session.run(None, {"closes": windows})
        assert onnx_out.shape == (n, HORIZON)
        np.testing.assert_allclose(onnx_out, fitted.predict_batch(windows), rtol=1e-5)


def test_artifacts_round_trip(fitted: TorchForecaster) -> None:
    config = json.loads(json.dumps(fitted.config()))
    tensors = load_safetensors(save_safetensors(fitted.tensors()))
    rebuilt = type(fitted).from_artifacts(config, tensors)
    windows = windows_of(random_walk(), 4)
    np.testing.assert_array_equal(rebuilt.predict_batch(windows), fitted.predict_batch(windows))
    assert rebuilt.config() == config


@pytest.mark.parametrize("name", list(FACTORIES))
def test_epochs_cap_is_honored(name: str) -> None:
    calls: list[tuple[int, int, float | None]] = []
    model = FACTORIES[name]().fit(
        random_walk(), epochs=2, progress=lambda e, t, v: calls.append((e, t, v))
    )
    assert [(e, t) for e, t, _ in calls] == [(1, 2), (2, 2)]
    assert all(v is not None and math.isfinite(v) for _, _, v in calls)
    assert model.config()["fitted"]["epochs_run"] == 2


def test_errors() -> None:
    model = FACTORIES["lstm"]()
    with pytest.raises(NoModelError):
        model.predict(random_walk(), 1)
    with pytest.raises(NotEnoughDataError):
        model.fit(random_walk(20))
    with pytest.raises(InvalidInputError):
        model.fit(np.r_[random_walk(), -1.0])
    with pytest.raises(InvalidInputError):
        model.fit(random_walk(), epochs=0)
    model.fit(random_walk(), epochs=1)
    with pytest.raises(HorizonExceedsModelError):
        model.predict(random_walk(), HORIZON + 1)
    with pytest.raises(NotEnoughDataError):
        model.predict(random_walk(WINDOW - 1), 1)
    with pytest.raises(InvalidInputError):
        model.predict_batch(np.ones((2, WINDOW + 1)))


def test_return_models_learn_a_real_signal() -> None:
    y = ar_returns()
    cut = 700
    model = LSTMForecaster(window=WINDOW, max_horizon=HORIZON, hidden=8).fit(y[:cut], epochs=30)
    windows = np.lib.stride_tricks.sliding_window_view(y, WINDOW)[cut - WINDOW : len(y) - WINDOW]
    origins = np.arange(cut - 1, len(y) - 1)
    model_error = np.abs(model.predict_batch(windows)[:, 0] - y[origins + 1]).mean()
    naive_error = np.abs(y[origins] - y[origins + 1]).mean()
    assert model_error / naive_error < 0.9


def test_return_model_scaler_uses_training_closes_only() -> None:
    y = random_walk(300)
    model = FACTORIES["gru"]().fit(y[:200], epochs=1)
    returns = np.diff(np.log(y[:200]))
    fitted = model.config()["fitted"]
    assert fitted["mean"] == pytest.approx(returns.mean(), rel=1e-12)
    assert fitted["std"] == pytest.approx(returns.std(), rel=1e-12)


def test_seed_lstm_defaults_are_the_original_recipe() -> None:
    model = SeedLSTMForecaster()
    hyper = model.config()["hyper"]
    assert model.context_length == 40
    assert hyper == {
        "window": 40,
        "max_horizon": 30,
        "epochs": 10,
        "batch_size": 1,
        "hidden": 50,
        "dense": 25,
        "validation_split": 0.2,
    }
    graph = model._build_graph({"min": 1.0, "max": 2.0})
    assert isinstance(graph, _SeedGraph)
    net = graph.net
    assert (net.lstm1.input_size, net.lstm1.hidden_size, net.lstm1.num_layers) == (1, 50, 1)
    assert (net.lstm2.input_size, net.lstm2.hidden_size, net.lstm2.num_layers) == (50, 50, 1)
    assert net.lstm1.batch_first and net.lstm2.batch_first
    assert (net.dense.in_features, net.dense.out_features) == (50, 25)
    assert (net.out.in_features, net.out.out_features) == (25, 1)


def test_seed_lstm_keras_initialization() -> None:
    net = _SeedNet(hidden=6, dense=3)
    _keras_init(net)
    bias = net.lstm1.bias_ih_l0.detach()
    assert torch.equal(bias[6:12], torch.ones(6))  # forget gate, Keras unit_forget_bias
    assert torch.count_nonzero(bias).item() == 6
    assert torch.count_nonzero(net.lstm1.bias_hh_l0).item() == 0
    recurrent = net.lstm2.weight_hh_l0.detach()  # [4h, h] with orthonormal columns
    torch.testing.assert_close(recurrent.T @ recurrent, torch.eye(6), atol=1e-5, rtol=0)


def test_seed_lstm_scaler_and_validation_split() -> None:
    y = random_walk(300)
    model = FACTORIES["seed-lstm"]().fit(y[:200], epochs=1)
    fitted = model.config()["fitted"]
    assert (fitted["min"], fitted["max"]) == (y[:200].min(), y[:200].max())  # train only
    split = model._samples(y[:200], fitted["min"], fitted["max"])
    windows = 200 - WINDOW
    assert len(split.x_train) == math.floor(windows * 0.8)  # Keras validation_split
    assert len(split.x_val) == windows - math.floor(windows * 0.8)
    scaled_last = (y[199] - fitted["min"]) / (fitted["max"] - fitted["min"])
    assert split.t_val[-1].item() == pytest.approx(scaled_last, rel=1e-6)  # not shuffled


def test_seed_lstm_rolls_forecasts_forward() -> None:
    model = FACTORIES["seed-lstm"]().fit(random_walk(), epochs=1)
    history = random_walk()[-WINDOW:]
    two = model.predict(history, 2)
    one_then_one = model.predict(np.r_[history[1:], two[0]], 1)
    np.testing.assert_allclose(two[1], one_then_one[0], rtol=1e-5)
