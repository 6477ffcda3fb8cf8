"""Training use-case logic: chronological holdout and final fit (the promotion rule is in
``promotion``).

Pure numpy + the ``Forecaster`` protocol. The holdout fits on the first ``ceil(0.8·N)`` closes
only; forecasts are then made from every origin ``t`` in ``split−1 .. N−2`` using the closes
up to ``t`` as conditioning input, for horizons 1..H whose target ``t+h`` is a test day.

Day keys: the core works with integer indices into ``y``. Callers that compare runs across
versions pass ``days`` (a parallel array of day numbers, e.g. date ordinals) so that per-day
errors are keyed by calendar day, never read from anywhere by the core.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from btc_predictor.errors import InvalidInputError, NotEnoughDataError
from btc_predictor.forecasting import metrics
from btc_predictor.forecasting.base import FloatArray, Forecaster, ProgressFn
from btc_predictor.forecasting.baselines import check_closes
from btc_predictor.forecasting.intervals import log_residuals

IntArray: TypeAlias = npt.NDArray[np.int64]
ModelFactory: TypeAlias = Callable[[], Forecaster]

_BATCH_ROWS = 512  # windows per predict_batch call: bounds peak memory of big networks


def split_index(n: int) -> int:
    """Size of the training part: ``ceil(0.8·n)`` (the original's protocol), exactly."""
    return (4 * n + 4) // 5


def chronological_split(y: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``(train, test)``: the first ``ceil(0.8·N)`` closes, and the rest."""
    split = split_index(len(y))
    return y[:split], y[split:]


def forecast_origins(
    model: Forecaster, y: FloatArray, origins: npt.ArrayLike, horizon: int
) -> FloatArray:
    """Forecasts made at each origin ``t`` from ``y[:t+1]``; shape ``[n_origins, horizon]``."""
    idx = np.asarray(origins, dtype=np.int64).reshape(-1)
    ctx = model.context_length
    if idx.size and (idx.min() < ctx - 1 or idx.max() >= len(y)):
        raise NotEnoughDataError(f"forecast origins need {ctx} closes of history inside the series")
    if not idx.size:
        return np.empty((0, horizon), dtype=np.float64)
    windows = sliding_window_view(y, ctx)[idx - ctx + 1]  # [n, ctx], row i ends at origin i
    parts = [
        np.asarray(model.predict_batch(np.array(windows[i : i + _BATCH_ROWS])), dtype=np.float64)[
            :, :horizon
        ]
        for i in range(0, idx.size, _BATCH_ROWS)  # np.array: a writable copy for torch
    ]
    forecasts = np.concatenate(parts)
    _require_finite(model, forecasts, idx)
    return forecasts


def _require_finite(model: Forecaster, forecasts: FloatArray, origins: IntArray) -> None:
    """Refuse non-finite forecasts: they would become NaN metrics, residuals and reports."""
    bad = np.flatnonzero(~np.isfinite(forecasts).all(axis=1))
    if bad.size:
        row = int(bad[0])
        raise InvalidInputError(
            f"{model.name} forecasts from close #{int(origins[row])} are not finite "
            f"({forecasts[row, :3].tolist()}…): these closes are unusable for this model"
        )


# --- Holdout ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HorizonSeries:
    """Out-of-sample forecasts at one horizon ``h``, in origin (= time) order."""

    h: int
    origins: IntArray  # index of the last close seen when forecasting
    targets: IntArray  # origins + h
    forecast: FloatArray
    actual: FloatArray
    naive: FloatArray  # the naive forecast: the close at the origin

    @property
    def residuals(self) -> FloatArray:
        """Log residuals ``log(actual) − log(forecast)`` (calibrate the intervals)."""
        return log_residuals(self.actual, self.forecast)


@dataclass(frozen=True)
class DayErrors:
    """Absolute h=1 errors of a model and of naive, keyed by target day (ascending)."""

    days: IntArray
    model: FloatArray
    naive: FloatArray

    def to_json(self) -> dict[str, list[Any]]:
        """Plain lists for meta.json."""
        return {
            "days": self.days.tolist(),
            "model": self.model.tolist(),
            "naive": self.naive.tolist(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Sequence[Any]]) -> DayErrors:
        """Rebuild from :meth:`to_json` output."""
        days = np.asarray(data["days"], dtype=np.int64)
        model = np.asarray(data["model"], dtype=np.float64)
        naive = np.asarray(data["naive"], dtype=np.float64)
        if not days.size == model.size == naive.size:
            raise InvalidInputError("day errors: days, model and naive differ in length")
        return cls(days=days, model=model, naive=naive)


@dataclass(frozen=True)
class HoldoutResult:
    """The 80/20 holdout: per-horizon forecasts, h=1 metrics, and calibration residuals."""

    split: int  # train = y[:split]; test = y[split:]
    horizons: list[HorizonSeries]  # horizons[h-1]
    metrics: dict[
        str, float | None
    ]  # h=1: rmse, mae, mape, r2, mase, directional_accuracy, dm_pvalue
    baseline: dict[str, dict[str, float | None]]  # {"naive": {rmse, mae, mape, r2}}
    day_errors: DayErrors  # h=1, for DM tests and same-day comparisons

    @property
    def residuals_per_horizon(self) -> list[FloatArray]:
        """Out-of-sample log residuals, one array per horizon, in time order."""
        return [series.residuals for series in self.horizons]


def holdout_evaluate(
    model_factory: ModelFactory,
    y: FloatArray,
    *,
    seed: int = 0,
    epochs: int | None = None,
    max_horizon: int = 30,
    progress: ProgressFn | None = None,
    days: npt.ArrayLike | None = None,
) -> HoldoutResult:
    """Fit on the first ceil(0.8·N) closes and forecast every test day for horizons 1..H."""
    values = check_closes(y, min_length=2)
    keys = _day_keys(days, values.size)
    split = split_index(values.size)
    if split >= values.size:
        raise NotEnoughDataError(f"a holdout needs at least 5 closes, got {values.size}")
    model = model_factory()
    _check_model_horizon(model, max_horizon)
    model.fit(values[:split], seed=seed, epochs=epochs, progress=progress)
    origins = np.arange(split - 1, values.size - 1, dtype=np.int64)
    forecasts = forecast_origins(model, values, origins, max_horizon)  # [n_origins, H]
    horizons = [_horizon_series(values, origins, forecasts, h) for h in range(1, max_horizon + 1)]
    first = horizons[0]
    return HoldoutResult(
        split=split,
        horizons=horizons,
        metrics=_reported_metrics(first),
        baseline={"naive": metrics.baseline_metrics(first.actual, first.naive)},
        day_errors=DayErrors(
            days=keys[first.targets],
            model=np.abs(first.forecast - first.actual),
            naive=np.abs(first.naive - first.actual),
        ),
    )


def _day_keys(days: npt.ArrayLike | None, n: int) -> IntArray:
    """Caller-given day numbers (one per close), or the indices themselves."""
    if days is None:
        return np.arange(n, dtype=np.int64)
    keys = np.asarray(days, dtype=np.int64).reshape(-1)
    if keys.size != n or np.any(np.diff(keys) <= 0):
        raise InvalidInputError("days must be increasing and parallel to the closes")
    return keys


def _check_model_horizon(model: Forecaster, max_horizon: int) -> None:
    """Raise if ``max_horizon`` is not a horizon the model forecasts."""
    if not 1 <= max_horizon <= model.max_horizon:
        raise InvalidInputError(
            f"max_horizon must be in 1..{model.max_horizon} for `{model.name}`, got `{max_horizon}`"
        )


def _horizon_series(
    y: FloatArray, origins: IntArray, forecasts: FloatArray, h: int
) -> HorizonSeries:
    """The rows of ``forecasts`` whose h-day target lies inside ``y``."""
    keep = origins + h < y.size
    kept = origins[keep]
    return HorizonSeries(
        h=h,
        origins=kept,
        targets=kept + h,
        forecast=forecasts[keep, h - 1],
        actual=y[kept + h],
        naive=y[kept],
    )


def _reported_metrics(series: HorizonSeries) -> dict[str, float | None]:
    """Point metrics plus the DM p-value against naive, for one horizon."""
    reported = metrics.point_metrics(series.naive, series.actual, series.forecast, series.naive)
    dm = metrics.diebold_mariano(
        series.forecast - series.actual, series.naive - series.actual, h=series.h
    )
    reported["dm_pvalue"] = None if dm is None else dm.pvalue
    return reported


# --- Train = holdout + final fit ------------------------------------------------------------


@dataclass(frozen=True)
class TrainOutcome:
    """What ``train`` produces: the served model and the holdout evidence behind it."""

    model: Forecaster  # final fit on the whole window
    metrics: dict[str, float | None]
    baseline: dict[str, dict[str, float | None]]
    residuals_per_horizon: list[list[float]]  # JSON-ready, residuals_per_horizon[h-1]
    holdout: HoldoutResult = field(repr=False)


def train_model(
    model_factory: ModelFactory,
    y: FloatArray,
    *,
    seed: int = 0,
    epochs: int | None = None,
    max_horizon: int = 30,
    progress: ProgressFn | None = None,
    days: npt.ArrayLike | None = None,
) -> TrainOutcome:
    """Holdout evaluation, then a final fit on all of ``y`` with the same seed.

    ``progress`` sees both fits as one run: the holdout's epochs come first, numbered
    ``1..E`` of ``2E``, then the final fit's ``E+1..2E``.
    """
    holdout = holdout_evaluate(
        model_factory,
        y,
        seed=seed,
        epochs=epochs,
        max_horizon=max_horizon,
        progress=_phase(progress, 0),
        days=days,
    )
    model = model_factory().fit(
        np.asarray(y, dtype=np.float64), seed=seed, epochs=epochs, progress=_phase(progress, 1)
    )
    return TrainOutcome(
        model=model,
        metrics=holdout.metrics,
        baseline=holdout.baseline,
        residuals_per_horizon=[r.tolist() for r in holdout.residuals_per_horizon],
        holdout=holdout,
    )


def _phase(progress: ProgressFn | None, phase: int) -> ProgressFn | None:
    """Map one fit's epoch numbers into the two-fit run of :func:`train_model`."""
    if progress is None:
        return None
    report = progress

    def forward(epoch: int, total: int, loss: float | None) -> None:
        """Report this fit's epoch as a step of the whole run."""
        report(phase * total + epoch, 2 * total, loss)

    return forward
