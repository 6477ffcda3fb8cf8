"""Is a job worker alive? The ``worker`` component of ``/health`` (DESIGN §7).

Embedded: ``serve`` supervises its own worker process and writes what it sees to a state file
in its private run directory (shared by every process it starts, the uvicorn workers
included); ``/health`` reads the file and checks the worker pid itself, so a worker that died a
moment ago reads ``restarting`` before the supervisor has even noticed. External (Compose,
Kubernetes): each worker beats its ``workers`` row every poll; none beaten within
``job_stale_after`` means no worker is alive. Never the worker *port*: any process may hold it.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import psutil
from sqlalchemy import Engine

from btc_predictor.config import Settings
from btc_predictor.storage import worker_store

STATE_FILE = "supervisor.json"
WorkerStatus = Literal["ok", "restarting", "dead"]


@dataclass(frozen=True, slots=True)
class SupervisorState:
    """What ``serve`` knows of its embedded worker."""

    supervisor_pid: int
    status: WorkerStatus
    restarts: int
    worker_pid: int | None


def state_path(settings: Settings) -> Path | None:
    """Where ``serve`` keeps its supervisor state (its run directory), if under ``serve``."""
    return settings.metrics_dir / STATE_FILE if settings.metrics_dir is not None else None


def write_state(path: Path, state: SupervisorState) -> None:
    """Replace the state file atomically (readers never see half a file)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(asdict(state)))
    os.replace(partial, path)


def read_state(path: Path) -> SupervisorState | None:
    """The supervisor's state; None when absent, unreadable or left by a dead supervisor."""
    try:
        state = SupervisorState(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return state if process_running(state.supervisor_pid) else None


def process_running(pid: int | None) -> bool:
    """Whether ``pid`` is a running process (a zombie, dead but not yet reaped, is not)."""
    if pid is None:
        return False
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def process_gone(pid: int, started_at: datetime) -> bool:
    """Whether the process ``pid`` that registered at ``started_at`` no longer runs.

    A pid reused by a process created after the registration counts as gone.
    """
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return True
        # 1 s of slack for create_time's coarse clock; registration comes seconds after start.
        return bool(process.create_time() > started_at.timestamp() + 1.0)
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:
        return False


def pid_scope() -> str:
    """Where this process's pid means something: boot id and PID namespace (else the host)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return f"host:{socket.gethostname()[:70]}"
    return f"{boot}:{namespace}"


def worker_component(settings: Settings, engine: Engine | None, now: datetime) -> dict[str, Any]:
    """``components.worker`` of /health: ``status`` ok|restarting|dead, with its evidence
    (``unknown`` for external workers when there is no database to read: ``engine`` None)."""
    path = state_path(settings) if settings.embedded_worker else None
    state = read_state(path) if path is not None else None
    if state is not None:
        status = state.status
        if status == "ok" and not process_running(state.worker_pid):
            status = "restarting"  # it died a moment ago; its supervisor restarts it
        return {"status": status, "mode": "embedded", "restarts": state.restarts}
    if engine is None:
        return {"status": "unknown", "mode": "external"}
    alive, newest = worker_store.beaten_since(engine, now - settings.job_stale_after)
    return {
        "status": "ok" if alive else "dead",
        "mode": "external",
        "alive": alive,
        "last_heartbeat": newest.isoformat() if newest is not None else None,
    }


def worker_reason(component: dict[str, Any], settings: Settings) -> str | None:
    """The /health ``degraded`` reason for a worker component (None when one is alive)."""
    if component.get("status") == "ok":
        return None
    if component.get("mode") == "embedded":
        return (
            f"no worker is alive: the embedded worker is {component['status']} "
            f"(restarts: {component.get('restarts', 0)})"
        )
    if component.get("status") == "dead":
        return (
            "no worker is alive: no worker heartbeat within "
            f"{settings.job_stale_after.total_seconds():g}s"
        )
    return f"worker state unknown: {component.get('status')}"
