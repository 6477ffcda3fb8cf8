"""Response models: the API's documented answers (requests are ``shapes.requests``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

# Request bodies and query models are the shapes in btc_predictor.shapes.requests.


class ErrorResponse(BaseModel):
    """Every error, as an RFC 9457 problem (``application/problem+json``); 422 adds ``errors``.

    ``detail``, ``code`` and ``errors`` are the members clients read before the problem shape.
    """

    type: str = Field(description="`/problems/<code>`", examples=["/problems/invalid_parameter"])
    title: str = Field(description="the code in words, the same for every occurrence")
    status: int = Field(description="the HTTP status")
    detail: str = Field(description="what went wrong this time, and what to do")
    instance: str = Field(description="the request path")
    code: str = Field(description="the machine-readable code (DESIGN §7's table)")
    request_id: str = Field(description="the X-Request-ID of the request (logs carry it too)")
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="422 only: one entry per invalid parameter"
    )


PROBLEM_JSON = "application/problem+json"
_PROBLEM = {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}

ERRORS: dict[int | str, dict[str, Any]] = {
    # "model" registers the schema (FastAPI lists it under application/json too).
    s: {"model": ErrorResponse, "description": d, "content": {PROBLEM_JSON: _PROBLEM}}
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


class HealthReason(BaseModel):
    component: str
    asset: str | None
    detail: str


class HealthResponse(BaseModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    timestamp: str
    version: str
    model_ready: bool
    reasons: list[HealthReason]
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
