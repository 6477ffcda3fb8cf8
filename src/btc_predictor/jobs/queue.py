"""The persisted job queue's use cases: submit (validated, deduplicated), read, cancel, and the
worker's side (claim, progress, heartbeat, end, requeue, recover orphans).

Every job's state lives in the ``jobs`` table, so any process (API replicas, workers, the CLI)
can enqueue, read and cancel jobs. The SQL, the lifecycle (``queued → running → succeeded |
failed | cancelled``) and the orphan rule are in :mod:`btc_predictor.storage.job_store`; this
module checks input, shapes rows into the job JSON and counts ended jobs in
``bitcoin_lstm_jobs_total``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Engine

from btc_predictor.config import Settings
from btc_predictor.errors import InvalidInputError, JobNotFoundError
from btc_predictor.jobs.params import admit, check_kind, normalize_params
from btc_predictor.shapes.common import JOB_STATUSES
from btc_predictor.storage import job_store
from btc_predictor.storage.job_store import Job
from btc_predictor.telemetry import JOBS_TOTAL

MAX_LIST = 1000


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job a worker has just moved to running."""

    id: str
    kind: str
    params: dict[str, Any]
    worker_id: str


def dedupe_key_for(kind: str, params: dict[str, Any]) -> str | None:
    """One training per (asset, model) and one ingest per asset; backtests never collide.

    A training of the defaults (no model: risk, then price) has its own key, ``default``."""
    asset = str(params.get("asset", "")).upper()
    if kind in ("train", "retrain"):
        return f"train:{asset}:{params.get('model') or 'default'}"
    if kind == "ingest":
        return f"ingest:{asset}"
    return None


# --- enqueue and read ---------------------------------------------------------------------


def submit(
    engine: Engine,
    settings: Settings,
    *,
    kind: str,
    params: Mapping[str, Any] | BaseModel,
    now: datetime,
) -> dict[str, Any]:
    """Check ``params`` against the kind's shape, then enqueue under its dedupe key."""
    request = normalize_params(settings, kind, params)
    admit(settings, engine, request, now=now)
    # Stored as asked, plus the asset and model defaults (they name the job and its dedupe key).
    asked = request.model_fields_set | {"asset"}
    clean = request.model_dump(mode="json", include=asked, exclude_none=True)
    return enqueue(engine, kind=kind, params=clean, now=now, dedupe_key=dedupe_key_for(kind, clean))


def enqueue(
    engine: Engine,
    *,
    kind: str,
    params: dict[str, Any],
    now: datetime,
    dedupe_key: str | None = None,
) -> dict[str, Any]:
    """Queue a job; JobRunningError when a queued/running job holds the same dedupe key."""
    check_kind(kind)
    row = job_store.add_job(engine, kind=kind, params=params, now=now, dedupe_key=dedupe_key)
    return job_json(row)


def find_active(engine: Engine, dedupe_key: str) -> dict[str, Any] | None:
    """The queued or running job holding ``dedupe_key``, if any."""
    row = job_store.find_active(engine, dedupe_key)
    return job_json(row) if row is not None else None


def _job_id(job_id: str) -> str:
    """The canonical UUID text of ``job_id``; JobNotFoundError when it is not a UUID."""
    try:
        return str(uuid.UUID(str(job_id)))
    except ValueError:
        raise JobNotFoundError(f"no job `{job_id}` (job ids are UUIDs)") from None


def get_job(engine: Engine, job_id: str) -> dict[str, Any]:
    """One job's JSON; JobNotFoundError for unknown or malformed ids."""
    row = job_store.get_job(engine, _job_id(job_id))
    if row is None:
        raise JobNotFoundError(f"no job `{job_id}`")
    return job_json(row)


def list_jobs(
    engine: Engine, *, kind: str | None = None, status: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Jobs newest first, optionally of one kind and/or status."""
    if not 1 <= limit <= MAX_LIST:
        raise InvalidInputError(f"limit must be in 1..{MAX_LIST}, got {limit}")
    if kind is not None:
        kind = check_kind(kind)
    if status is not None and status not in JOB_STATUSES:
        raise InvalidInputError(
            f"unknown status `{status}` (use one of: {', '.join(JOB_STATUSES)})"
        )
    rows = job_store.list_jobs(engine, kind=kind, status=status, limit=limit)
    return [job_json(row) for row in rows]


def cancel_job(engine: Engine, job_id: str, *, now: datetime) -> dict[str, Any]:
    """Cancel a queued job, ask the worker to stop a running one; ended jobs are unchanged."""
    outcome = job_store.cancel_job(engine, _job_id(job_id), now=now)
    if outcome is None:
        raise JobNotFoundError(f"no job `{job_id}`")
    row, ended = outcome
    if ended:
        JOBS_TOTAL.labels(row.kind, "cancelled").inc()
    return job_json(row)


def job_json(row: Job) -> dict[str, Any]:
    """The API/CLI view of a job (ISO timestamps, progress 0..1)."""
    return {
        "id": row.id,
        "kind": row.kind,
        "status": row.status,
        "progress": min(max(row.progress or 0.0, 0.0), 1.0),
        "message": row.message,
        "params": row.params,
        "created_at": _iso(row.created_at),
        "started_at": _iso(row.started_at),
        "finished_at": _iso(row.finished_at),
        "result": row.result,
        "error": row.error,
    }


def _iso(value: datetime | None) -> str | None:
    """ISO-8601 timestamp or None."""
    return value.isoformat() if value is not None else None


# --- worker side --------------------------------------------------------------------------


def claim_next(engine: Engine, *, worker_id: str, now: datetime) -> ClaimedJob | None:
    """Atomically move the oldest queued job to running for ``worker_id`` (None when idle)."""
    row = job_store.claim_next(engine, worker_id=worker_id, now=now)
    return None if row is None else ClaimedJob(row.id, row.kind, dict(row.params), worker_id)


def report_progress(
    engine: Engine, job_id: str, progress: float, message: str, now: datetime
) -> bool:
    """Record progress (0..1) and a heartbeat; True when the job should stop now."""
    clamped = min(max(progress, 0.0), 1.0)
    return job_store.touch(engine, job_id, now=now, progress=clamped, message=message)


def heartbeat(engine: Engine, job_id: str, now: datetime) -> bool:
    """Record that the job's worker is alive; True when the job should stop now."""
    return job_store.touch(engine, job_id, now=now)


def finish(engine: Engine, job_id: str, result: dict[str, Any], now: datetime) -> bool:
    """Mark a running job succeeded with its result; False if it was no longer running."""
    return _end(engine, job_id, "succeeded", now, "done", result=result)


def fail(engine: Engine, job_id: str, error: str, now: datetime) -> bool:
    """Mark a running job failed with a human-readable error; False if no longer running."""
    return _end(engine, job_id, "failed", now, "failed", error=error)


def mark_cancelled(engine: Engine, job_id: str, now: datetime) -> bool:
    """Mark a running job cancelled (its worker stopped it); False if no longer running."""
    return _end(engine, job_id, "cancelled", now, "cancelled while running")


def _end(
    engine: Engine,
    job_id: str,
    status: str,
    now: datetime,
    message: str,
    *,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> bool:
    """Move a running job to an end state and count it (never a job already ended)."""
    row = job_store.end_job(
        engine, job_id, status=status, now=now, message=message, result=result, error=error
    )
    if row is None:
        return False
    JOBS_TOTAL.labels(row.kind, status).inc()
    return True


def requeue(engine: Engine, job_id: str, now: datetime, reason: str) -> bool:
    """Put a running job back in the queue (its worker is shutting down); a pending cancel wins."""
    row = job_store.requeue(engine, job_id, now=now, reason=reason)
    if row is None:
        return False
    if row.status == "cancelled":
        JOBS_TOTAL.labels(row.kind, "cancelled").inc()
    return True


def recover_orphans(
    engine: Engine,
    *,
    now: datetime,
    stale_after: timedelta,
    alive_worker_ids: Iterable[str] = (),
) -> list[str]:
    """Fail running jobs of dead workers (see :mod:`storage.job_store`); returns their ids."""
    rows = job_store.recover_orphans(
        engine, now=now, stale_after=stale_after, alive_worker_ids=alive_worker_ids
    )
    for row in rows:
        JOBS_TOTAL.labels(row.kind, "failed").inc()
    return [row.id for row in rows]


def fail_jobs_of(engine: Engine, dead: dict[str, str], *, now: datetime) -> list[str]:
    """Fail at once the running jobs of workers known dead (id -> why); returns their ids."""
    rows = job_store.fail_jobs_of(engine, dead, now=now)
    for row in rows:
        JOBS_TOTAL.labels(row.kind, "failed").inc()
    return [row.id for row in rows]
