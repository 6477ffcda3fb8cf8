"""Naive and drift baselines: values, errors, artifacts and the ONNX graph."""

from __future__ import annotations

import doctest
import json
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from btc_predictor.errors import (
    ArtifactError,
    HorizonExceedsModelError,
    InvalidInputError,
    NoModelError,
    NotEnoughDataError,
)
from btc_predictor.forecasting import baselines
from btc_predictor.forecasting.baselines import DriftForecaster, NaiveForecaster


def test_docstring_examples() -> None:
    assert doctest.testmod(baselines).failed == 0


def test_naive_repeats_the_last_close() -> None:
    model = NaiveForecaster(max_horizon=5).fit(np.array([1.0, 2.0]))
    np.testing.assert_array_equal(model.predict(np.array([3.0, 7.0]), 4), [7.0] * 4)
    assert model.is_baseline and model.name == "naive" and model.context_length == 1


def test_drift_uses_the_mean_daily_log_return_of_the_fit_window() -> None:
    y = np.array([100.0, 50.0, 400.0])  # log return total = log 4 over 2 days
    model = DriftForecaster(max_horizon=3).fit(y)
    mu = math.log(4) / 2
    assert model.config()["drift_per_day"] == pytest.approx(mu)
    np.testing.assert_allclose(
        model.predict(np.array([10.0]), 3), 10 * np.exp(mu * np.arange(1, 4))
    )


def test_horizon_and_input_errors() -> None:
    model = DriftForecaster(max_horizon=3)
    with pytest.raises(NoModelError):
        model.predict(np.array([1.0]), 1)
    model.fit(np.array([1.0, 2.0]))
    with pytest.raises(HorizonExceedsModelError):
        model.predict(np.array([1.0]), 4)
    with pytest.raises(InvalidInputError):
        model.predict(np.array([1.0]), 0)
    with pytest.raises(InvalidInputError):
        model.predict(np.array([1.0, -1.0]), 1)
    with pytest.raises(NotEnoughDataError):
        DriftForecaster().fit(np.array([1.0]))
    with pytest.raises(InvalidInputError):
        NaiveForecaster(max_horizon=0)


def test_predict_batch_matches_predict() -> None:
    model = DriftForecaster(max_horizon=4).fit(np.array([1.0, 1.1, 1.3]))
    windows = np.array([[5.0], [6.0]])
    out = model.predict_batch(windows)
    assert out.shape == (2, 4)
    np.testing.assert_array_equal(out[1], model.predict(np.array([6.0]), 4))


@pytest.mark.parametrize("cls", [NaiveForecaster, DriftForecaster])
def test_artifacts_round_trip(cls: type[NaiveForecaster] | type[DriftForecaster]) -> None:
    model = cls(max_horizon=7).fit(np.array([10.0, 11.0, 12.5]))
    config = json.loads(json.dumps(model.config()))
    assert model.tensors() == {}
    rebuilt = cls.from_artifacts(config, {})
    history = np.array([20.0, 21.0])
    np.testing.assert_array_equal(rebuilt.predict(history, 7), model.predict(history, 7))
    with pytest.raises(ArtifactError):
        cls.from_artifacts({"name": "lstm", "max_horizon": 7}, {})


@pytest.mark.parametrize("cls", [NaiveForecaster, DriftForecaster])
def test_onnx_graph_matches_predict(cls: type[NaiveForecaster] | type[DriftForecaster]) -> None:
    model = cls(max_horizon=30).fit(np.array([100.0, 90.0, 120.0, 130.0]))
    raw = model.to_onnx()
    onnx.checker.check_model(onnx.load_from_string(raw))
    session = ort.InferenceSession(raw, providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, out.name, out.type) == (
        "closes",
        "tensor(double)",
        "forecast",
        "tensor(double)",
    )
    closes = np.array([[50_000.0], [60_000.0], [1.5]])
    (forecast,) = session.run(["forecast"], {"closes": closes})
    assert forecast.shape == (3, 30)
    for row, close in zip(forecast, closes, strict=True):
        np.testing.assert_allclose(row, model.predict(close, 30), rtol=1e-12)
