"""SQL of the job queue and the worker schedules (``jobs`` and ``schedules`` tables).

Lifecycle: ``queued → running → succeeded | failed | cancelled``. A queued job is cancelled at
once; a running one cooperatively: ``cancel_requested`` is set and the worker stops at its next
progress report or heartbeat. Every transition below locks the job's row, and an end state is
only ever reached from ``running``, so a job that ended (or was recovered) stays ended.

Orphans: while a job runs, its worker writes ``heartbeat_at`` every ``job_stale_after / 4``
(a heartbeat thread, independent of progress reports). A running job whose heartbeat is older
than ``job_stale_after``, and whose worker is not one the caller knows to be alive, belongs to
a dead worker: :func:`recover_orphans` fails it with the reason. Every worker calls it when it
starts and then every ``job_stale_after / 2``, so a job never stays running after its worker
died (it is failed at most about ``1.5 × job_stale_after`` later). A worker frozen for that long
loses its job too; its next report sees the job is no longer running and it stops. A worker
known dead at once (its process is gone from the host it ran on: see ``jobs.worker``) has its
jobs failed by :func:`fail_jobs_of` without waiting for the heartbeat to age. Either way the
rule for an orphaned job is one: ``failed`` with its reason, never retried automatically.

Callers get :class:`Job` and :class:`Schedule` snapshots, never the table rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, or_, select
from sqlalchemy.exc import IntegrityError

from btc_predictor.errors import JobRunningError
from btc_predictor.storage.db import read_session, write_session
from btc_predictor.storage.tables import ACTIVE_JOB_STATUSES, JobRow, ScheduleRow

_ENQUEUE_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Job:
    """A job as stored (a snapshot of its ``jobs`` row)."""

    id: str
    kind: str
    status: str
    params: dict[str, Any]
    progress: float
    message: str | None
    result: dict[str, Any] | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class Schedule:
    """A worker schedule as stored (a snapshot of its ``schedules`` row)."""

    name: str
    last_run_at: datetime | None
    next_run_at: datetime | None
    last_job_id: str | None


def _job(row: JobRow) -> Job:
    """The snapshot of a job row."""
    return Job(
        row.id,
        row.kind,
        row.status,
        row.params,
        row.progress,
        row.message,
        row.result,
        row.error,
        row.created_at,
        row.started_at,
        row.finished_at,
    )


def _schedule(row: ScheduleRow) -> Schedule:
    """The snapshot of a schedule row."""
    return Schedule(row.name, row.last_run_at, row.next_run_at, row.last_job_id)


# --- enqueue and read ---------------------------------------------------------------------


def add_job(
    engine: Engine,
    *,
    kind: str,
    params: dict[str, Any],
    now: datetime,
    dedupe_key: str | None = None,
) -> Job:
    """Insert a queued job; JobRunningError when a queued/running job holds ``dedupe_key``."""
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
        return _job(row)
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


def _running_error(holder: Job, key: str | None) -> JobRunningError:
    """The conflict message naming the job that holds ``key``."""
    return JobRunningError(
        f"{holder.kind} job {holder.id} is already {holder.status} for `{key}`; "
        "wait for it to finish or cancel it"
    )


def find_active(engine: Engine, dedupe_key: str) -> Job | None:
    """The queued or running job holding ``dedupe_key``, if any."""
    query = select(JobRow).where(
        JobRow.dedupe_key == dedupe_key, JobRow.status.in_(ACTIVE_JOB_STATUSES)
    )
    with read_session(engine) as session:
        row = session.scalars(query).first()
        return _job(row) if row is not None else None


def get_job(engine: Engine, job_id: str) -> Job | None:
    """The job with this (canonical UUID) id, or None."""
    with read_session(engine) as session:
        row = session.get(JobRow, job_id)
        return _job(row) if row is not None else None


def list_jobs(
    engine: Engine, *, kind: str | None = None, status: str | None = None, limit: int
) -> list[Job]:
    """Jobs newest first, optionally of one kind and/or status."""
    query = select(JobRow).order_by(JobRow.created_at.desc(), JobRow.id.desc()).limit(limit)
    if kind is not None:
        query = query.where(JobRow.kind == kind)
    if status is not None:
        query = query.where(JobRow.status == status)
    with read_session(engine) as session:
        return [_job(row) for row in session.scalars(query)]


def params_since(engine: Engine, *, kind: str, since: datetime) -> list[dict[str, Any]]:
    """The params of every ``kind`` job created at or after ``since``."""
    query = select(JobRow.params).where(JobRow.kind == kind, JobRow.created_at >= since)
    with read_session(engine) as session:
        return list(session.scalars(query))


def cancel_job(engine: Engine, job_id: str, *, now: datetime) -> tuple[Job, bool] | None:
    """Cancel a queued job or flag a running one; (row, whether it ended now), None if unknown."""
    with write_session(engine) as session:
        row = session.get(JobRow, job_id, with_for_update=True)
        if row is None:
            return None
        ended = row.status == "queued"
        if ended:
            _close(row, "cancelled", now, "cancelled before it started")
        elif row.status == "running" and not row.cancel_requested:
            row.cancel_requested, row.message = True, "cancellation requested"
        return _job(row), ended


# --- worker side --------------------------------------------------------------------------


def claim_next(engine: Engine, *, worker_id: str, now: datetime) -> Job | None:
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
        return _job(row)


def touch(
    engine: Engine,
    job_id: str,
    *,
    now: datetime,
    progress: float | None = None,
    message: str | None = None,
) -> bool:
    """Heartbeat a running job (with progress); True when it should stop (cancelled or ended)."""
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


def end_job(
    engine: Engine,
    job_id: str,
    *,
    status: str,
    now: datetime,
    message: str,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> Job | None:
    """Move a running job to an end state; None when it was no longer running."""
    with write_session(engine) as session:
        row = session.get(JobRow, job_id, with_for_update=True)
        if row is None or row.status != "running":
            return None
        _close(row, status, now, message)
        row.result, row.error = result, error
        if status == "succeeded":
            row.progress = 1.0
        return _job(row)


def _close(row: JobRow, status: str, now: datetime, message: str) -> None:
    """Set the end-state columns."""
    row.status, row.finished_at, row.message = status, now, message


def requeue(engine: Engine, job_id: str, *, now: datetime, reason: str) -> Job | None:
    """Put a running job back in the queue (a pending cancel wins); None if not running."""
    with write_session(engine) as session:
        row = session.get(JobRow, job_id, with_for_update=True)
        if row is None or row.status != "running":
            return None
        if row.cancel_requested:
            _close(row, "cancelled", now, "cancelled while running")
        else:
            row.status, row.message, row.progress = "queued", reason, 0.0
            row.started_at = row.heartbeat_at = row.worker_id = None
        return _job(row)


def recover_orphans(
    engine: Engine,
    *,
    now: datetime,
    stale_after: timedelta,
    alive_worker_ids: Iterable[str] = (),
) -> list[Job]:
    """Fail running jobs of dead workers (see the module docstring); returns them."""
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
        return [_job(row) for row in rows]


def fail_jobs_of(engine: Engine, dead: dict[str, str], *, now: datetime) -> list[Job]:
    """Fail the running jobs of workers known to be dead (id -> why), at once; returns them."""
    if not dead:
        return []
    query = select(JobRow).where(JobRow.status == "running", JobRow.worker_id.in_(list(dead)))
    with write_session(engine) as session:
        rows = list(session.scalars(query.with_for_update(skip_locked=True)))
        for row in rows:
            row.error = (
                f"worker died while running this job ({dead[str(row.worker_id)]}); submit it again"
            )
            _close(row, "failed", now, "failed")
        return [_job(row) for row in rows]


def _orphan_reason(row: JobRow, stale_after: timedelta) -> str:
    """Why a recovered job failed."""
    seen = row.heartbeat_at.isoformat() if row.heartbeat_at else "never"
    return (
        f"worker died while running this job (worker {row.worker_id or 'unknown'}, last "
        f"heartbeat {seen}, silent for more than {stale_after.total_seconds():g}s); "
        "submit it again"
    )


# --- schedules ----------------------------------------------------------------------------


def due(now: datetime, row: Schedule | ScheduleRow) -> bool:
    """Whether the schedule ``row`` is due at ``now``."""
    return row.next_run_at is not None and row.next_run_at <= now


def schedules(engine: Engine) -> dict[str, Schedule]:
    """Every stored schedule by name."""
    with read_session(engine) as session:
        return {row.name: _schedule(row) for row in session.scalars(select(ScheduleRow))}


def claim_schedule(
    engine: Engine,
    name: str,
    *,
    now: datetime,
    first_run_at: datetime | None,
    next_run_at: datetime | None,
    force: bool = False,
) -> bool:
    """Atomically decide that this worker runs ``name`` now (at most one worker does).

    A schedule never stored is created due at ``first_run_at``; ``force`` makes it due now.
    Claiming records the run and plans the next one at ``next_run_at``.
    """
    try:
        with write_session(engine) as session:
            row = session.get(ScheduleRow, name, with_for_update=True)
            if row is None:
                row = ScheduleRow(name=name, next_run_at=first_run_at)
                session.add(row)
            if force:
                row.next_run_at = now
            if not due(now, row):
                return False
            row.last_run_at, row.next_run_at = now, next_run_at
            return True
    except IntegrityError:
        return False  # another worker created the row at the same moment and runs it


def replan_schedules(
    engine: Engine, plan: Callable[[Schedule], datetime | None]
) -> dict[str, datetime]:
    """Store ``plan(row)`` (None: keep) for every schedule, under lock; returns the changes."""
    changed: dict[str, datetime] = {}
    with write_session(engine) as session:
        for row in session.scalars(select(ScheduleRow).with_for_update()):
            planned = plan(_schedule(row))
            if planned is not None and planned != row.next_run_at:
                row.next_run_at = changed[row.name] = planned
    return changed


def record_schedule_job(engine: Engine, name: str, job_id: str) -> None:
    """Remember the last job a schedule queued."""
    with write_session(engine) as session:
        row = session.get(ScheduleRow, name)
        if row is not None:
            row.last_job_id = job_id
