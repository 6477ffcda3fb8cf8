"""The persisted job queue: every job's state lives in the ``jobs`` table, so any process
(API replicas, workers, the CLI) can enqueue, read and cancel jobs.

Lifecycle: ``queued → running → succeeded | failed | cancelled``. A queued job is cancelled at
once; a running one cooperatively: ``cancel_requested`` is set and the worker stops at its next
progress report or heartbeat.

Orphans: while a job runs, its worker writes ``heartbeat_at`` every ``job_stale_after / 4``
(a heartbeat thread, independent of progress reports). A running job whose heartbeat is older
than ``job_stale_after``, and whose worker is not one the caller knows to be alive, belongs to
a dead worker: :func:`recover_orphans` fails it with the reason. Every worker calls it when it
starts and then every ``job_stale_after / 2``, so a job never stays running after its worker
died (it is failed at most about ``1.5 × job_stale_after`` later). A worker frozen for that long
loses its job too; its next report sees the job is no longer running and it stops.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Engine, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from btc_predictor.config import Settings
from btc_predictor.errors import InvalidInputError, JobNotFoundError, JobRunningError
from btc_predictor.jobs.params import check_kind, normalize_params
from btc_predictor.shapes.common import JOB_STATUSES
from btc_predictor.storage.db import read_session, write_session
from btc_predictor.storage.tables import JobRow
from btc_predictor.telemetry import JOBS_TOTAL

MAX_LIST = 1000
_ENQUEUE_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job a worker has just moved to running."""

    id: str
    kind: str
    params: dict[str, Any]
    worker_id: str


def dedupe_key_for(kind: str, params: dict[str, Any]) -> str | None:
    """One training per (asset, model) and one ingest per asset; backtests never collide."""
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
    for _ in range(_ENQUEUE_ATTEMPTS):
        row = _new_row(kind, params, now, dedupe_key)
        try:
            with write_session(engine) as session:
                session.add(row)
        except IntegrityError:
            # The partial unique index is the arbiter (a pre-check would race between replicas).
            holder = find_active(engine, dedupe_key) if dedupe_key else None
            if holder is not None:
                raise _running_error(holder, dedupe_key) from None
            continue  # the holder ended between our insert and the lookup
        return job_json(row)
    raise JobRunningError(f"jobs keep taking `{dedupe_key}`; try again in a moment")


def _new_row(kind: str, params: dict[str, Any], now: datetime, key: str | None) -> JobRow:
    """A fresh queued row (every column set, so it reads fine after its session closed)."""
    return JobRow(
        id=str(uuid.uuid4()),
        kind=kind,
        status="queued",
        params=dict(params),
        dedupe_key=key,
        progress=0.0,
        message="queued",
        result=None,
        error=None,
        created_at=now,
        started_at=None,
        finished_at=None,
        heartbeat_at=None,
        worker_id=None,
        cancel_requested=False,
    )


def _running_error(holder: dict[str, Any], key: str | None) -> JobRunningError:
    """The conflict message naming the job that holds ``key``."""
    return JobRunningError(
        f"{holder['kind']} job {holder['id']} is already {holder['status']} for `{key}`; "
        "wait for it to finish or cancel it"
    )


def find_active(engine: Engine, dedupe_key: str) -> dict[str, Any] | None:
    """The queued or running job holding ``dedupe_key``, if any."""
    query = select(JobRow).where(
        JobRow.dedupe_key == dedupe_key, JobRow.status.in_(("queued", "running"))
    )
    with read_session(engine) as session:
        row = session.scalars(query).first()
        return job_json(row) if row is not None else None


def _job_id(job_id: str) -> str:
    """The canonical UUID text of ``job_id``; JobNotFoundError when it is not a UUID."""
    try:
        return str(uuid.UUID(str(job_id)))
    except ValueError:
        raise JobNotFoundError(f"no job `{job_id}` (job ids are UUIDs)") from None


def _load(session: Session, job_id: str, *, lock: bool = False) -> JobRow:
    """The job row, locked for update when asked; JobNotFoundError when unknown."""
    row = session.get(JobRow, _job_id(job_id), with_for_update=lock)
    if row is None:
        raise JobNotFoundError(f"no job `{job_id}`")
    return row


def get_job(engine: Engine, job_id: str) -> dict[str, Any]:
    """One job's JSON; JobNotFoundError for unknown or malformed ids."""
    with read_session(engine) as session:
        return job_json(_load(session, job_id))


def list_jobs(
    engine: Engine, *, kind: str | None = None, status: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Jobs newest first, optionally of one kind and/or status."""
    if not 1 <= limit <= MAX_LIST:
        raise InvalidInputError(f"limit must be in 1..{MAX_LIST}, got {limit}")
    query = select(JobRow).order_by(JobRow.created_at.desc(), JobRow.id.desc()).limit(limit)
    if kind is not None:
        query = query.where(JobRow.kind == check_kind(kind))
    if status is not None:
        if status not in JOB_STATUSES:
            raise InvalidInputError(
                f"unknown status `{status}` (use one of: {', '.join(JOB_STATUSES)})"
            )
        query = query.where(JobRow.status == status)
    with read_session(engine) as session:
        return [job_json(row) for row in session.scalars(query)]


def cancel_job(engine: Engine, job_id: str, *, now: datetime) -> dict[str, Any]:
    """Cancel a queued job, ask the worker to stop a running one; ended jobs are unchanged."""
    with write_session(engine) as session:
        row = _load(session, job_id, lock=True)
        ended = row.status == "queued"
        if ended:
            _close(row, "cancelled", now, "cancelled before it started")
        elif row.status == "running" and not row.cancel_requested:
            row.cancel_requested, row.message = True, "cancellation requested"
        job = job_json(row)
    if ended:
        JOBS_TOTAL.labels(job["kind"], "cancelled").inc()
    return job


def job_json(row: JobRow) -> dict[str, Any]:
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
    # PostgreSQL: rivals skip the row we lock. SQLite: the IMMEDIATE transaction serialises
    # claimers (SKIP LOCKED renders as nothing there).
    query = (
        select(JobRow)
        .where(JobRow.status == "queued")
        .order_by(JobRow.created_at, JobRow.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    with read_session(engine) as session:
        # An idle worker polls: only take the write lock when something is queued.
        if session.scalars(select(JobRow.id).where(JobRow.status == "queued")).first() is None:
            return None
    with write_session(engine) as session:
        row = session.scalars(query).first()
        if row is None:
            return None
        row.status, row.worker_id, row.message = "running", worker_id, "started"
        row.started_at = row.heartbeat_at = now
        return ClaimedJob(row.id, row.kind, dict(row.params), worker_id)


def report_progress(
    engine: Engine, job_id: str, progress: float, message: str, now: datetime
) -> bool:
    """Record progress (0..1) and a heartbeat; True when the job should stop now."""
    return _touch(engine, job_id, now, min(max(progress, 0.0), 1.0), message)


def heartbeat(engine: Engine, job_id: str, now: datetime) -> bool:
    """Record that the job's worker is alive; True when the job should stop now."""
    return _touch(engine, job_id, now, None, None)


def _touch(
    engine: Engine, job_id: str, now: datetime, progress: float | None, message: str | None
) -> bool:
    """Update a running job; stop (True) when cancelled or no longer running (recovered)."""
    with write_session(engine) as session:
        row = session.get(JobRow, job_id, with_for_update=True)
        if row is None or row.status != "running":
            return True
        row.heartbeat_at = now
        if progress is not None:
            row.progress = progress
        if message is not None:
            row.message = message
        return row.cancel_requested


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
    """Move a running job to an end state (never a job already ended or recovered)."""
    with write_session(engine) as session:
        row = session.get(JobRow, job_id, with_for_update=True)
        if row is None or row.status != "running":
            return False
        _close(row, status, now, message)
        row.result, row.error = result, error
        if status == "succeeded":
            row.progress = 1.0
        kind = row.kind
    JOBS_TOTAL.labels(kind, status).inc()
    return True


def _close(row: JobRow, status: str, now: datetime, message: str) -> None:
    """Set the end-state columns."""
    row.status, row.finished_at, row.message = status, now, message


def requeue(engine: Engine, job_id: str, now: datetime, reason: str) -> bool:
    """Put a running job back in the queue (its worker is shutting down); a pending cancel wins."""
    with write_session(engine) as session:
        row = session.get(JobRow, job_id, with_for_update=True)
        if row is None or row.status != "running":
            return False
        if row.cancel_requested:
            _close(row, "cancelled", now, "cancelled while running")
        else:
            row.status, row.message, row.progress = "queued", reason, 0.0
            row.started_at = row.heartbeat_at = row.worker_id = None
        ended, kind = row.status == "cancelled", row.kind
    if ended:
        JOBS_TOTAL.labels(kind, "cancelled").inc()
    return True


def recover_orphans(
    engine: Engine,
    *,
    now: datetime,
    stale_after: timedelta,
    alive_worker_ids: Iterable[str] = (),
) -> list[str]:
    """Fail running jobs of dead workers (see the module docstring); returns their ids."""
    query = select(JobRow).where(
        JobRow.status == "running",
        or_(JobRow.heartbeat_at.is_(None), JobRow.heartbeat_at < now - stale_after),
    )
    alive = list(alive_worker_ids)
    if alive:
        query = query.where(or_(JobRow.worker_id.is_(None), JobRow.worker_id.not_in(alive)))
    with write_session(engine) as session:
        rows = list(session.scalars(query.with_for_update(skip_locked=True)))
        for row in rows:
            row.error = _orphan_reason(row, stale_after)
            _close(row, "failed", now, "failed")
        ended = [(row.id, row.kind) for row in rows]
    for _, kind in ended:
        JOBS_TOTAL.labels(kind, "failed").inc()
    return [job_id for job_id, _ in ended]


def _orphan_reason(row: JobRow, stale_after: timedelta) -> str:
    """Why a recovered job failed."""
    seen = row.heartbeat_at.isoformat() if row.heartbeat_at else "never"
    return (
        f"worker died while running this job (worker {row.worker_id or 'unknown'}, last "
        f"heartbeat {seen}, silent for more than {stale_after.total_seconds():g}s); "
        "submit it again"
    )
