"""The ``serve`` process: uvicorn with the API's workers, plus the supervised job worker.

One function owns the process tree: the shared run directory (metrics files and the
supervisor's state; set before any process imports prometheus_client, and stale ones of a
killed ``serve`` removed), migration before any worker starts, the job worker restarted with
backoff whenever it dies, children that die with ``serve`` (``jobs.lifeline``), and a SIGTERM
that ends everything within ``BTCP_SHUTDOWN_GRACE`` whatever is pending.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import psutil
import uvicorn
from uvicorn.supervisors.multiprocess import Multiprocess

from btc_predictor.config import Settings
from btc_predictor.services.workers import (
    STATE_FILE,
    SupervisorState,
    WorkerStatus,
    process_running,
    write_state,
)

log = logging.getLogger("btc_predictor.serve")

RUN_DIR_PREFIX = "btcp-metrics-"
OWNER_FILE = "serve.owner"  # "<pid> <create_time>" of the serve that owns a run directory
UNOWNED_STALE_AFTER = 600.0  # seconds: a run dir without owner file (older versions) is stale
FIRST_BACKOFF, MAX_BACKOFF = 1.0, 60.0  # seconds before restarting a dead worker, doubling
STABLE_AFTER = 60.0  # a worker that ran this long restarts after FIRST_BACKOFF again
WORKER_NICE = 10  # its start-up and trainings must not slow the API on a 2-core machine
# Shares of the shutdown grace: uvicorn stops waiting for open requests, then the worker is
# killed if still running; the rest is margin before the watchdog ends the process.
REQUESTS_SHARE, WORKER_SHARE = 0.5, 0.8


def run_server(settings: Settings, *, host: str, port: int, workers: int) -> None:
    """Serve the API until stopped; with ``embedded_worker`` also supervise one job worker."""
    from btc_predictor.api.auth import resolve_api_key
    from btc_predictor.storage.db import create_db_engine, upgrade

    resolve_api_key(settings)  # refuse to start without a key on PostgreSQL
    engine = create_db_engine(settings)
    upgrade(engine)  # migrate once, before any worker process starts
    engine.dispose()
    run_dir = _run_dir(settings)
    os.environ["BTCP_SUPERVISOR_PID"] = str(os.getpid())  # children exit with this process
    grace = settings.shutdown_grace.total_seconds()
    supervisor = None
    if settings.embedded_worker:
        supervisor = WorkerSupervisor(run_dir / STATE_FILE)
        supervisor.start()
    shutdown = Shutdown(grace, supervisor)
    config = uvicorn.Config(
        "btc_predictor.api.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=max(1, round(grace * REQUESTS_SHARE)),
    )
    # uvicorn re-raises the SIGTERM it handled once it has shut down; with the default
    # handler that would kill this process before `finally` stops the job worker.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        _serve(config, shutdown.begin)
    finally:
        shutdown.begin()  # also when uvicorn failed to start: the worker must not linger
        if supervisor is not None:
            supervisor.stop(shutdown.worker_deadline)
        if settings.metrics_dir is None:
            shutil.rmtree(run_dir, ignore_errors=True)
        shutdown.finished()


def _serve(config: uvicorn.Config, on_stop: Callable[[], None]) -> None:
    """uvicorn.run, with ``on_stop`` called the moment a stop signal arrives."""
    if config.workers > 1:
        _Multiprocess(config, [config.bind_socket()], on_stop).run()
        return
    server = _Server(config, on_stop)
    server.run()
    if not server.started:
        raise SystemExit(3)  # uvicorn's STARTUP_FAILURE (its log said why, e.g. port taken)


class _Server(uvicorn.Server):
    """uvicorn's server, telling ``serve`` when a stop signal arrives."""

    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_stop = on_stop

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Start the bounded shutdown, then uvicorn's own."""
        self._on_stop()
        super().handle_exit(sig, frame)


class _Multiprocess(Multiprocess):
    """uvicorn's process manager (``--workers N``), telling ``serve`` when told to stop."""

    def __init__(
        self, config: uvicorn.Config, sockets: list[socket.socket], on_stop: Callable[[], None]
    ) -> None:
        super().__init__(config, sockets)
        self._on_stop = on_stop

    def handle_term(self) -> None:
        """SIGTERM: start the bounded shutdown, then uvicorn's own."""
        self._on_stop()
        super().handle_term()

    def handle_int(self) -> None:
        """SIGINT: as SIGTERM."""
        self._on_stop()
        super().handle_int()


def _exit_cleanly(_signum: int, _frame: object) -> None:
    """SIGTERM after uvicorn's graceful shutdown: leave through the ``finally`` blocks."""
    raise SystemExit(0)


class Shutdown:
    """The bounded stop: the worker is told at once, and a watchdog ends the whole process
    tree when ``grace`` runs out (uvicorn alone would wait for every open request)."""

    def __init__(self, grace: float, supervisor: WorkerSupervisor | None) -> None:
        self.grace, self._supervisor = grace, supervisor
        self._began: float | None = None
        self._finished = threading.Event()

    def begin(self) -> None:
        """Start the clock (idempotent). Called by signal handlers and the main thread only
        (one thread: no lock, which a handler interrupting its holder would deadlock on)."""
        if self._began is not None:
            return
        self._began = time.monotonic()
        if self._supervisor is not None:
            self._supervisor.request_stop()
        threading.Thread(target=self._watchdog, name="shutdown-watchdog", daemon=True).start()

    @property
    def worker_deadline(self) -> float:
        """When a worker still running is killed (monotonic seconds)."""
        began = self._began if self._began is not None else time.monotonic()
        return began + self.grace * WORKER_SHARE

    def finished(self) -> None:
        """Everything stopped in time: the watchdog stands down."""
        self._finished.set()

    def _watchdog(self) -> None:
        """After ``grace``: kill every process ``serve`` started, then end it."""
        if self._finished.wait(self.grace):
            return
        log.error("shutdown grace of %gs exceeded: killing what is left", self.grace)
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        os._exit(1)


class WorkerSupervisor:
    """Runs the embedded job worker, restarts it when it dies, and publishes its state.

    Backoff: 1 s, doubling to 60 s, back to 1 s after a run of a minute. The state file is
    what ``/health`` of every API process reads (``services.workers``).
    """

    def __init__(self, state_file: Path) -> None:
        self._state_file = state_file
        self._stopping = threading.Event()
        self._deadline = float("inf")
        self.restarts = 0
        self._process: subprocess.Popen[bytes] | None = None
        # The worker's parent-death signal fires when *this thread* ends: it lives as long
        # as the supervision does, and stops the worker itself before ending.
        self._thread = threading.Thread(target=self._run, name="worker-supervisor", daemon=True)

    def start(self) -> None:
        """Start the worker and watch it."""
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the worker to stop now (it requeues a running job at its next report)."""
        self._stopping.set()

    def stop(self, deadline: float) -> None:
        """Stop the worker, killing it at ``deadline`` (monotonic) if it has not exited."""
        self._deadline = deadline
        self._stopping.set()
        self._thread.join(timeout=max(deadline - time.monotonic(), 0) + 2)

    def _run(self) -> None:
        """Spawn, wait, restart with backoff; on stop, end the worker."""
        backoff = FIRST_BACKOFF
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                self._process = self._spawn()
            except OSError:
                log.exception("could not start the embedded worker")
                self._process = None
            if self._process is not None:
                self._publish("ok")
                code = self._wait(self._process)
                if code is None:
                    break  # stopping
                log.warning("embedded worker (pid %d) exited with %d", self._process.pid, code)
            if time.monotonic() - started >= STABLE_AFTER:
                backoff = FIRST_BACKOFF
            self.restarts += 1
            self._publish("restarting")
            log.warning("restarting the embedded worker in %gs", backoff)
            if self._stopping.wait(backoff):
                break
            backoff = min(backoff * 2, MAX_BACKOFF)
        self._end_worker()
        self._publish("dead")

    def _spawn(self) -> subprocess.Popen[bytes]:
        """Start one worker at a lower CPU priority."""
        process = subprocess.Popen([sys.executable, "-m", "btc_predictor", "worker"])
        with contextlib.suppress(psutil.Error):  # it exited already: the wait sees it
            psutil.Process(process.pid).nice(WORKER_NICE)
        return process

    def _wait(self, process: subprocess.Popen[bytes]) -> int | None:
        """The worker's exit code, or None when stopping was asked first."""
        while not self._stopping.is_set():
            try:
                return process.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
        return None

    def _end_worker(self) -> None:
        """SIGTERM the worker, then SIGKILL it at the deadline."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        while process.poll() is None and time.monotonic() < self._deadline:
            time.sleep(0.05)
        if process.poll() is None:
            log.warning("embedded worker did not stop in time: killing it (its job fails)")
            process.kill()
        process.wait()

    def _publish(self, status: WorkerStatus) -> None:
        """Write the state every API process reads."""
        process = self._process
        pid = process.pid if process is not None and process.poll() is None else None
        try:
            write_state(self._state_file, SupervisorState(os.getpid(), status, self.restarts, pid))
        except OSError:
            log.warning("could not write %s", self._state_file, exc_info=True)


# --- the run directory (shared metrics files, supervisor state) ---------------------------


def _run_dir(settings: Settings) -> Path:
    """Share metric files between this server's processes (prometheus-client multiprocess).

    Set before any process imports prometheus_client: uvicorn's workers and the embedded job
    worker inherit it, so one scrape of /metrics sums them all. A configured directory
    (PROMETHEUS_MULTIPROC_DIR) is emptied first, as prometheus-client requires; otherwise a
    private one is made, after removing those left by a ``serve`` that was killed.
    """
    if settings.metrics_dir is None:
        remove_stale_run_dirs(Path(tempfile.gettempdir()))
        path = Path(tempfile.mkdtemp(prefix=RUN_DIR_PREFIX))
        me = psutil.Process()
        (path / OWNER_FILE).write_text(f"{me.pid} {me.create_time()}")
    else:
        path = settings.metrics_dir
        path.mkdir(parents=True, exist_ok=True)
        for stale in [*path.glob("*.db"), path / STATE_FILE]:
            stale.unlink(missing_ok=True)
    # The API processes find the supervisor's state here too (services.workers.state_path).
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    if "prometheus_client" in sys.modules:  # this process's own metrics would be missed
        raise RuntimeError("prometheus_client was imported before serve set its metrics dir")
    return path


def remove_stale_run_dirs(parent: Path) -> list[Path]:
    """Delete run directories whose ``serve`` is gone (killed: it could not clean up)."""
    removed = []
    for path in parent.glob(f"{RUN_DIR_PREFIX}*"):
        try:
            if not path.is_dir() or path.stat().st_uid != os.getuid() or _owned(path):
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if removed:
        log.info("removed %d metrics directories left by stopped servers", len(removed))
    return removed


def _owned(path: Path) -> bool:
    """Whether the ``serve`` that made ``path`` still runs."""
    try:
        pid_text, created_text = (path / OWNER_FILE).read_text().split()
        pid, created = int(pid_text), float(created_text)
    except FileNotFoundError:
        # Made by a version without owner files, or this instant by a starting serve.
        return time.time() - path.stat().st_mtime < UNOWNED_STALE_AFTER
    except ValueError:
        return False
    if not process_running(pid):
        return False
    try:
        return abs(psutil.Process(pid).create_time() - created) < 1.0  # else a reused pid
    except psutil.Error:
        return False
