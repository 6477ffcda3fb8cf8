"""No lookahead: a forecast made at day t is the same whether or not later data exists.

Checked three ways: through each model's predict/predict_batch, through the holdout, and
through the walk-forward backtest. "Later data" is either cut off or replaced by garbage.
"""

from __future__ import annotations

import numpy as np
import pytest

from btc_predictor.forecasting import registry
from btc_predictor.forecasting.backtest import backtest
from btc_predictor.forecasting.executors import SerialExecutor
from btc_predictor.forecasting.training import forecast_origins, holdout_evaluate
from tests.forecasting.test_contract import SMALL, H, make_model, structured_series

SPLIT = 300  # model fit on y[:SPLIT]
T_CHECK = (SPLIT - 1, SPLIT + 40, 398)


def scramble_after(y: np.ndarray, t: int, seed: int = 9) -> np.ndarray:
    """A copy of ``y`` whose days after ``t`` are replaced by a different random path."""
    out = y.copy()
    rng = np.random.default_rng(seed)
    out[t + 1 :] = y[t] * np.exp(np.cumsum(rng.normal(0.05, 0.2, len(y) - t - 1)))
    return out


@pytest.mark.parametrize("name", registry.model_names())
def test_model_forecast_at_t_ignores_later_days(name: str) -> None:
    y = structured_series()
    model = make_model(name).fit(y[:SPLIT], seed=1)
    origins = np.arange(SPLIT - 1, len(y) - 1)
    batched = forecast_origins(model, y, origins, H)  # [n_origins, H], one batch
    for t in T_CHECK:
        row = batched[t - (SPLIT - 1)]
        alone = forecast_origins(model, y[: t + 1], [t], H)[0]
        scrambled = forecast_origins(model, scramble_after(y, t), origins, H)[t - (SPLIT - 1)]
        np.testing.assert_allclose(alone, row, rtol=1e-6)
        np.testing.assert_allclose(scrambled, row, rtol=1e-6)  # batch rows do not interact
        np.testing.assert_allclose(model.predict(y[: t + 1], H), row, rtol=1e-6)


@pytest.mark.parametrize("name", ["drift", "gru"])
def test_holdout_forecasts_ignore_later_days(name: str) -> None:
    y = structured_series()
    t = 340  # a day inside the test part (split = 320)
    factory = lambda: make_model(name)  # noqa: E731
    base = holdout_evaluate(factory, y, seed=2, max_horizon=H)
    other = holdout_evaluate(factory, scramble_after(y, t), seed=2, max_horizon=H)
    for a, b in zip(base.horizons, other.horizons, strict=True):
        seen = a.origins <= t
        np.testing.assert_array_equal(a.forecast[seen], b.forecast[seen])


@pytest.mark.parametrize("name", ["drift", "gru"])
def test_backtest_forecasts_ignore_later_days(name: str) -> None:
    y = structured_series()
    t = 350
    kwargs = {
        "model": name,
        "params": SMALL[name](),
        "start": 300,
        "refit_every": 25,
        "max_horizon": 5,
        "seed": 4,
        "executor": SerialExecutor(),
    }
    full = backtest(y, **kwargs)  # type: ignore[arg-type]
    cut = backtest(y[: t + 1], **kwargs)  # type: ignore[arg-type]
    by_key = {
        (o, h): f
        for o, h, f in zip(full.series_origin, full.series_h, full.series_forecast, strict=True)
    }
    assert len(cut.series_origin) > 100
    for o, h, f in zip(cut.series_origin, cut.series_h, cut.series_forecast, strict=True):
        # equal up to float32 batch-size effects (the cut's last fold has fewer origins)
        assert by_key[(o, h)] == pytest.approx(f, rel=1e-6)
