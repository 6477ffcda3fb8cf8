"""Health and telemetry: ``/health/live``, ``/health/ready``, ``/health``, ``/metrics`` and the
original's ``/monitoring``."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import psutil
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine

from btc_predictor import __version__, telemetry
from btc_predictor.api import schemas as s
from btc_predictor.api.deps import EngineDep, NowDep, SettingsDep
from btc_predictor.config import Settings
from btc_predictor.errors import UnavailableError
from btc_predictor.services import health as rule
from btc_predictor.services import versions
from btc_predictor.services.workers import worker_component, worker_reason
from btc_predictor.shapes.common import DEFAULT_ASSET
from btc_predictor.storage.db import HEALTH_SECONDS, is_at_head

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
async def ready(request: Request, response: Response) -> dict[str, Any]:
    """Database reachable within 2 s and migrated to head (a fresh install with no model is
    ready)."""
    try:
        at_head = await _probe(request, is_at_head)
        reachable = True
    except Exception as exc:  # any failure to answer means not ready
        request.app.state.probe_outage.failed(exc)
        at_head = reachable = False
    else:
        request.app.state.probe_outage.ended()
    if not (reachable and at_head):
        response.status_code = 503
    return {
        "status": "ready" if at_head else "not ready",
        "database": reachable,
        "migrations_at_head": at_head,
    }


@router.get(
    "/health",
    response_model=s.HealthResponse,
    responses={503: {"model": s.HealthResponse, "description": "the database did not answer"}},
)
async def health(
    request: Request, response: Response, settings: SettingsDep, now: NowDep
) -> dict[str, Any]:
    """Overall health, by the one rule of DESIGN §7: ``unhealthy`` (503) only when the
    database does not answer within 2 s; ``degraded`` with every reason; else ``healthy``."""
    components = await _components(request, settings, now)
    answers = components["database"].view["status"] != "unreachable"
    status, reasons = rule.verdict(answers, components)
    if not answers:
        response.status_code = 503
    return {
        "status": status,
        "timestamp": now.isoformat(),
        "version": __version__,
        "model_ready": answers and not components["model_store"].reasons,
        "reasons": [asdict(reason) for reason in reasons],
        "components": {name: component.view for name, component in components.items()},
        "system": {
            "pid": os.getpid(),
            "cpu_percent": _PROCESS.cpu_percent(None),
            "memory_mb": round(_PROCESS.memory_info().rss / 2**20, 1),
            "cpu_count": os.cpu_count(),
        },
    }


async def _components(
    request: Request, settings: Settings, now: datetime
) -> dict[str, rule.Component]:
    """Every component's view and reasons (each adds its own; none raises)."""
    state = request.app.state
    # Side by side: the answer never waits for one probe after the other.
    record, worker = await asyncio.gather(
        _read_database(request, settings),
        anyio.to_thread.run_sync(_worker, request, limiter=_limiter(request)),
    )
    if record is None:
        unknown = rule.Component({"status": "unknown"})
        return {
            "database": rule.database_component(None),
            "model_store": unknown,
            "worker": worker,
            "data": unknown,
        }
    return {
        "database": rule.database_component(record),
        "model_store": rule.model_component(record, state.serving.load_error),
        "worker": worker,
        "data": rule.data_component(settings, record, now),
    }


async def _read_database(request: Request, settings: Settings) -> rule.DatabaseRecord | None:
    """What /health needs from the database (None: it did not answer within 2 s)."""
    outage = request.app.state.probe_outage
    try:
        record = await _probe(request, functools.partial(rule.read_database, settings))
    except Exception as exc:  # details (they name the host) go to the log, not the answer
        outage.failed(exc)
        return None
    outage.ended()
    return record


T = TypeVar("T")
# The outer bound on a probe: the probe engine gives up at 2 s itself (connect timeout and
# the deadline watchdog); this only guards what neither covers, such as a hung name lookup.
PROBE_WAIT = HEALTH_SECONDS + 0.3


async def _probe(request: Request, work: Callable[[Engine], T]) -> T:
    """``work(health engine)`` in a thread of the probes' own (request threads may all be
    stuck on the database), answered within ``PROBE_WAIT`` seconds whatever happens."""
    engine = request.app.state.health_engine
    with anyio.move_on_after(PROBE_WAIT):
        return await anyio.to_thread.run_sync(
            work, engine, abandon_on_cancel=True, limiter=_limiter(request)
        )
    raise UnavailableError(rule.UNREACHABLE)


def _limiter(request: Request) -> anyio.CapacityLimiter:
    """The probes' thread limit (made inside the event loop, on first use)."""
    state = request.app.state
    limiter: anyio.CapacityLimiter | None = getattr(state, "probe_limiter", None)
    if limiter is None:
        limiter = state.probe_limiter = anyio.CapacityLimiter(4)
    return limiter


def _worker(request: Request) -> rule.Component:
    """Whether a job worker is alive (DESIGN §7), never by probing the worker port (any
    process may hold it): the embedded worker as ``serve`` supervises it, else the workers'
    heartbeat rows, read over the probe engine (its 2 s deadline)."""
    state = request.app.state
    settings = state.settings
    try:
        view = worker_component(settings, state.health_engine, state.clock())
    except Exception:  # the database's own reason says why
        return rule.Component({"status": "unknown"})
    reason = worker_reason(view, settings)
    return rule.Component(view, (rule.Reason("worker", None, reason),) if reason else ())


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
