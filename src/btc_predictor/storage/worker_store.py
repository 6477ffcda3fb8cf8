"""SQL of the worker heartbeat rows (``workers`` table): one row per job-worker process.

A worker registers when it starts, beats its row every poll and deletes it when it stops
cleanly. ``/health`` counts the rows beaten within ``job_stale_after``; a starting worker reads
the rows of its own PID scope to find predecessors that died (their jobs are then orphans).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, delete, func, select, update

from btc_predictor.storage.db import read_session, write_session
from btc_predictor.storage.tables import WorkerRow


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """A worker as registered (a snapshot of its ``workers`` row)."""

    id: str
    hostname: str
    pid: int
    pid_scope: str | None
    embedded: bool
    started_at: datetime
    heartbeat_at: datetime


def _record(row: WorkerRow) -> WorkerRecord:
    """The snapshot of a worker row."""
    return WorkerRecord(
        row.id,
        row.hostname,
        row.pid,
        row.pid_scope,
        row.embedded,
        row.started_at,
        row.heartbeat_at,
    )


def beat(engine: Engine, record: WorkerRecord, now: datetime) -> None:
    """Write the worker's heartbeat (registering it again if its row was pruned)."""
    with write_session(engine) as session:
        changed = session.execute(
            update(WorkerRow).where(WorkerRow.id == record.id).values(heartbeat_at=now)
        )
        if getattr(changed, "rowcount", 0) == 0:
            session.add(
                WorkerRow(
                    id=record.id,
                    hostname=record.hostname,
                    pid=record.pid,
                    pid_scope=record.pid_scope,
                    embedded=record.embedded,
                    started_at=record.started_at,
                    heartbeat_at=now,
                )
            )


def remove(engine: Engine, worker_ids: list[str]) -> None:
    """Forget these workers (stopped cleanly, or found dead)."""
    if worker_ids:
        with write_session(engine) as session:
            session.execute(delete(WorkerRow).where(WorkerRow.id.in_(worker_ids)))


def in_scope(engine: Engine, pid_scope: str) -> list[WorkerRecord]:
    """Every registered worker whose ``pid`` is meaningful in ``pid_scope``."""
    query = select(WorkerRow).where(WorkerRow.pid_scope == pid_scope)
    with read_session(engine) as session:
        return [_record(row) for row in session.scalars(query)]


def prune_silent(engine: Engine, before: datetime) -> int:
    """Delete rows not beaten since ``before`` (workers long gone); returns how many."""
    with write_session(engine) as session:
        gone = session.execute(delete(WorkerRow).where(WorkerRow.heartbeat_at < before))
        return int(getattr(gone, "rowcount", 0) or 0)


def beaten_since(engine: Engine, since: datetime) -> tuple[int, datetime | None]:
    """How many workers beat at or after ``since``, and the newest heartbeat of any worker."""
    with read_session(engine) as session:
        alive = session.scalar(
            select(func.count()).select_from(WorkerRow).where(WorkerRow.heartbeat_at >= since)
        )
        newest = session.scalar(select(func.max(WorkerRow.heartbeat_at)))
    return int(alive or 0), newest
