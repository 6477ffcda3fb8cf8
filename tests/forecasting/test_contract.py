"""One contract table, run over every registered model (darts-style).

Every name in ``registry.model_names()`` needs a row in ``SMALL``: constructor overrides that
make it fit in about a second on 2 cores. A new model without a row fails
``test_every_registered_model_has_a_row``.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from btc_predictor.errors import HorizonExceedsModelError, InvalidInputError, ModelNotFoundError
from btc_predictor.forecasting import registry
from btc_predictor.forecasting.base import Forecaster

H = 30
SEED = 1
_RETURN_NET = {"window": 10, "epochs": 3, "batch_size": 16, "lr": 0.005}

# name -> () -> overrides (a callable, so members of an ensemble are fresh objects per build)
SMALL: dict[str, Callable[[], dict[str, Any]]] = {
    "naive": dict,
    "drift": dict,
    "seed-lstm": lambda: {"window": 10, "epochs": 2, "batch_size": 32, "hidden": 8, "dense": 4},
    "lstm": lambda: {**_RETURN_NET, "hidden": 8},
    "gru": lambda: {**_RETURN_NET, "hidden": 8},
    "transformer": lambda: {**_RETURN_NET, "d_model": 8, "heads": 2, "ff": 16},
    "ensemble": lambda: {
        "members": [
            registry.create_model("drift", max_horizon=H),
            registry.create_model("gru", max_horizon=H, **_RETURN_NET, hidden=8),
        ]
    },
}
BASELINES = {"naive", "drift"}


def structured_series(n: int = 400, seed: int = 0) -> np.ndarray:
    """Closes with learnable structure (AR(1) returns + weekly cycle), so nets leave naive."""
    rng = np.random.default_rng(seed)
    noise, returns = rng.normal(0, 0.01, n), np.zeros(n)
    for t in range(1, n):
        returns[t] = 0.7 * returns[t - 1] + noise[t]
    weekly = 0.02 * np.sin(np.arange(n) * 2 * np.pi / 7)
    return 30_000.0 * np.exp(np.cumsum(returns + weekly))


def make_model(name: str) -> Forecaster:
    """A fresh, small model from the registry."""
    return registry.create_model(name, max_horizon=H, **SMALL[name]())


@functools.cache
def fitted(name: str) -> Forecaster:
    """One fitted model per name, shared by the tests of this module."""
    return make_model(name).fit(structured_series(), seed=SEED)


def test_every_registered_model_has_a_row() -> None:
    assert set(registry.model_names()) == set(SMALL)


def test_registry_lists_every_model_and_refuses_unknown_names() -> None:
    assert registry.model_names() == [
        "naive",
        "drift",
        "seed-lstm",
        "lstm",
        "gru",
        "transformer",
        "ensemble",
    ]
    with pytest.raises(ModelNotFoundError, match="valid models: naive, drift"):
        registry.get_model_class("prophet")
    assert registry.create_model("drift", max_horizon=7).max_horizon == 7


def test_the_core_imports_without_torch() -> None:
    """The API process imports the registry and intervals but must never import torch."""
    code = (
        "import sys\n"
        "import btc_predictor.forecasting.registry, btc_predictor.forecasting.intervals\n"
        "import btc_predictor.forecasting.training, btc_predictor.forecasting.backtest\n"
        "from btc_predictor.forecasting import registry\n"
        "registry.create_model('naive')\n"
        "assert 'torch' not in sys.modules and 'onnx' not in sys.modules, 'heavy import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", registry.model_names())
def test_class_attributes(name: str) -> None:
    cls = registry.get_model_class(name)
    assert cls.name == name
    assert cls.is_baseline == (name in BASELINES)


@pytest.mark.parametrize("name", registry.model_names())
def test_predicts_every_horizon(name: str) -> None:
    model, y = fitted(name), structured_series()
    assert model.max_horizon == H
    full = model.predict(y, H)
    assert full.shape == (H,) and full.dtype == np.float64
    assert np.all(np.isfinite(full)) and np.all(full > 0)
    for h in range(1, H + 1):
        np.testing.assert_allclose(model.predict(y, h), full[:h], rtol=1e-12)
    with pytest.raises(HorizonExceedsModelError):
        model.predict(y, H + 1)
    with pytest.raises(InvalidInputError, match="horizon must be >= 1"):
        model.predict(y, 0)


@pytest.mark.parametrize("name", registry.model_names())
def test_only_the_last_context_length_closes_matter(name: str) -> None:
    model, y = fitted(name), structured_series()
    window = y[-model.context_length :]
    np.testing.assert_array_equal(model.predict(window, H), model.predict(y, H))


@pytest.mark.parametrize("name", registry.model_names())
def test_deterministic_for_a_seed(name: str) -> None:
    again = make_model(name).fit(structured_series(), seed=SEED)
    y = structured_series()
    np.testing.assert_array_equal(again.predict(y, H), fitted(name).predict(y, H))


@pytest.mark.parametrize("name", registry.model_names())
def test_onnx_round_trip_matches_predict(name: str) -> None:
    model, y = fitted(name), structured_series()
    session = ort.InferenceSession(model.to_onnx(), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, out.name, out.type) == (
        "closes",
        "tensor(double)",
        "forecast",
        "tensor(double)",
    )
    ends = [len(y), len(y) - 17, len(y) - 101]  # a batch of 3 different windows
    windows = np.stack([y[e - model.context_length : e] for e in ends])
    (forecast,) = session.run(["forecast"], {"closes": windows})
    assert forecast.shape == (3, H)
    for row, end in zip(forecast, ends, strict=True):
        np.testing.assert_allclose(row, model.predict(y[:end], H), rtol=1e-5)


@pytest.mark.parametrize("name", registry.model_names())
def test_artifacts_round_trip(name: str) -> None:
    model, y = fitted(name), structured_series()
    config = json.loads(json.dumps(model.config()))  # meta.json must hold it
    tensors = model.tensors()
    assert all(t.dtype == np.float32 for t in tensors.values())
    rebuilt = registry.get_model_class(name).from_artifacts(config, tensors)
    assert rebuilt.context_length == model.context_length
    np.testing.assert_allclose(rebuilt.predict(y, H), model.predict(y, H), rtol=1e-12)
