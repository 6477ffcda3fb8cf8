"""The job worker: claims queued jobs one at a time, runs their handler, reports progress,
enqueues scheduled work, and answers ``/health/live`` and ``/metrics`` on a side port.

Training runs here and never in an API process: the API only enqueues jobs.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import FrameType
from typing import Any

from sqlalchemy import Engine

from btc_predictor import telemetry
from btc_predictor.config import Settings
from btc_predictor.errors import BtcpError, InvalidInputError, UnavailableError
from btc_predictor.forecasting.executors import Executor, ProcessExecutor
from btc_predictor.jobs.handlers import (
    HANDLERS,
    Clock,
    Handler,
    JobContext,
    to_json,
)
from btc_predictor.jobs.lifeline import exit_with_parent
from btc_predictor.jobs.params import normalize_params
from btc_predictor.jobs.queue import (
    ClaimedJob,
    claim_next,
    fail,
    fail_jobs_of,
    finish,
    get_job,
    heartbeat,
    mark_cancelled,
    recover_orphans,
    report_progress,
    requeue,
)
from btc_predictor.jobs.schedules import enqueue_due
from btc_predictor.jobs.side_server import SideServer
from btc_predictor.services.ingest import SourceFactory
from btc_predictor.services.workers import pid_scope, process_gone
from btc_predictor.sources.base import utc_now
from btc_predictor.storage import worker_store
from btc_predictor.storage.db import create_db_engine, upgrade
from btc_predictor.storage.worker_store import WorkerRecord

log = logging.getLogger(__name__)

USAGE_INTERVAL = 5.0  # seconds between updates of the CPU and memory gauges
PRUNE_AFTER = 10  # a worker row silent for this many ``job_stale_after`` is deleted
MIN_WRITE_INTERVAL = 0.5  # seconds between progress writes: at most 2 per second per job


class _Cancelled(Exception):
    """Raised at a progress report once the job's cancellation was requested."""


class _Stopping(Exception):
    """Raised at a progress report when the worker is shutting down."""


# --- running one job ----------------------------------------------------------------------


class _Tracker:
    """Throttled progress writes for one job, and the cancel/stop checks at each report."""

    def __init__(self, engine: Engine, job_id: str, clock: Clock, stop: threading.Event) -> None:
        self._engine, self._job_id, self._clock, self._stop = engine, job_id, clock, stop
        self._cancel = threading.Event()
        self._last_write = -math.inf

    def report(self, fraction: float, message: str) -> None:
        """The handler's Progress: write at most every MIN_WRITE_INTERVAL; raise to stop."""
        if self._stop.is_set():
            raise _Stopping
        now = time.monotonic()
        if now - self._last_write >= MIN_WRITE_INTERVAL:
            self._last_write = now
            if report_progress(self._engine, self._job_id, fraction, message, self._clock()):
                self._cancel.set()
        if self._cancel.is_set():
            raise _Cancelled

    def beat(self) -> None:
        """Heartbeat; remembers a cancellation for the next progress report."""
        if heartbeat(self._engine, self._job_id, self._clock()):
            self._cancel.set()


@contextmanager
def _heartbeats(tracker: _Tracker, interval: float) -> Iterator[None]:
    """Beat every ``interval`` seconds on a thread while the job runs."""
    done = threading.Event()

    def loop() -> None:
        """Beat until the job ends."""
        while not done.wait(interval):
            try:
                tracker.beat()
            except Exception:
                # A transient database error: the next beat retries well before staleness.
                log.warning("heartbeat of a running job failed", exc_info=True)

    thread = threading.Thread(target=loop, name="job-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def default_worker_id() -> str:
    """``host:pid:random``, unique per worker process."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


class Worker:
    """Runs queued jobs one at a time and turns due schedules into jobs."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        clock: Clock,
        worker_id: str | None = None,
        source_factory: SourceFactory | None = None,
        executor: Executor | None = None,
        handlers: Mapping[str, Handler] | None = None,
    ) -> None:
        self.settings, self.engine = settings, engine
        self.worker_id = worker_id or default_worker_id()
        self._clock = clock
        self._source_factory, self._executor = source_factory, executor
        self._handlers = dict(handlers if handlers is not None else HANDLERS)
        self._stop = threading.Event()
        self._starting = True
        self._next_recovery = -math.inf
        self._usage, self._next_usage = telemetry.ProcessUsage(), -math.inf
        self._started_at = clock()

    def run_once(self) -> bool:
        """Claim the oldest queued job and run it to an end state; False when none is queued."""
        job = claim_next(self.engine, worker_id=self.worker_id, now=self._clock())
        if job is None:
            return False
        self._execute(job)
        return True

    def tick(self) -> bool:
        """Recover orphans when due, enqueue due schedules, then run at most one job."""
        if time.monotonic() >= self._next_recovery:
            self.recover_orphans()
        if time.monotonic() >= self._next_usage:
            self._usage.update()
            self._next_usage = time.monotonic() + USAGE_INTERVAL
        enqueue_due(self.engine, self.settings, now=self._clock(), starting=self._starting)
        self._starting = False
        return self.run_once()

    def recover_orphans(self) -> list[str]:
        """Fail jobs whose worker died (this worker counts as alive); returns their ids."""
        stale_after = self.settings.job_stale_after
        recovered = self._fail_jobs_of_dead_neighbours()
        recovered += recover_orphans(
            self.engine,
            now=self._clock(),
            stale_after=stale_after,
            alive_worker_ids=(self.worker_id,),
        )
        for job_id in recovered:
            log.warning("job %s failed: its worker died while running it", job_id)
        self._next_recovery = time.monotonic() + stale_after.total_seconds() / 2
        return recovered

    def _fail_jobs_of_dead_neighbours(self) -> list[str]:
        """At once, without waiting for heartbeats to age: workers of our PID scope whose
        process is gone (a killed predecessor) lose their running jobs and their rows."""
        dead = {
            row.id: f"worker {row.id}, pid {row.pid}: its process is gone"
            for row in worker_store.in_scope(self.engine, pid_scope())
            if row.id != self.worker_id and process_gone(row.pid, row.started_at)
        }
        failed = fail_jobs_of(self.engine, dead, now=self._clock())
        worker_store.remove(self.engine, list(dead))
        return failed

    def record(self) -> WorkerRecord:
        """This worker's heartbeat row."""
        return WorkerRecord(
            id=self.worker_id,
            hostname=socket.gethostname()[:255],
            pid=os.getpid(),
            pid_scope=pid_scope(),
            embedded=self.settings.supervisor_pid is not None,
            started_at=self._started_at,
            heartbeat_at=self._started_at,
        )

    def run_forever(self, stop: threading.Event) -> None:
        """Tick until ``stop`` is set; an idle tick waits ``worker_poll``."""
        self._stop = stop
        poll = self.settings.worker_poll.total_seconds()
        while not stop.is_set():
            try:
                busy = self.tick()
            except Exception:
                # A database outage must not end the worker: log, back off, try again.
                log.exception("worker tick failed; retrying in %gs", poll * 10)
                stop.wait(poll * 10)
                continue
            if not busy:
                stop.wait(poll)

    def _execute(self, job: ClaimedJob) -> str:
        """Run a claimed job and record how it ended; returns the job's new status."""
        log.info("job %s (%s) started", job.id, job.kind)
        tracker = _Tracker(self.engine, job.id, self._clock, self._stop)
        interval = max(self.settings.job_stale_after.total_seconds() / 4, 0.05)
        try:
            with _heartbeats(tracker, interval):
                result = self._call(job, tracker)
        except _Cancelled:
            status, recorded = "cancelled", mark_cancelled(self.engine, job.id, self._clock())
        except _Stopping:
            status = "queued"
            recorded = requeue(
                self.engine, job.id, self._clock(), "requeued: its worker was stopped"
            )
        except BtcpError as exc:
            status, recorded = "failed", fail(self.engine, job.id, exc.message, self._clock())
        except Exception as exc:
            log.exception("job %s (%s) crashed", job.id, job.kind)
            error = f"unexpected error: {type(exc).__name__}: {exc}"
            status, recorded = "failed", fail(self.engine, job.id, error, self._clock())
        else:
            status, recorded = "succeeded", finish(self.engine, job.id, result, self._clock())
        if not recorded:
            # Recovered as an orphan while this worker was unresponsive: that verdict stands.
            log.warning("job %s (%s) %s here but had already ended", job.id, job.kind, status)
            return str(get_job(self.engine, job.id)["status"])
        log.info("job %s (%s) %s", job.id, job.kind, status)
        return status

    def _call(self, job: ClaimedJob, tracker: _Tracker) -> dict[str, Any]:
        """Check the params again (they may not have come through ``submit``) and run."""
        handler = self._handlers.get(job.kind)
        if handler is None:
            raise InvalidInputError(f"this worker cannot run {job.kind} jobs")
        params = normalize_params(self.settings, job.kind, job.params)
        context = JobContext(
            self.settings, self.engine, self._clock, job.id, self._source_factory, self._executor
        )
        result = to_json(handler(context, params, tracker.report))
        if not isinstance(result, dict):
            raise TypeError(f"{job.kind} handler returned {type(result).__name__}, not an object")
        return result


# --- process entry point ---------------------------------------------------------------------


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set ``stop`` on SIGTERM/SIGINT (handlers can only be installed by the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, _frame: FrameType | None) -> None:
        """Ask the loop to stop; a running job is requeued at its next progress report."""
        log.info("signal %d received: stopping the worker (send it again to stop at once)", signum)
        stop.set()
        signal.signal(signum, previous[signum])  # a second signal acts as it normally would

    previous: dict[int, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handle)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def _registered(worker: Worker, clock: Clock) -> Iterator[None]:
    """Register the worker's heartbeat row, beat it every poll on a thread (long jobs too),
    and delete it on a clean stop (/health reads these rows for external workers)."""
    record, engine = worker.record(), worker.engine
    interval = worker.settings.worker_poll.total_seconds()
    worker_store.beat(engine, record, clock())  # registered before the first job is claimed
    worker_store.prune_silent(engine, clock() - worker.settings.job_stale_after * PRUNE_AFTER)
    done = threading.Event()

    def loop() -> None:
        """Beat until the worker stops; log a failing database once, not every beat."""
        failing = False
        while not done.wait(interval):
            try:
                worker_store.beat(engine, record, clock())
            except Exception:
                if not failing:
                    log.warning("worker heartbeat failed; retrying every %gs", interval)
                failing = True
            else:
                if failing:
                    log.info("worker heartbeat written again")
                failing = False

    thread = threading.Thread(target=loop, name="worker-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        try:
            worker_store.remove(engine, [record.id])
        except Exception:
            log.warning("could not delete worker row %s (it ages out)", record.id)


def _side_server(worker: Worker, host: str) -> SideServer:
    """The side server on BTCP_WORKER_PORT; a taken port is one clear error, not a traceback."""
    port = worker.settings.worker_port
    try:
        return SideServer(
            worker.worker_id, port=port, host=host, metrics_dir=worker.settings.metrics_dir
        )
    except OSError as exc:
        raise UnavailableError(
            f"worker port {host}:{port} is taken ({exc.strerror}): another worker may still be "
            "running; stop it or set BTCP_WORKER_PORT"
        ) from None


def run_worker(
    settings: Settings, *, stop: threading.Event | None = None, host: str | None = None
) -> None:
    """``btc-predictor worker``: migrate, serve the side port, recover orphans, run jobs."""
    if settings.supervisor_pid is not None:
        exit_with_parent(settings.supervisor_pid)  # never outlive the serve that started us
    stop = stop or threading.Event()
    # Handlers first: a SIGTERM while migrating or recovering orphans is a clean stop too
    # (installed later, one in that gap killed the worker with -15 under load).
    with _stop_on_signals(stop):
        _serve_jobs(settings, stop, host or settings.worker_host)


def _serve_jobs(settings: Settings, stop: threading.Event, host: str) -> None:
    """Migrate, serve the side port, recover orphans, then run jobs until ``stop``."""
    engine = create_db_engine(settings)
    try:
        upgrade(engine)
        # Backtest folds run in processes of their own: they die with this worker (a spawn
        # pool's processes otherwise outlive a killed parent, blocked on its queue forever).
        lifeline = functools.partial(exit_with_parent, os.getpid())
        worker = Worker(
            settings, engine, clock=utc_now, executor=ProcessExecutor(initializer=lifeline)
        )
        telemetry.initialize_worker_series(settings.assets, settings.sources, HANDLERS)
        # The port first: while a predecessor still holds it, it is alive and its job is not
        # an orphan; serve restarts us with backoff until the port is free.
        server = _side_server(worker, host)
        try:
            with _registered(worker, utc_now):
                worker.recover_orphans()  # at once: a killed predecessor's job fails now
                log.info(
                    "worker %s ready; health and metrics on %s:%d",
                    worker.worker_id,
                    host,
                    server.port,
                )
                worker.run_forever(stop)
        finally:
            server.close()
            telemetry.process_exited(settings.metrics_dir)
        log.info("worker %s stopped", worker.worker_id)
    finally:
        engine.dispose()
