"""Result shapes: what services return and the API documents, each written once.

Services return these; the CLI prints ``model_dump(mode="json")`` (``--json``) or renders them,
the API uses them as response models, jobs store their JSON. Stored JSON stays readable by
older and newer code alike, so results ignore fields they do not know.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict


class Result(BaseModel):
    """An immutable result; unknown fields (from newer stored JSON) are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class PointMetrics(Result):
    """Point-forecast errors on the holdout (MAPE in percent, R² unitless)."""

    rmse: float | None
    mae: float | None
    mape: float | None
    r2: float | None


class HoldoutMetrics(PointMetrics):
    """The model's holdout metrics at h=1, naive-relative where it matters."""

    mase: float | None
    directional_accuracy: float | None
    dm_pvalue: float | None = None


class Baseline(Result):
    """The naive forecast's holdout metrics on the same days."""

    naive: PointMetrics


class Calibration(Result):
    """Out-of-sample log residuals per horizon (they calibrate the intervals)."""

    residuals_per_horizon: list[list[float]]


class TrainSummary(Result):
    """What one training measured, before it is stored."""

    asset: str
    model: str
    seed: int
    training_duration: float
    data_points_used: int
    train_start: date
    train_end: date
    data_sha256: str
    metrics: HoldoutMetrics
    baseline: Baseline


class TrainResult(TrainSummary):
    """``train --json``: the stored version, whether it was promoted and why."""

    calibration: Calibration | None = None  # omitted where the version's meta holds it
    version: int
    promoted: bool
    promotion_reason: str


class BacktestFold(Result):
    """One walk-forward fold: its training cut-off and the origins it forecast from."""

    index: int
    train_end: date
    first_origin: date
    last_origin: date
    burn_in: bool  # no interval yet: too few out-of-sample residuals


class BacktestHorizon(Result):
    """Walk-forward metrics at one horizon, next to naive on the same days."""

    h: int
    n: int
    mae: float | None
    rmse: float | None
    mape: float | None
    mase: float | None
    directional_accuracy: float | None
    coverage: float | None
    interval_width: float | None
    relative_interval_width: float | None
    n_intervals: int
    naive_mae: float | None
    dm_pvalue: float | None


class BacktestRow(Result):
    """One realised forecast: from ``origin``, ``h`` days ahead (bounds None in burn-in)."""

    origin: date
    target_date: date
    h: int
    actual: float
    forecast: float
    lower: float | None
    upper: float | None
    naive: float


class BacktestReport(Result):
    """``backtest --json``: the walk-forward run, per-horizon metrics and every forecast."""

    asset: str
    model: str
    level: int
    refit_every: int
    start: date
    end: date
    folds: int
    burn_in_folds: int
    fold_details: list[BacktestFold]
    horizons: list[BacktestHorizon]
    series: list[BacktestRow]
