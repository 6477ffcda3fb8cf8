"""Holdout split, leakage and the train outcome."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from btc_predictor.errors import InvalidInputError, NotEnoughDataError
from btc_predictor.forecasting import metrics
from btc_predictor.forecasting.baselines import DriftForecaster, NaiveForecaster
from btc_predictor.forecasting.training import (
    DayErrors,
    chronological_split,
    forecast_origins,
    holdout_evaluate,
    split_index,
    train_model,
)


def random_walk(n: int, seed: int = 0) -> np.ndarray:
    """Synthetic daily closes: a geometric random walk around 30k."""
    rng = np.random.default_rng(seed)
    return 30_000.0 * np.exp(np.cumsum(rng.normal(0.0005, 0.02, n)))


class SpyDrift(DriftForecaster):
    """Drift that records what it was fitted on."""

    fits: list[np.ndarray]

    def fit(self, y: np.ndarray, **kwargs: Any) -> SpyDrift:
        self.fits = [*getattr(self, "fits", []), np.array(y)]
        progress = kwargs.get("progress")
        if progress is not None:
            for epoch in (1, 2):
                progress(epoch, 2, 0.1 * epoch)
        return super().fit(y)


@pytest.mark.parametrize(("n", "train"), [(2890, 2312), (10, 8), (5, 4), (2, 2), (11, 9)])
def test_split_is_ceil_of_80_percent(n: int, train: int) -> None:
    assert split_index(n) == train
    head, tail = chronological_split(np.arange(n, dtype=float))
    assert (len(head), len(tail)) == (train, n - train)
    assert head[-1] + 1 == (tail[0] if len(tail) else n)


def test_holdout_fit_sees_only_the_train_part() -> None:
    y = random_walk(100)
    spy = SpyDrift(max_horizon=5)
    result = holdout_evaluate(lambda: spy, y, max_horizon=5)
    assert result.split == 80
    (seen,) = spy.fits
    np.testing.assert_array_equal(seen, y[:80])


def test_holdout_forecasts_every_test_day_per_horizon() -> None:
    y = random_walk(100)
    result = holdout_evaluate(lambda: DriftForecaster(max_horizon=5), y, max_horizon=5)
    assert [len(s.actual) for s in result.horizons] == [20, 19, 18, 17, 16]
    first, third = result.horizons[0], result.horizons[2]
    assert first.origins[0] == 79 and first.targets[-1] == 99  # first target = first test day
    np.testing.assert_array_equal(third.actual, y[third.origins + 3])
    np.testing.assert_array_equal(third.naive, y[third.origins])
    assert [len(r) for r in result.residuals_per_horizon] == [20, 19, 18, 17, 16]


def test_holdout_metrics_show_naive_beside_the_model() -> None:
    y = random_walk(200, seed=3)
    result = holdout_evaluate(lambda: DriftForecaster(max_horizon=3), y, max_horizon=3)
    s = result.horizons[0]
    assert result.metrics["mase"] == pytest.approx(metrics.mase(s.actual, s.forecast, s.naive))
    assert result.baseline["naive"]["mae"] == pytest.approx(metrics.mae(s.actual, s.naive))
    assert set(result.metrics) == {
        "rmse",
        "mae",
        "mape",
        "r2",
        "mase",
        "directional_accuracy",
        "dm_pvalue",
    }
    np.testing.assert_allclose(result.day_errors.model, np.abs(s.forecast - s.actual))
    naive = holdout_evaluate(lambda: NaiveForecaster(max_horizon=3), y, max_horizon=3)
    assert naive.metrics["mase"] == 1.0
    assert naive.metrics["directional_accuracy"] is None
    assert naive.metrics["dm_pvalue"] == 1.0


def test_day_keys_map_errors_to_calendar_days() -> None:
    y = random_walk(50)
    days = np.arange(50) + 738_000  # e.g. date ordinals
    result = holdout_evaluate(lambda: DriftForecaster(max_horizon=2), y, max_horizon=2, days=days)
    np.testing.assert_array_equal(result.day_errors.days, days[40:])
    assert DayErrors.from_json(json.loads(json.dumps(result.day_errors.to_json()))) is not None
    with pytest.raises(InvalidInputError):
        holdout_evaluate(lambda: DriftForecaster(max_horizon=2), y, max_horizon=2, days=days[:-1])


def test_batched_origins_equal_one_predict_per_origin() -> None:
    y = random_walk(1200)
    model = DriftForecaster(max_horizon=4).fit(y[:500])
    origins = np.arange(499, 1199)  # more than one 512-row chunk
    expected = np.stack([model.predict(y[: t + 1], 4) for t in origins])
    np.testing.assert_allclose(forecast_origins(model, y, origins, 4), expected, rtol=1e-15)
    with pytest.raises(NotEnoughDataError):
        forecast_origins(model, y, [1200], 4)


def test_a_holdout_needs_at_least_one_test_day() -> None:
    with pytest.raises(NotEnoughDataError, match="at least 5 closes"):
        holdout_evaluate(lambda: DriftForecaster(max_horizon=1), random_walk(4), max_horizon=1)
    result = holdout_evaluate(lambda: DriftForecaster(max_horizon=1), random_walk(5), max_horizon=1)
    assert len(result.horizons[0].actual) == 1


def test_max_horizon_beyond_the_model_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="max_horizon"):
        holdout_evaluate(lambda: DriftForecaster(max_horizon=3), random_walk(30), max_horizon=5)


def test_train_model_holdout_then_final_fit_on_everything() -> None:
    y = random_walk(100)
    spies: list[SpyDrift] = []

    def factory() -> SpyDrift:
        spies.append(SpyDrift(max_horizon=3))
        return spies[-1]

    calls: list[tuple[int, int]] = []
    outcome = train_model(factory, y, max_horizon=3, progress=lambda e, t, _: calls.append((e, t)))
    holdout_spy, final_spy = spies
    np.testing.assert_array_equal(holdout_spy.fits[0], y[:80])
    np.testing.assert_array_equal(final_spy.fits[0], y)
    assert outcome.model is final_spy
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert outcome.metrics == outcome.holdout.metrics
    assert set(outcome.baseline["naive"]) == {"rmse", "mae", "mape", "r2"}
    json.dumps(outcome.residuals_per_horizon)  # JSON-ready
    assert len(outcome.residuals_per_horizon) == 3


class OverflowingDrift(DriftForecaster):
    """Drift whose forecasts from the 3rd window on are infinite (a model that diverged)."""

    def predict_batch(self, windows: np.ndarray) -> np.ndarray:
        forecasts = super().predict_batch(windows)
        forecasts[2:, 1] = np.inf
        return forecasts


def test_non_finite_forecasts_are_refused_not_turned_into_metrics() -> None:
    y = random_walk(60)
    model = OverflowingDrift(max_horizon=2).fit(y[:40])
    with pytest.raises(InvalidInputError, match=r"drift forecasts from close #41 are not finite"):
        forecast_origins(model, y, np.arange(39, 59), 2)
    with pytest.raises(InvalidInputError, match="not finite"):
        holdout_evaluate(lambda: OverflowingDrift(max_horizon=2), y, max_horizon=2)
