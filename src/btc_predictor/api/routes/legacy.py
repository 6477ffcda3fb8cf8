"""The original API's paths and fields (extra fields added), plus health and metrics."""

from __future__ import annotations

import asyncio
import functools
import os
import urllib.request
from datetime import datetime, timedelta
from typing import Annotated, Any

import psutil
from fastapi import APIRouter, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from btc_predictor import __version__, jobs, telemetry
from btc_predictor import model_store as store
from btc_predictor.api import schemas as s
from btc_predictor.api.deps import Authorized, EngineDep, NowDep, SettingsDep
from btc_predictor.api.hot import legacy_prediction, serve_forecast
from btc_predictor.monitoring import LIVE_DAYS, summarize
from btc_predictor.services.forecast import ForecastRequest
from btc_predictor.services.ledger import live_window
from btc_predictor.sources.base import parse_asset
from btc_predictor.storage.db import is_at_head, read_session

router = APIRouter(tags=["original API"])
AssetQuery = Annotated[str, Query(pattern=s.ASSET_PATTERN, description="BASE-QUOTE")]
_PROCESS = psutil.Process(os.getpid())


def _active(engine: Any, asset: str) -> Any:
    """The active version row of ``asset`` or None."""
    with read_session(engine) as session:
        active = store.active_version_id(session=session, asset=asset)
        return None if active is None else store.get_version(session=session, version_id=active)


@router.get("/", response_model=s.RootResponse)
def root(engine: EngineDep, now: NowDep) -> dict[str, Any]:
    """Service banner with the default asset's model status."""
    row = _active(engine, "BTC-USD")
    return {
        "message": "btc-predictor: honest crypto price forecasts (see /docs and /ui)",
        "status": "running",
        "version": __version__,
        "timestamp": now.isoformat(),
        "model_status": f"{row.model} v{row.id} active" if row else "no model trained",
    }


@router.get("/health/live", response_model=s.LiveResponse, tags=["health"])
async def live() -> dict[str, str]:
    """The process answers."""
    return {"status": "alive"}


@router.get(
    "/health/ready",
    response_model=s.ReadyResponse,
    tags=["health"],
    responses={503: {"model": s.ReadyResponse}},
)
def ready(engine: EngineDep, response: Response) -> dict[str, Any]:
    """Database reachable and migrated to head (a fresh install with no model is ready)."""
    try:
        at_head = is_at_head(engine)
        reachable = True
    except Exception:  # any driver error means not ready
        at_head = reachable = False
    if not (reachable and at_head):
        response.status_code = 503
    return {
        "status": "ready" if at_head else "not ready",
        "database": reachable,
        "migrations_at_head": at_head,
    }


@router.get("/health", response_model=s.HealthResponse, tags=["health"])
def health(
    request: Request, settings: SettingsDep, engine: EngineDep, now: NowDep
) -> dict[str, Any]:
    """Overall health: database, model store, worker, data freshness."""
    components = _components(request, settings, engine, now)
    ready_ok = components["database"]["status"] == "ok"
    model_ready = components["model_store"]["status"] == "ok"
    status = "healthy" if ready_ok and model_ready else ("degraded" if ready_ok else "unhealthy")
    return {
        "status": status,
        "timestamp": now.isoformat(),
        "version": __version__,
        "model_ready": model_ready,
        "components": components,
        "system": {
            "pid": os.getpid(),
            "cpu_percent": _PROCESS.cpu_percent(None),
            "memory_mb": round(_PROCESS.memory_info().rss / 2**20, 1),
            "cpu_count": os.cpu_count(),
        },
    }


def _components(request: Request, settings: Any, engine: Any, now: datetime) -> dict[str, Any]:
    """Per-component status for /health."""
    try:
        database = {"status": "ok" if is_at_head(engine) else "migrations pending"}
        states = request.app.state.serving.read_states()
    except Exception as exc:  # report, never raise, from a health check
        return {
            "database": {"status": "unreachable", "error": str(exc).splitlines()[0]},
            "model_store": {"status": "unknown"},
            "worker": _worker(request),
            "data": {"status": "unknown"},
        }
    models = {a: states[a].active_version for a in settings.assets if a in states}
    data = {
        a: _freshness(states[a].last_candle if a in states else None, settings, now)
        for a in settings.assets
    }
    return {
        "database": database,
        "model_store": {
            "status": "ok" if any(models.values()) else "no active model",
            "active_versions": models,
        },
        "worker": _worker(request),
        "data": data,
    }


def _freshness(last: datetime | None, settings: Any, now: datetime) -> dict[str, Any]:
    """Age of the newest candle of one asset."""
    if last is None:
        return {"status": "no data"}
    age = max((now - (last + timedelta(days=1))).total_seconds(), 0.0)
    stale = age > settings.max_data_age.total_seconds()
    return {
        "status": "stale" if stale else "ok",
        "last_date": last.date().isoformat(),
        "age_seconds": age,
    }


def _worker(request: Request) -> dict[str, Any]:
    """The job worker: probed on its /health/live when this server embeds it."""
    settings = request.app.state.settings
    if not settings.embedded_worker:
        return {"status": "external"}
    url = f"http://127.0.0.1:{settings.worker_port}/health/live"
    try:
        with urllib.request.urlopen(url, timeout=0.5) as answer:
            return {"status": "ok" if answer.status == 200 else f"http {answer.status}"}
    except OSError as exc:
        return {"status": "unreachable", "error": str(exc)[:200]}


@router.post(
    "/train",
    response_model=s.LegacyTrainResponse,
    dependencies=[Authorized],
    responses=s.errors_for(401, 404, 409),
)
async def train(
    settings: SettingsDep,
    engine: EngineDep,
    now: NowDep,
    asset: AssetQuery = "BTC-USD",
    model: s.ModelName | None = None,
    epochs: Annotated[int | None, Query(ge=1, le=10_000)] = None,
) -> dict[str, Any]:
    """Train (promote auto) and answer when the job ends, as the original did."""
    params = {"asset": asset, "model": model, "epochs": epochs, "promote": "auto"}
    job = await run_in_threadpool(
        functools.partial(jobs.submit, engine, settings, kind="train", params=params, now=now)
    )
    while job["status"] in ("queued", "running"):
        await asyncio.sleep(0.25)
        job = await run_in_threadpool(jobs.get_job, engine, job["id"])
    return _legacy_train(job)


def _legacy_train(job: dict[str, Any]) -> dict[str, Any]:
    """The original's training response from a finished job."""
    result = job["result"] or {}
    metrics = result.get("metrics", {})
    ok = job["status"] == "succeeded"
    return {
        "message": "model trained"
        if ok
        else f"training {job['status']}: {job['error'] or ''}".strip(),
        "rmse": metrics.get("rmse"),
        "mae": metrics.get("mae"),
        "r2": metrics.get("r2"),
        "mase": metrics.get("mase"),
        "model_saved": ok,
        "model_version": result.get("version"),
        "promoted": bool(result.get("promoted")),
        "promotion_reason": result.get("promotion_reason", job["error"] or ""),
        "training_duration": result.get("training_duration"),
        "job_id": job["id"],
    }


@router.get("/predict", response_model=s.LegacyPredictResponse, responses=s.errors_for(404, 409))
async def predict(
    request: Request,
    now: NowDep,
    asset: AssetQuery = "BTC-USD",
    level: Annotated[int, Query(ge=50, le=99)] = 90,
) -> dict[str, Any]:
    """Next-day forecast with its interval (served from memory once computed)."""
    query = ForecastRequest(parse_asset(asset).symbol, 1, level)
    return legacy_prediction(await serve_forecast(request, query, now), now)


@router.get("/evaluate", response_model=s.EvaluateResponse, responses=s.errors_for(404))
def evaluate(engine: EngineDep, now: NowDep, asset: AssetQuery = "BTC-USD") -> dict[str, Any]:
    """Holdout metrics of the active model next to naive, and live interval coverage."""
    symbol = parse_asset(asset).symbol
    row = _active(engine, symbol)
    if row is None:
        return {
            "model_exists": False,
            **dict.fromkeys(
                (
                    "training_date",
                    "rmse",
                    "mae",
                    "r2",
                    "training_duration",
                    "data_points_used",
                    "mase",
                    "naive_mae",
                    "directional_accuracy",
                    "coverage",
                )
            ),
        }
    metrics, naive = (
        row.summary.get("metrics", {}),
        row.summary.get("baseline", {}).get("naive", {}),
    )
    live = summarize(live_window(engine, asset=symbol, end=now.date(), days=LIVE_DAYS)).get(1)
    return {
        "model_exists": True,
        "training_date": row.created_at.isoformat(),
        "rmse": metrics.get("rmse"),
        "mae": metrics.get("mae"),
        "r2": metrics.get("r2"),
        "training_duration": row.training_duration,
        "data_points_used": row.data_points,
        "mase": metrics.get("mase"),
        "naive_mae": naive.get("mae"),
        "directional_accuracy": metrics.get("directional_accuracy"),
        "coverage": live.coverage if live else None,
    }


@router.get("/model-info", response_model=s.ModelInfoResponse, responses=s.errors_for(404))
def model_info(engine: EngineDep, asset: AssetQuery = "BTC-USD") -> dict[str, Any]:
    """Which stored artifacts serve the asset (paths name them in the model store)."""
    row = _active(engine, parse_asset(asset).symbol)
    if row is None:
        return {
            "model_exists": False,
            "scaler_exists": False,
            "model_path": None,
            "scaler_path": None,
            "status": "no model trained",
            "model_version": None,
            "model": None,
            "trained_at": None,
            "train_start": None,
            "train_end": None,
        }
    base = f"db://model_versions/{row.id}"
    return {
        "model_exists": True,
        "scaler_exists": True,
        "model_path": f"{base}/model.onnx",
        "scaler_path": f"{base}/meta.json",
        "status": "active",
        "model_version": row.id,
        "model": row.model,
        "trained_at": row.created_at.isoformat(),
        "train_start": row.train_start.isoformat(),
        "train_end": row.train_end.isoformat(),
    }


@router.get("/monitoring", response_model=s.MonitoringResponse)
def monitoring(settings: SettingsDep, engine: EngineDep, now: NowDep) -> dict[str, Any]:
    """The service's CPU, memory and request figures (all its processes, from its metrics)."""
    sums = telemetry.totals(telemetry.scrape_registry(settings.metrics_dir))
    requests = sums.get("bitcoin_lstm_request_duration_seconds_count", 0.0)
    seconds = sums.get("bitcoin_lstm_request_duration_seconds_sum", 0.0)
    row = _active(engine, "BTC-USD")
    return {
        "timestamp": now.isoformat(),
        "cpu_usage_percent": sums.get("bitcoin_lstm_cpu_usage_percent", 0.0),
        "memory_usage_mb": round(sums.get("bitcoin_lstm_memory_usage_bytes", 0.0) / 2**20, 2),
        "total_requests": int(requests),
        "total_predictions": int(sums.get("bitcoin_lstm_predictions_total", 0.0)),
        "average_response_time_ms": 1000 * seconds / requests if requests else 0.0,
        "model_status": f"{row.model} v{row.id} active" if row else "no model trained",
    }


@router.get("/metrics", response_class=Response, tags=["health"])
def metrics(request: Request) -> Response:
    """Prometheus exposition: every process of this server, plus forecast health."""
    state = request.app.state
    registry = telemetry.scrape_registry(state.settings.metrics_dir, state.health)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
