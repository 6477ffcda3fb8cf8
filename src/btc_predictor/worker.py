"""The job worker: claims queued jobs one at a time, runs their use case, reports progress,
enqueues scheduled work, and answers ``/health/live`` and ``/metrics`` on a side port.

Training runs here and never in an API process: the API only enqueues jobs.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from types import FrameType
from typing import Any

from sqlalchemy import Engine

from btc_predictor import telemetry
from btc_predictor.config import Settings
from btc_predictor.errors import BtcpError, DataSourceError, InvalidInputError, JobRunningError
from btc_predictor.forecasting.base import ProgressFn
from btc_predictor.forecasting.executors import Executor
from btc_predictor.job_params import normalize_params
from btc_predictor.jobs import (
    ClaimedJob,
    claim_next,
    fail,
    finish,
    get_job,
    heartbeat,
    mark_cancelled,
    recover_orphans,
    report_progress,
    requeue,
    submit,
)
from btc_predictor.schedules import enqueue_due
from btc_predictor.services.backtest import BacktestRequest, run_backtest
from btc_predictor.services.ingest import (
    IngestReport,
    IngestRequest,
    SourceFactory,
    bootstrap,
    ingest,
)
from btc_predictor.services.training import TrainRequest, train
from btc_predictor.storage.db import create_db_engine, upgrade
from btc_predictor.worker_http import SideServer

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Progress = Callable[[float, str], None]  # (fraction of the job done 0..1, status line)

USAGE_INTERVAL = 5.0  # seconds between updates of the CPU and memory gauges
MIN_WRITE_INTERVAL = 0.5  # seconds between progress writes: at most 2 per second per job
LEDGER_MODULE = "btc_predictor.services.ledger"


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a handler gets besides its (normalised) params."""

    settings: Settings
    engine: Engine
    clock: Clock
    job_id: str
    source_factory: SourceFactory | None = None
    executor: Executor | None = None


Handler = Callable[[JobContext, dict[str, Any], Progress], dict[str, Any]]


class _Cancelled(Exception):
    """Raised at a progress report once the job's cancellation was requested."""


class _Stopping(Exception):
    """Raised at a progress report when the worker is shutting down."""


def utcnow() -> datetime:
    """The wall clock in UTC (the production clock)."""
    return datetime.now(UTC)


# --- handlers -----------------------------------------------------------------------------


def _date(value: Any) -> date | None:
    """A normalised ISO date param."""
    return date.fromisoformat(value) if value is not None else None


def run_ingest(ctx: JobContext, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Ingest one asset (bootstrapping an empty database), score the ledger, chain training."""
    asset = params["asset"]
    progress(0.0, f"ingesting {asset}")
    report = _bootstrap_report(ctx, asset) if params.get("bootstrap") else None
    if report is None:
        request = IngestRequest(
            asset,
            params.get("source"),
            None,
            _date(params.get("since")),
            params.get("force", False),
        )
        report = ingest(
            ctx.settings, ctx.engine, request, now=ctx.clock(), source_factory=ctx.source_factory
        )
    result = report.to_json() | {
        "ledger": score_ledger_if_available(ctx.engine, asset, ctx.clock())
    }
    if params.get("then_train"):
        result["follow_up_job_id"] = _chain_training(ctx, asset)
    return result


def _bootstrap_report(ctx: JobContext, asset: str) -> IngestReport | None:
    """The first ingest of an empty database (BOOTSTRAP_CSV aware); None when data exists."""
    outcome = bootstrap(
        ctx.settings, ctx.engine, now=ctx.clock(), source_factory=ctx.source_factory
    )
    if outcome.skipped:
        return None
    if asset in outcome.failures:
        raise DataSourceError(
            asset,
            f"{outcome.failures[asset]}; set BTCP_BOOTSTRAP_CSV to a CSV export to start offline",
        )
    return next((r for r in outcome.reports if r.asset == asset), None)


def _chain_training(ctx: JobContext, asset: str) -> str | None:
    """Queue the default model's training once its data is in (None if one is pending)."""
    params = {"asset": asset, "promote": "auto"}
    try:
        job = submit(ctx.engine, ctx.settings, kind="train", params=params, now=ctx.clock())
    except JobRunningError as exc:
        log.info("training of %s not queued: %s", asset, exc.message)
        return None
    return str(job["id"])


def score_ledger_if_available(engine: Engine, asset: str, now: datetime) -> Any:
    """Score served forecasts against new closes, when the ledger module is installed."""
    try:
        module = importlib.import_module(LEDGER_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != LEDGER_MODULE:
            raise
        return None
    scorer = getattr(module, "score_ledger", None)
    if scorer is None:
        return None
    try:
        return to_json(scorer(engine, asset, now=now))
    except Exception as exc:
        # The candles are already stored: a scoring problem must not fail the refresh itself.
        log.exception("scoring the forecast ledger of %s failed", asset)
        return {"error": f"{type(exc).__name__}: {exc}"}


def _train_request(params: dict[str, Any], promote: str) -> TrainRequest:
    """A TrainRequest from normalised train/retrain params."""
    return TrainRequest(
        asset=params["asset"],
        model=params.get("model"),
        start=_date(params.get("start")),
        seed=params.get("seed", 0),
        epochs=params.get("epochs"),
        promote=promote,
    )


def _steps(progress: Progress, what: str) -> ProgressFn:
    """Adapt a training ProgressFn (done, total, loss) to the job's Progress."""

    def report(done: int, total: int, loss: float | None) -> None:
        """Report one training step."""
        detail = f", validation loss {loss:.4g}" if loss is not None else ""
        progress(done / max(total, 1), f"{what} step {done}/{total}{detail}")

    return report


def run_train(ctx: JobContext, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Train a model version; the promotion mode decides whether it becomes active."""
    request = _train_request(params, params.get("promote", "auto"))
    progress(0.0, f"training {request.model} for {request.asset}")
    report = train(
        ctx.settings, ctx.engine, request, now=ctx.clock(), progress=_steps(progress, "training")
    )
    telemetry.TRAINING_DURATION.labels(report["asset"], report["model"]).observe(
        report["training_duration"]
    )
    # The calibration residuals (~30 × 600 floats) live in the version's meta.json already.
    return {key: value for key, value in report.items() if key != "calibration"}


def run_retrain(ctx: JobContext, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Train with ``promote=auto`` (the promotion rule) and record why it was retrained."""
    reason = params.get("reason", "retrain requested")
    return run_train(ctx, {**params, "promote": "auto"}, progress) | {"reason": reason}


def run_backtest_job(ctx: JobContext, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """A walk-forward backtest; the result is the full backtest JSON (series included)."""
    request = BacktestRequest(
        asset=params["asset"],
        model=params.get("model"),
        days=params.get("days"),
        start=_date(params.get("start")),
        refit_every=params.get("refit_every", 30),
        horizon=params.get("horizon", 7),
        level=params.get("level", 90),
        seed=params.get("seed", 0),
        epochs=params.get("epochs"),
    )

    def folds(done: int, total: int) -> None:
        """Report finished folds."""
        progress(done / max(total, 1), f"fold {done}/{total}")

    progress(0.0, f"backtesting {request.model} on {request.asset}")
    return run_backtest(ctx.settings, ctx.engine, request, executor=ctx.executor, progress=folds)


HANDLERS: Mapping[str, Handler] = {
    "ingest": run_ingest,
    "train": run_train,
    "retrain": run_retrain,
    "backtest": run_backtest_job,
}


def to_json(value: Any) -> Any:
    """A JSON-safe copy: numpy values become Python ones, dates ISO text, NaN/inf null."""
    text = json.dumps(value, default=_plain)
    return json.loads(text, parse_constant=lambda _name: None)


def _plain(value: object) -> Any:
    """json.dumps fallback for numpy scalars/arrays and dates."""
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


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
        recovered = recover_orphans(
            self.engine,
            now=self._clock(),
            stale_after=stale_after,
            alive_worker_ids=(self.worker_id,),
        )
        for job_id in recovered:
            log.warning("job %s failed: its worker died while running it", job_id)
        self._next_recovery = time.monotonic() + stale_after.total_seconds() / 2
        return recovered

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


def run_worker(
    settings: Settings, *, stop: threading.Event | None = None, host: str | None = None
) -> None:
    """``btc-predictor worker``: migrate, recover orphans, serve the side port, run jobs."""
    stop = stop or threading.Event()
    host = host or settings.worker_host
    engine = create_db_engine(settings)
    try:
        upgrade(engine)
        worker = Worker(settings, engine, clock=utcnow)
        telemetry.initialize_worker_series(settings.assets, settings.sources, HANDLERS)
        worker.recover_orphans()
        server = SideServer(
            worker.worker_id, port=settings.worker_port, host=host, metrics_dir=settings.metrics_dir
        )
        log.info(
            "worker %s ready; health and metrics on %s:%d", worker.worker_id, host, server.port
        )
        try:
            with _stop_on_signals(stop):
                worker.run_forever(stop)
        finally:
            server.close()
            telemetry.process_exited(settings.metrics_dir)
        log.info("worker %s stopped", worker.worker_id)
    finally:
        engine.dispose()
