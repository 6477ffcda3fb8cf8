"""Request and response models: the API's documented shapes."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ASSET_PATTERN = r"^[A-Za-z0-9]{2,12}[-/][A-Za-z0-9]{2,6}$"
# The registry's names (a test keeps them equal), so OpenAPI lists the valid models.
ModelName = Literal["naive", "drift", "seed-lstm", "lstm", "gru", "transformer", "ensemble"]


class ErrorResponse(BaseModel):
    """Every error: a human message and a machine code (422 adds ``errors``)."""

    detail: str
    code: str
    errors: list[dict[str, Any]] | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse, "description": d}
    for s, d in {
        401: "missing or wrong API key",
        404: "unknown asset, model or job",
        409: "state prevents it (no_data, no_model, job_running, horizon_exceeds_model)",
        413: "request body too large",
        422: "invalid parameter",
        503: "database or model store unavailable",
    }.items()
}


def errors_for(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The documented error responses of an operation."""
    return {s: ERRORS[s] for s in (*statuses, 422, 503)}


class RootResponse(BaseModel):
    message: str
    status: str
    version: str
    timestamp: str
    model_status: str


class HealthResponse(BaseModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    timestamp: str
    version: str
    model_ready: bool
    system: dict[str, Any]
    components: dict[str, Any]


class LiveResponse(BaseModel):
    status: str


class ReadyResponse(BaseModel):
    status: str
    database: bool
    migrations_at_head: bool


class LegacyTrainResponse(BaseModel):
    message: str
    rmse: float | None
    mae: float | None
    r2: float | None
    model_saved: bool
    mase: float | None
    model_version: int | None
    promoted: bool
    promotion_reason: str
    training_duration: float | None
    job_id: str


class LegacyPredictResponse(BaseModel):
    current_date: str
    next_day_prediction: float
    last_known_price: float
    asset: str
    last_known_date: str
    target_date: str
    model_version: int
    lower: float
    upper: float
    level: int
    data_age_seconds: float
    stale: bool


class EvaluateResponse(BaseModel):
    model_exists: bool
    training_date: str | None
    rmse: float | None
    mae: float | None
    r2: float | None
    training_duration: float | None
    data_points_used: int | None
    mase: float | None
    naive_mae: float | None
    directional_accuracy: float | None
    coverage: float | None


class ModelInfoResponse(BaseModel):
    model_exists: bool
    scaler_exists: bool
    model_path: str | None
    scaler_path: str | None
    status: str
    model_version: int | None
    model: str | None
    trained_at: str | None
    train_start: str | None
    train_end: str | None


class MonitoringResponse(BaseModel):
    timestamp: str
    cpu_usage_percent: float
    memory_usage_mb: float
    total_requests: int
    total_predictions: int
    average_response_time_ms: float
    model_status: str


class ForecastPoint(BaseModel):
    horizon: int
    target_date: str
    value: float
    lower: float
    upper: float
    naive: float


class ForecastResponse(BaseModel):
    asset: str
    model: str
    model_version: int
    as_of: str
    last_close: float
    last_date: str
    data_age_seconds: float
    stale: bool
    level: int
    points: list[ForecastPoint]


class AssetResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    asset: str
    rows: int
    first: str | None
    last: str | None
    gaps: list[list[str]]
    sources: list[str]
    latest_age_seconds: float | None


class CandleOut(BaseModel):
    date: str
    open: float
    high: float
    low: float
    close: float
    volume: float


class JobResponse(BaseModel):
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


class ModelVersionResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    asset: str
    model: str
    created_at: str
    train_start: str
    train_end: str
    holdout_mase: float | None
    active: bool
    pruned: bool


class PredictionEntry(BaseModel):
    model_config = ConfigDict(extra="allow")
    asset: str
    model_version: int
    as_of: str
    horizon: int
    target_date: str
    forecast: float
    lower: float
    upper: float
    naive: float
    actual: float | None
    inside: bool | None


class ScheduleResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    next_run_at: str | None
    last_run_at: str | None


class RefreshRequest(BaseModel):
    """``POST /assets/{asset}/refresh``: mirrors ``ingest`` flags (online sources only)."""

    model_config = ConfigDict(extra="forbid")
    # The online source kinds (a CSV path cannot come over HTTP); exchange ids are ccxt's.
    source: str | None = Field(default=None, pattern=r"^(yahoo|exchange:[a-z0-9_]{2,32})$")
    since: date | None = None
    force: bool = False


class TrainRequestBody(BaseModel):
    """``POST /api/v1/train``: mirrors ``train`` flags."""

    model_config = ConfigDict(extra="forbid")
    asset: str = Field(default="BTC-USD", pattern=ASSET_PATTERN)
    model: ModelName | None = None
    start: date | None = None
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    epochs: int | None = Field(default=None, ge=1, le=10_000)
    promote: Literal["auto", "always", "never"] = "auto"


class BacktestRequestBody(BaseModel):
    """``POST /api/v1/backtests``: mirrors ``backtest`` flags."""

    model_config = ConfigDict(extra="forbid")
    asset: str = Field(default="BTC-USD", pattern=ASSET_PATTERN)
    model: ModelName | None = None
    days: int | None = Field(default=None, ge=1, le=20_000)
    start: date | None = None
    refit_every: int = Field(default=30, ge=1, le=3650)
    horizon: int = Field(default=7, ge=1, le=365)
    level: int = Field(default=90, ge=50, le=99)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    epochs: int | None = Field(default=None, ge=1, le=10_000)
