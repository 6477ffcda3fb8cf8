"""Walk-forward backtest: refits, executors, progress, burn-in and conformal intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from btc_predictor.errors import InvalidInputError, ModelNotFoundError
from btc_predictor.forecasting import intervals, metrics
from btc_predictor.forecasting.backtest import backtest
from btc_predictor.forecasting.baselines import DriftForecaster
from btc_predictor.forecasting.executors import ProcessExecutor, SerialExecutor


def random_walk(n: int, seed: int = 0) -> np.ndarray:
    """Synthetic daily closes: a geometric random walk around 30k."""
    rng = np.random.default_rng(seed)
    return 30_000.0 * np.exp(np.cumsum(rng.normal(0.001, 0.02, n)))


def test_each_fold_refits_on_data_up_to_its_start_only() -> None:
    y = random_walk(120)
    result = backtest(
        y, model="drift", start=90, refit_every=10, max_horizon=3, executor=SerialExecutor()
    )
    for train_end in (90, 100, 110):
        expected = DriftForecaster(max_horizon=3).fit(y[:train_end])
        rows = (result.series_origin >= train_end - 1) & (result.series_origin < train_end + 9)
        for origin, h, forecast in zip(
            result.series_origin[rows],
            result.series_h[rows],
            result.series_forecast[rows],
            strict=True,
        ):
            assert forecast == expected.predict(y[: origin + 1], 3)[h - 1]


@pytest.mark.parametrize(
    ("model", "params"),
    [
        ("drift", {}),
        # torch: identical only because every fold runs on one thread, whatever the executor
        pytest.param("gru", {"window": 10, "epochs": 2, "hidden": 8}, marks=pytest.mark.slow),
    ],
)
def test_serial_and_process_executors_give_identical_results(
    model: str, params: dict[str, object]
) -> None:
    y = random_walk(160, seed=2)
    kwargs = {
        "model": model,
        "params": params,
        "start": 100,
        "refit_every": 30,
        "max_horizon": 4,
        "seed": 3,
    }
    serial = backtest(y, **kwargs, executor=SerialExecutor())  # type: ignore[arg-type]
    parallel = backtest(y, **kwargs, executor=ProcessExecutor(max_workers=2))  # type: ignore[arg-type]
    dates = [str(i) for i in range(len(y))]
    assert serial.to_json(dates, asset="X") == parallel.to_json(dates, asset="X")


def test_burn_in_folds_have_no_intervals_and_are_excluded_from_coverage() -> None:
    y = random_walk(300, seed=4)
    result = backtest(
        y,
        model="drift",
        start=100,
        refit_every=20,
        max_horizon=5,
        level=90,
        executor=SerialExecutor(),
    )
    # residuals realised by fold 1's first origin (119): h=1 origins 99..118 → 20 < 30
    assert [f.burn_in for f in result.folds[:3]] == [True, True, False]
    assert not any(f.burn_in for f in result.folds[2:])
    first_covered = result.folds[2].first_origin
    assert np.all(np.isnan(result.series_lower[result.series_origin < first_covered]))
    assert not np.any(np.isnan(result.series_lower[result.series_origin >= first_covered]))
    for hm in result.horizons:
        rows = (result.series_h == hm.h) & (result.series_origin >= first_covered)
        assert hm.n_intervals == rows.sum()
        expected = metrics.coverage(
            result.series_actual[rows], result.series_lower[rows], result.series_upper[rows]
        )
        assert hm.coverage == pytest.approx(expected)


def test_intervals_use_only_residuals_realised_before_the_fold() -> None:
    y = random_walk(300, seed=5)
    result = backtest(
        y, model="drift", start=100, refit_every=20, max_horizon=5, executor=SerialExecutor()
    )
    fold = result.folds[3]  # first origin 159
    h = 5
    past = (result.series_h == h) & (result.series_origin + h <= fold.first_origin)
    residuals = np.log(result.series_actual[past]) - np.log(result.series_forecast[past])
    q = intervals.conformal_quantile(residuals, 90)
    row = np.flatnonzero((result.series_h == h) & (result.series_origin == fold.first_origin))[0]
    assert result.series_upper[row] == pytest.approx(result.series_forecast[row] * math.exp(q))


def test_progress_is_reported_as_folds_finish() -> None:
    calls: list[tuple[int, int]] = []
    backtest(
        random_walk(130, seed=7),
        model="drift",
        start=100,
        refit_every=10,
        max_horizon=3,
        executor=SerialExecutor(),
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_bad_requests() -> None:
    with pytest.raises(ModelNotFoundError, match="valid models"):
        backtest(random_walk(50), model="prophet", executor=SerialExecutor())
    with pytest.raises(InvalidInputError):
        backtest(random_walk(50), model="naive", level=100, executor=SerialExecutor())
    with pytest.raises(InvalidInputError):
        ProcessExecutor(context="fork")
