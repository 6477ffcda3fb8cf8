"""One contract table over every registered risk model (as test_contract.py does for prices)."""

from __future__ import annotations

import functools
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors

from btc_predictor.errors import (
    HorizonExceedsModelError,
    InvalidInputError,
    ModelNotFoundError,
    NoModelError,
    NotEnoughDataError,
)
from btc_predictor.forecasting import registry
from btc_predictor.forecasting.risk import OHLC, RiskForecaster
from tests.forecasting.risk_data import brownian_ohlc, synthetic_ohlc

H = 10
SEED = 3
BASELINES = {"naive-range"}
NAMES = registry.risk_model_names()


def make_model(name: str) -> RiskForecaster:
    """A fresh risk model from the registry."""
    return registry.create_risk_model(name, max_horizon=H)


@functools.cache
def candles() -> OHLC:
    """Shared synthetic candles (with two zero-range days inside the fit window)."""
    return synthetic_ohlc(500, seed=1, zero_range=(120, 121))


@functools.cache
def fitted(name: str) -> RiskForecaster:
    """One fitted model per name."""
    return make_model(name).fit(candles(), seed=SEED)


def test_registry_lists_risk_models_and_their_family() -> None:
    assert NAMES == ["naive-range", "ewma-vol", "har", "garch"]
    assert {registry.model_family(n) for n in NAMES} == {"risk"}
    assert {registry.model_family(n) for n in registry.model_names()} == {"price"}
    with pytest.raises(ModelNotFoundError, match="risk models: naive-range, ewma-vol, har, garch"):
        registry.model_family("prophet")
    with pytest.raises(ModelNotFoundError, match="valid risk models"):
        registry.get_risk_model_class("lstm")


def test_the_risk_core_imports_without_arch_torch_or_pandas() -> None:
    """Serving a risk version (from artifacts) must not need the train extra."""
    code = (
        "import sys, numpy as np\n"
        "from btc_predictor.forecasting import registry\n"
        "from btc_predictor.forecasting.risk.backtest import risk_backtest\n"
        "from btc_predictor.forecasting.risk.training import train_risk_model\n"
        "cls = registry.get_risk_model_class('garch')\n"
        "m = cls.from_artifacts({'name': 'garch', 'max_horizon': 2}, {'params': np.array("
        "[0.0, 0.1, 0.1, 0.8, 5.0]), 'backcast': np.array([1.0]), 'range_scale': np.ones(2)})\n"
        "from btc_predictor.forecasting.risk import OHLC\n"
        "m.forecast(OHLC.from_arrays([1, 1], [1.1, 1.2], [0.9, 0.95], [1, 1.1]), 2)\n"
        "heavy = {'arch', 'torch', 'pandas', 'scipy'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", NAMES)
def test_class_attributes(name: str) -> None:
    cls = registry.get_risk_model_class(name)
    assert cls.name == name and cls.is_baseline == (name in BASELINES)


@pytest.mark.parametrize("name", NAMES)
def test_forecasts_every_horizon(name: str) -> None:
    model, data = fitted(name), candles()
    full = model.forecast(data, H)
    for values in (full.volatility, full.range_pct):
        assert values.shape == (H,) and values.dtype == np.float64
        assert np.all(np.isfinite(values)) and np.all(values > 0)
    # σ of one day's log return, a fraction (the synthetic σ is 1–6% a day), not annualised
    assert np.all((full.volatility > 0.003) & (full.volatility < 0.2))
    for h in range(1, H + 1):
        part = model.forecast(data, h)
        np.testing.assert_array_equal(part.range_pct, full.range_pct[:h])
        np.testing.assert_array_equal(part.volatility, full.volatility[:h])
    with pytest.raises(HorizonExceedsModelError):
        model.forecast(data, H + 1)
    with pytest.raises(InvalidInputError, match="horizon must be >= 1"):
        model.forecast(data, 0)


@pytest.mark.parametrize("name", NAMES)
def test_batch_rows_equal_single_forecasts(name: str) -> None:
    model, data = fitted(name), candles()
    origins = np.array([60, 250, 499])
    batch = model.forecast_batch(data, origins)
    assert batch.range_pct.shape == batch.volatility.shape == (3, H)
    for row, origin in enumerate(origins):
        single = model.forecast(data.head(int(origin) + 1), H)
        np.testing.assert_allclose(batch.range_pct[row], single.range_pct, rtol=1e-12)
        np.testing.assert_allclose(batch.volatility[row], single.volatility, rtol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_no_look_ahead(name: str) -> None:
    """Truncating the candles at day t leaves the forecast made at t unchanged."""
    model, data = fitted(name), candles()
    t = 300
    later = model.forecast_batch(data, [t])
    truncated = model.forecast_batch(data.head(t + 1), [t])
    np.testing.assert_array_equal(later.range_pct, truncated.range_pct)
    np.testing.assert_array_equal(later.volatility, truncated.volatility)
    # and the fit: a model fitted on days < 400 ignores what comes after
    a = make_model(name).fit(data.head(400), seed=SEED)
    b = make_model(name).fit(synthetic_ohlc(500, seed=1, zero_range=(120, 121)).head(400))
    np.testing.assert_array_equal(a.forecast(data, H).range_pct, b.forecast(data, H).range_pct)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_for_a_seed(name: str) -> None:
    again = make_model(name).fit(candles(), seed=SEED)
    np.testing.assert_array_equal(
        again.forecast(candles(), H).range_pct, fitted(name).forecast(candles(), H).range_pct
    )


@pytest.mark.parametrize("name", NAMES)
def test_store_round_trip_serves_the_fitted_model(name: str) -> None:
    """config → JSON, tensors → safetensors bytes, rebuilt: the same forecasts to 1e-9."""
    model, data = fitted(name), candles()
    config = json.loads(json.dumps(model.config()))
    tensors = load_tensors(save_tensors(model.tensors())) if model.tensors() else {}
    served = registry.get_risk_model_class(name).from_artifacts(config, tensors)
    origins = np.arange(30, len(data))
    want, got = model.forecast_batch(data, origins), served.forecast_batch(data, origins)
    np.testing.assert_allclose(got.range_pct, want.range_pct, rtol=1e-9, atol=0)
    np.testing.assert_allclose(got.volatility, want.volatility, rtol=1e-9, atol=0)
    assert config["name"] == name and config["max_horizon"] == H


@pytest.mark.parametrize("name", NAMES)
def test_zero_range_days_are_valid_data(name: str) -> None:
    """A flat day (high == low) in the fit window and at the origin gives finite forecasts."""
    data = synthetic_ohlc(400, seed=2, zero_range=(100, 101, 399))
    forecast = make_model(name).fit(data, seed=SEED).forecast(data, H)
    assert np.all(np.isfinite(forecast.volatility)) and np.all(forecast.volatility > 0)
    assert np.all(np.isfinite(forecast.range_pct)) and np.all(forecast.range_pct >= 0)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in BASELINES])
def test_unfitted_model_refuses_to_forecast(name: str) -> None:
    with pytest.raises(NoModelError, match="not fitted"):
        make_model(name).forecast(candles(), 1)


@pytest.mark.parametrize("name", NAMES)
def test_origins_without_enough_history_are_refused(name: str) -> None:
    model = fitted(name)
    with pytest.raises(NotEnoughDataError):
        model.forecast_batch(candles(), [len(candles())])  # beyond the candles
    if name not in BASELINES:  # naive-range learns nothing, so any length fits
        with pytest.raises(NotEnoughDataError, match="need at least"):
            make_model(name).fit(candles().head(10))


def test_har_needs_dates_for_its_weekday_profile() -> None:
    data = candles()
    undated = OHLC(data.open, data.high, data.low, data.close)
    with pytest.raises(InvalidInputError, match=r"OHLC\.day"):
        make_model("har").fit(undated)


def test_har_learns_the_weekend_lull() -> None:
    """The synthetic weekends are quieter (σ × 0.6): har forecasts lower ranges for them."""
    data = candles()
    forecast = fitted("har").forecast(data, 7)
    weekday = (data.weekday()[-1] + np.arange(1, 8)) % 7
    weekend = np.isin(weekday, (5, 6))
    assert forecast.range_pct[weekend].max() < 0.8 * forecast.range_pct[~weekend].min()


@pytest.mark.skipif(importlib.util.find_spec("arch") is None, reason="arch (train extra)")
def test_garch_recursion_is_archs_conditional_variance() -> None:
    """The numpy serving recursion replays arch's own filtered variances exactly."""
    from arch import arch_model

    from btc_predictor.forecasting.risk.garch import percent_returns

    data = candles()
    model = fitted("garch")
    returns = percent_returns(data.close)
    result = arch_model(returns, mean="Constant", vol="GARCH", p=1, q=1, dist="t").fit(disp="off")
    sigma = model.forecast_batch(data, np.arange(len(data) - 1)).volatility[:, 0] * 100.0
    np.testing.assert_allclose(sigma, np.asarray(result.conditional_volatility), rtol=1e-6)
    forecast = result.forecast(horizon=H, reindex=False).variance.to_numpy()[-1]
    np.testing.assert_allclose(model.forecast(data, H).volatility ** 2 * 1e4, forecast, rtol=1e-6)


def test_har_is_not_thrown_by_a_few_zero_range_days() -> None:
    """Three flat days in 500 barely move har's forecasts (≤ 3.8% here: its floor tames the
    log-variance outliers); with only the global 1e-8 floor they moved them by up to 7.7%."""
    clean = synthetic_ohlc(500, seed=6)
    flat = synthetic_ohlc(500, seed=6, zero_range=(150, 151, 152))
    # the flat days shift later prices, so compare on the clean candles' recent days
    a = make_model("har").fit(clean).forecast(clean, H).range_pct
    b = make_model("har").fit(flat).forecast(clean, H).range_pct
    np.testing.assert_allclose(b, a, rtol=0.05)


@pytest.mark.skipif(importlib.util.find_spec("arch") is None, reason="arch (train extra)")
def test_garch_refuses_a_fit_that_did_not_converge() -> None:
    """Flat prices have no variance to estimate: a clear error, not a half-optimised model."""
    flat = OHLC.from_arrays(*([np.full(200, 100.0)] * 4))
    with pytest.raises(InvalidInputError, match="did not converge on these 199 returns"):
        make_model("garch").fit(flat)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "garch"])
def test_flat_candles_still_give_finite_forecasts(name: str) -> None:
    """Every day zero-range: the range models forecast a (floored) tiny but finite risk."""
    flat = OHLC.from_arrays(*([np.full(200, 100.0)] * 4), day=np.arange(200))
    forecast = make_model(name).fit(flat).forecast(flat, H)
    assert np.all(np.isfinite(forecast.volatility)) and np.all(forecast.volatility > 0)
    assert np.all(np.isfinite(forecast.range_pct)) and np.all(forecast.range_pct >= 0)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in BASELINES])
def test_volatility_and_range_mean_what_they_say(name: str) -> None:
    """Constant σ = 3%: every model's volatility is ≈ 0.03 (a daily fraction), and its range
    forecast is ≈ the median daily range, 100·σ·κ with κ ≈ 1.5 for Brownian motion."""
    data = brownian_ohlc(600, sigma=0.03, seed=7)
    forecast = make_model(name).fit(data.head(500)).forecast(data, H)
    np.testing.assert_allclose(forecast.volatility, 0.03, rtol=0.15)
    median_range = float(np.median(data.range_pct()))
    assert 1.35 < median_range / 3.0 < 1.65  # the synthetic candles are Brownian
    np.testing.assert_allclose(forecast.range_pct, median_range, rtol=0.15)
