"""Health and telemetry: ``/health/live``, ``/health/ready``, ``/health``, ``/metrics`` and the
original's ``/monitoring``."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import psutil
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from btc_predictor import __version__, telemetry
from btc_predictor.api import schemas as s
from btc_predictor.api.deps import EngineDep, NowDep, SettingsDep
from btc_predictor.services import versions
from btc_predictor.services.workers import worker_component, worker_reason
from btc_predictor.shapes.common import DEFAULT_ASSET
from btc_predictor.sources.base import data_age
from btc_predictor.storage.db import is_at_head

router = APIRouter(tags=["health"])
_PROCESS = psutil.Process(os.getpid())


@router.get("/health/live", response_model=s.LiveResponse)
async def live() -> dict[str, str]:
    """The process answers."""
    return {"status": "alive"}


@router.get(
    "/health/ready",
    response_model=s.ReadyResponse,
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


@router.get("/health", response_model=s.HealthResponse)
def health(
    request: Request, settings: SettingsDep, engine: EngineDep, now: NowDep
) -> dict[str, Any]:
    """Overall health: database, model store, worker, data freshness."""
    components = _components(request, settings, engine, now)
    ready_ok = components["database"]["status"] == "ok"
    model_ready = components["model_store"]["status"] == "ok"
    worker_ok = components["worker"]["status"] == "ok"  # DESIGN §7: no worker alive degrades
    healthy = ready_ok and model_ready and worker_ok
    status = "healthy" if healthy else ("degraded" if ready_ok else "unhealthy")
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
            "worker": _worker(settings, None, now),  # the database is down: no heartbeats
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
        "worker": _worker(settings, engine, now),
        "data": data,
    }


def _freshness(last: datetime | None, settings: Any, now: datetime) -> dict[str, Any]:
    """Age of the newest candle of one asset."""
    if last is None:
        return {"status": "no data"}
    age = data_age(last, now)
    stale = settings.is_stale(age)
    return {
        "status": "stale" if stale else "ok",
        "last_date": last.date().isoformat(),
        "age_seconds": age,
    }


def _worker(settings: Any, engine: Any, now: datetime) -> dict[str, Any]:
    """Whether a job worker is alive (never by probing its port: any process may hold it)."""
    try:
        component = worker_component(settings, engine, now)
    except Exception:  # report, never raise, from a health check
        return {"status": "unknown"}
    reason = worker_reason(component, settings)
    return {**component, "detail": reason} if reason else component


@router.get("/monitoring", response_model=s.MonitoringResponse)
def monitoring(settings: SettingsDep, engine: EngineDep, now: NowDep) -> dict[str, Any]:
    """The service's CPU, memory and request figures (all its processes, from its metrics)."""
    sums = telemetry.totals(telemetry.scrape_registry(settings.metrics_dir))
    requests = sums.get("bitcoin_lstm_request_duration_seconds_count", 0.0)
    seconds = sums.get("bitcoin_lstm_request_duration_seconds_sum", 0.0)
    row = versions.active_version(engine, DEFAULT_ASSET)
    return {
        "timestamp": now.isoformat(),
        "cpu_usage_percent": sums.get("bitcoin_lstm_cpu_usage_percent", 0.0),
        "memory_usage_mb": round(sums.get("bitcoin_lstm_memory_usage_bytes", 0.0) / 2**20, 2),
        "total_requests": int(requests),
        "total_predictions": int(sums.get("bitcoin_lstm_predictions_total", 0.0)),
        "average_response_time_ms": 1000 * seconds / requests if requests else 0.0,
        "model_status": f"{row.model} v{row.id} active" if row else "no model trained",
    }


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus exposition: every process of this server, plus forecast health."""
    state = request.app.state
    registry = telemetry.scrape_registry(state.settings.metrics_dir, state.health)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
