"""Jobs: ingest, train, retrain and backtest runs, persisted so any process can answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from btc_predictor.api import schemas as s
from btc_predictor.api.deps import Authorized, EngineDep, NowDep
from btc_predictor.jobs import queue
from btc_predictor.shapes.common import JobStatus
from btc_predictor.shapes.jobs import JobKind
from btc_predictor.shapes.results import JobView

router = APIRouter(prefix="/jobs", tags=["jobs"])
JobId = Annotated[str, Path(min_length=1, max_length=64)]


@router.get("", response_model=list[JobView])
def list_jobs(
    engine: EngineDep,
    kind: JobKind | None = None,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Jobs newest first, optionally by kind and status."""
    return queue.list_jobs(engine, kind=kind, status=status, limit=limit)


@router.get("/{job_id}", response_model=JobView, responses=s.errors_for(404))
def get_job(engine: EngineDep, job_id: JobId) -> dict[str, Any]:
    """One job: status, progress, timestamps, result or error."""
    return queue.get_job(engine, job_id)


@router.delete(
    "/{job_id}",
    response_model=JobView,
    dependencies=[Authorized],
    responses=s.errors_for(401, 404),
)
def cancel_job(engine: EngineDep, now: NowDep, job_id: JobId) -> dict[str, Any]:
    """Cancel a queued job, or ask a running one to stop."""
    return queue.cancel_job(engine, job_id, now=now)
