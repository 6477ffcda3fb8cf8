"""Result shapes: what services return and the API documents, each written once.

Services return these; the CLI prints ``model_dump(mode="json")`` (``--json``) or renders them,
the API uses them as response models, jobs store their JSON. Stored JSON stays readable by
older and newer code alike, so results ignore fields they do not know.
The risk family's backtest and forecast shapes are in :mod:`btc_predictor.shapes.risk_results`.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from btc_predictor.shapes.common import Instant, ModelFamily


class Result(BaseModel):
    """An immutable result; unknown fields (from newer stored JSON) are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class PointMetrics(Result):
    """Point-forecast errors on the holdout (MAPE in percent, R² unitless); None: undefined
    (or not recorded by the version that stored them)."""

    rmse: float | None = None
    mae: float | None = None
    mape: float | None = None
    r2: float | None = None


class HoldoutMetrics(PointMetrics):
    """The model's holdout metrics at h=1, naive-relative where it matters."""

    # A price version's metrics never hold QLIKE, so the schema tells them from a risk one's.
    model_config = ConfigDict(json_schema_extra={"not": {"required": ["qlike"]}})

    mase: float | None = None
    directional_accuracy: float | None = None
    dm_pvalue: float | None = None


class RiskMetrics(Result):
    """A risk model's holdout metrics at h=1: range MASE and MAE (range_pct points) against
    ``naive-range`` on the same days, QLIKE of the variance forecast, the DM p-value against
    ``naive-range`` and the coverage of its range interval."""

    mase: float | None = None
    range_mae: float | None = None
    qlike: float | None  # always recorded (None: undefined): it marks risk metrics
    dm_pvalue: float | None = None
    coverage: float | None = None


def _metrics_kind(value: Any) -> str:
    """Which metrics a stored or fresh value holds: only risk metrics have QLIKE."""
    if isinstance(value, RiskMetrics) or (isinstance(value, dict) and "qlike" in value):
        return "risk"
    return "price"


# Price versions' metrics, or a risk version's: chosen by their keys (stored JSON has no tag).
AnyMetrics = Annotated[
    Annotated[HoldoutMetrics, Tag("price")] | Annotated[RiskMetrics, Tag("risk")],
    Discriminator(_metrics_kind),
]


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
    family: ModelFamily = "price"
    seed: int
    training_duration: float
    data_points_used: int
    train_start: date
    train_end: date
    data_sha256: str
    metrics: AnyMetrics
    baseline: Baseline


class TrainResult(TrainSummary):
    """``train --json``: the stored version, whether it was promoted and why.

    When one command trains both families (``train`` without ``--model``), the price model's
    summary is the top level and the risk model's, with the same keys, is ``risk``."""

    calibration: Calibration | None = None  # omitted where the version's meta holds it
    version: int
    promoted: bool
    promotion_reason: str
    risk: TrainResult | None = None


class BacktestFold(Result):
    """One walk-forward fold: its training cut-off and the origins it forecast from."""

    index: int
    train_end: date
    first_origin: date
    last_origin: date
    burn_in: bool  # no interval yet: too few out-of-sample residuals
    # Adaptive price backtests: horizons whose static bands beat the σ̂-scaled ones on the
    # days realised by the fold's start, so the fold served static bands there.
    static_horizons: list[int] = []


class VolTerciles(Result):
    """Interval coverage on the low / mid / high third of realised-volatility days."""

    low: float | None = None
    mid: float | None = None
    high: float | None = None


class VarBacktest(Result):
    """A VaR level's h=1 backtest: violation rate, Kupiec POF and Christoffersen p-values."""

    rate: float | None = None
    kupiec_p: float | None = None
    christoffersen_p: float | None = None


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
    # Interval quality (issue 16; absent from results stored before it). Winkler: in % of the
    # origin close; worst coverage over 90 consecutive origins; coverage per tercile of the
    # 30-day realised volatility through the target day.
    winkler: float | None = None
    worst_90d_coverage: float | None = None
    coverage_by_vol_tercile: VolTerciles | None = None
    # h=1 only (longer horizons overlap): VaR backtests keyed "95"/"99", p_up's scores.
    var: dict[str, VarBacktest] | None = None
    brier: float | None = None
    brier_skill: float | None = None  # 1 − Brier/0.25: against always saying 0.5
    calibration_error: float | None = None


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
    p_up: float | None = None  # P(target close > origin close); None in burn-in
    var_95: float | None = None  # loss in % of the origin close, not exceeded w.p. 0.95
    var_99: float | None = None


class BacktestReport(Result):
    """``backtest --json``: the walk-forward run, per-horizon metrics and every forecast."""

    asset: str
    model: str
    level: int
    # adaptive: σ̂-normalised conformal with an online level (σ̂ from ``risk_model`` refit in
    # each fold); static: plain split conformal (what results stored before issue 16 used).
    interval_method: Literal["adaptive", "static"] = "static"
    risk_model: str | None = None
    refit_every: int
    start: date
    end: date
    folds: int
    burn_in_folds: int
    fold_details: list[BacktestFold]
    horizons: list[BacktestHorizon]
    series: list[BacktestRow]


class ForecastPoint(Result):
    """One horizon: the point forecast, its interval at the requested level, and naive.

    ``var_95``/``var_99``: the loss of the target close vs ``last_close`` in % (positive = a
    loss) not exceeded with that probability; ``p_up`` = P(target close > last close). Both
    read the distribution the interval comes from (VaR 95 = the 90% interval's lower bound);
    ``p_up`` stays 0.5 unless the version's holdout shows skill over naive. None where that
    distribution is undefined (under 99 residuals or scores)."""

    horizon: int
    target_date: date
    value: float
    lower: float
    upper: float
    naive: float
    var_95: float | None = None
    var_99: float | None = None
    p_up: float | None = None


class Forecast(Result):
    """``predict --json`` and ``GET /api/v1/forecast``: one version's forecast from the data."""

    asset: str
    model: str
    model_version: int
    as_of: Instant  # when the newest candle closed: what the forecast knows
    last_close: float
    last_date: date
    data_age_seconds: float
    stale: bool
    level: int
    # ``adaptive`` (σ̂-normalised conformal with an online level, σ̂ from risk version
    # ``risk_model_version``) or ``static`` (plain split conformal: BTCP_INTERVALS=static, or
    # no usable risk version / too few scores, said in ``interval_note``).
    interval_method: Literal["adaptive", "static"] = "static"
    risk_model_version: int | None = None
    interval_note: str | None = None
    points: list[ForecastPoint]


class ModelVersion(Result):
    """A stored model version as listed (``models list --json``, ``GET /api/v1/models``)."""

    id: int
    asset: str
    model: str
    family: ModelFamily = "price"
    created_at: Instant
    train_start: date
    train_end: date
    data_points: int
    data_sha256: str
    seed: int
    training_duration: float
    holdout_mase: float | None
    active: bool  # the active version of its (asset, family)
    pruned: bool
    metrics: AnyMetrics | None
    baseline: Baseline | None


class Promotion(Result):
    """One activation of a version, and when it was rolled back (None: still in place)."""

    promoted_at: Instant
    reason: str
    rolled_back_at: Instant | None


class ModelVersionDetail(ModelVersion):
    """One version in full (``models show``): its stored training summary and promotions."""

    summary: dict[str, Any]  # the stored train JSON: kept as written, whatever its version
    promotions: list[Promotion]


class LedgerEntry(Result):
    """A served forecast in the ledger, scored once its target day's candle is stored."""

    asset: str
    model: str
    model_version: int
    as_of: Instant
    horizon: int
    target_date: date
    forecast: float
    lower: float
    upper: float
    level: int
    naive: float
    actual: float | None
    abs_error: float | None
    naive_abs_error: float | None
    inside: bool | None
    scored_at: Instant | None


class ScheduleView(Result):
    """One of the worker's schedules: what it does, how often, when it runs next."""

    name: str
    description: str
    every: str
    next_run_at: Instant | None
    last_run_at: Instant | None
    last_job_id: str | None


class IngestReport(BaseModel):
    """``ingest --json``: what one ingest fetched, stored, rejected and found missing.

    Filled in as the ingest goes (so not frozen): the source that served it, then counts."""

    model_config = ConfigDict(extra="ignore")
    asset: str
    source: str | None = None
    fetched: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    rejected_examples: list[str] = Field(default_factory=list)
    fixed_volume: int = 0
    gaps: list[tuple[date, date]] = Field(default_factory=list)  # missing day ranges, inclusive
    first: date | None = None
    last: date | None = None
    notes: list[str] = Field(default_factory=list)
    failed_sources: dict[str, str] = Field(default_factory=dict)  # chain sources that failed
    run_id: int | None = None


class AssetStatus(Result):
    """``data status --json`` and ``GET /api/v1/assets``: what is stored for one asset."""

    asset: str
    rows: int
    first: date | None
    last: date | None
    gaps: list[tuple[date, date]]
    sources: list[str]  # most rows first
    rows_per_source: dict[str, int]
    source_of_record: str | None
    latest_age_seconds: float | None
    stale: bool | None


class CandleView(Result):
    """One stored daily candle (``GET /api/v1/assets/{asset}/candles``)."""

    date: date
    open: float
    high: float
    low: float
    close: float
    volume: float


class JobView(Result):
    """A persisted job as the API and CLI show it (``params``/``result``: the kind's JSON)."""

    id: str
    kind: str
    status: str
    progress: float
    message: str | None
    params: dict[str, Any]
    created_at: str
    started_at: str | None
    finished_at: str | None
    result: dict[str, Any] | None
    error: str | None
