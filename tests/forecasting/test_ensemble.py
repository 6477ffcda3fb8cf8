"""Ensemble: out-of-sample weights, leak-freeness, ONNX composition, artifacts."""

from __future__ import annotations

import json
from typing import ClassVar, Self

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors

from btc_predictor.errors import InvalidInputError, NoModelError
from btc_predictor.forecasting.base import FloatArray, JSONValue, ProgressFn
from btc_predictor.forecasting.baselines import DriftForecaster, NaiveForecaster
from btc_predictor.forecasting.ensemble import EnsembleForecaster, inverse_mse_weights
from btc_predictor.forecasting.networks import LSTMForecaster

HORIZON = 4


def random_walk(n: int = 200, seed: int = 0) -> np.ndarray:
    """Positive closes from a log random walk with a small upward drift."""
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(np.cumsum(rng.normal(0.002, 0.03, n)))


class SpyForecaster:
    """Last close × a fixed factor; records what it was fitted on and what it forecast from."""

    is_baseline: ClassVar[bool] = True

    def __init__(self, name: str, factor: float, context: int = 3) -> None:
        self.name, self.factor, self._context = name, factor, context
        self.fits: list[FloatArray] = []
        self.windows: list[FloatArray] = []

    @property
    def context_length(self) -> int:
        return self._context

    @property
    def max_horizon(self) -> int:
        return HORIZON

    def fit(
        self,
        y: FloatArray,
        *,
        seed: int = 0,
        epochs: int | None = None,
        progress: ProgressFn | None = None,
    ) -> Self:
        self.fits.append(np.array(y))
        return self

    def predict(self, history: FloatArray, horizon: int) -> FloatArray:
        return self.predict_batch(np.asarray(history)[None, -self._context :])[0, :horizon]

    def predict_batch(self, windows: FloatArray) -> FloatArray:
        self.windows.extend(np.array(w) for w in windows)
        return np.repeat(windows[:, -1:] * self.factor, HORIZON, axis=1)

    def config(self) -> dict[str, JSONValue]:
        return {"factor": self.factor}

    def tensors(self) -> dict[str, npt.NDArray[np.float32]]:
        return {}

    def to_onnx(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def from_artifacts(
        cls, config: dict[str, JSONValue], tensors: dict[str, npt.NDArray[np.float32]]
    ) -> Self:
        raise NotImplementedError


def test_inverse_mse_weights() -> None:
    weights = inverse_mse_weights(np.array([[1.0, 4.0], [2.0, 8.0]]))
    np.testing.assert_allclose(weights, [2 / 3, 1 / 3])
    same = inverse_mse_weights(np.array([[0.0, 1.0, np.nan], [0.0, 1.0, 2.0]]))
    np.testing.assert_allclose(same, [0.5, 0.5])  # unscored horizon ignored, zero MSE safe


def test_weights_are_nonnegative_sum_to_one_and_favor_the_better_member() -> None:
    good, bad = SpyForecaster("good", 1.0), SpyForecaster("bad", 1.1)
    ensemble = EnsembleForecaster([good, bad], max_horizon=HORIZON).fit(random_walk())
    weights = ensemble.weights
    assert np.all(weights >= 0) and weights.sum() == pytest.approx(1.0)
    assert weights[0] > weights[1]


def test_weights_learned_without_look_ahead() -> None:
    y = random_walk(200)
    spy = SpyForecaster("spy", 1.0)
    other = SpyForecaster("other", 1.05)
    EnsembleForecaster([spy, other], max_horizon=HORIZON, weight_split=0.75).fit(y)
    split = 150
    np.testing.assert_array_equal(spy.fits[0], y[:split])  # first stage: before the split only
    np.testing.assert_array_equal(spy.fits[1], y)  # then refit on everything
    ends = [int(np.flatnonzero(y == w[-1])[0]) for w in spy.windows]
    assert min(ends) == split - 1 and max(ends) == len(y) - 2  # origins inside the held-out part
    for window, end in zip(spy.windows, ends, strict=True):
        np.testing.assert_array_equal(window, y[end - 2 : end + 1])  # only closes up to origin


def test_weights_ignore_data_after_the_fit_end() -> None:
    y = random_walk(260)
    changed = y.copy()
    changed[200:] *= 3.0
    first = EnsembleForecaster(["naive", "drift"], max_horizon=HORIZON).fit(y[:200])
    second = EnsembleForecaster(["naive", "drift"], max_horizon=HORIZON).fit(changed[:200])
    np.testing.assert_array_equal(first.weights, second.weights)


def test_weights_only_use_first_stage_fits_on_data_before_the_split() -> None:
    y = random_walk(200)
    drift_before = DriftForecaster(HORIZON).fit(y[:160]).config()["drift_per_day"]
    changed = y.copy()
    changed[160:] = changed[159]  # a flat tail would give drift a different μ if it leaked
    ensemble = EnsembleForecaster(["naive", "drift"], max_horizon=HORIZON).fit(changed)
    members = dict(zip([m.name for m in ensemble.members], ensemble.members, strict=True))
    assert members["drift"].config()["drift_per_day"] != drift_before  # refit on all data
    mse = np.array(ensemble.config()["holdout_mse"], dtype=np.float64)
    flat_forecast = np.log(y[159] * np.exp(np.arange(1, HORIZON + 1) * drift_before))
    expected_h1 = (flat_forecast[0] - np.log(y[159])) ** 2  # every target equals y[159]
    assert mse[1, 0] == pytest.approx(expected_h1, rel=1e-9)


@pytest.fixture(scope="module")
def mixed() -> EnsembleForecaster:
    """Naive, drift and a tiny LSTM (1 epoch): the cheapest mix of onnx-helper and torch graphs."""
    members = [
        NaiveForecaster(HORIZON),
        DriftForecaster(HORIZON),
        LSTMForecaster(window=8, max_horizon=HORIZON + 2, hidden=4),
    ]
    return EnsembleForecaster(members, max_horizon=HORIZON).fit(random_walk(), epochs=1)


def test_onnx_composes_members(mixed: EnsembleForecaster) -> None:
    session = ort.InferenceSession(mixed.to_onnx(), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["closes"]
    assert [o.name for o in session.get_outputs()] == ["forecast"]
    assert mixed.context_length == 8
    y = random_walk()
    for n in (1, 3):
        windows = np.lib.stride_tricks.sliding_window_view(y, 8)[-n:].copy()
        (out,) = session.run(None, {"closes": windows})
        assert out.shape == (n, HORIZON)
        np.testing.assert_allclose(out, mixed.predict_batch(windows), rtol=1e-5)


def test_artifacts_round_trip(mixed: EnsembleForecaster) -> None:
    config = json.loads(json.dumps(mixed.config()))
    tensors = load_safetensors(save_safetensors(mixed.tensors()))
    assert tensors and all(k.startswith("lstm.") for k in tensors)
    rebuilt = EnsembleForecaster.from_artifacts(config, tensors)
    np.testing.assert_array_equal(rebuilt.weights, mixed.weights)
    y = random_walk()
    np.testing.assert_array_equal(rebuilt.predict(y, HORIZON), mixed.predict(y, HORIZON))


def test_progress_and_errors() -> None:
    calls: list[tuple[int, int]] = []
    EnsembleForecaster(["naive", "drift"], max_horizon=HORIZON).fit(
        random_walk(), progress=lambda e, t, _: calls.append((e, t))
    )
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    with pytest.raises(InvalidInputError):
        EnsembleForecaster(["naive", "naive"], max_horizon=HORIZON)
    with pytest.raises(NoModelError):
        EnsembleForecaster(["naive"], max_horizon=HORIZON).predict(random_walk(), 1)
