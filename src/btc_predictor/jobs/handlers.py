"""Job handlers: one function per job kind, from normalised params to a service call.

A handler gets a :class:`JobContext` and a ``Progress`` callback and returns the job's JSON
result. Handlers call services only; they never import the worker loop that runs them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine

from btc_predictor import telemetry
from btc_predictor.config import Settings
from btc_predictor.errors import DataSourceError, JobRunningError
from btc_predictor.forecasting.base import ProgressFn
from btc_predictor.forecasting.executors import Executor
from btc_predictor.jobs.queue import submit
from btc_predictor.services import ledger
from btc_predictor.services.backtest import run_backtest
from btc_predictor.services.ingest import SourceFactory, bootstrap, ingest
from btc_predictor.services.training import train
from btc_predictor.shapes.requests import (
    BacktestRequest,
    IngestJob,
    IngestRequest,
    RetrainRequest,
    TrainRequest,
)
from btc_predictor.shapes.results import IngestReport

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# What a train job's stored result leaves out: residuals, at the top level and in ``risk``.
TRAIN_JOB_EXCLUDE: dict[str, Any] = {"calibration": True, "risk": {"calibration": True}}
Progress = Callable[[float, str], None]  # (fraction of the job done 0..1, status line)


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a handler gets besides its (normalised) params."""

    settings: Settings
    engine: Engine
    clock: Clock
    job_id: str
    source_factory: SourceFactory | None = None
    executor: Executor | None = None


# The params argument is the kind's shape in ``shapes.jobs.JOB_PARAMS``.
Handler = Callable[[JobContext, Any, Progress], dict[str, Any]]


# --- handlers -----------------------------------------------------------------------------


def run_ingest(ctx: JobContext, job: IngestJob, progress: Progress) -> dict[str, Any]:
    """Ingest one asset (bootstrapping an empty database), score the ledger, chain training."""
    progress(0.0, f"ingesting {job.asset}")
    report = _bootstrap_report(ctx, job.asset) if job.bootstrap else None
    if report is None:
        request = IngestRequest(
            asset=job.asset, source=job.source, since=job.since, force=job.force
        )
        report = ingest(
            ctx.settings, ctx.engine, request, now=ctx.clock(), source_factory=ctx.source_factory
        )
    result = report.model_dump(mode="json")
    result["ledger"] = _score_ledger(ctx.engine, job.asset, ctx.clock())
    result["risk_ledger"] = _score_ledger(ctx.engine, job.asset, ctx.clock(), risk=True)
    if job.then_train:
        result["follow_up_job_id"] = _chain_training(ctx, job.asset)
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
    """Queue the default models' training (risk, then price) once the data is in (None if
    one is pending)."""
    request = TrainRequest(asset=asset, promote="auto")
    try:
        job = submit(ctx.engine, ctx.settings, kind="train", params=request, now=ctx.clock())
    except JobRunningError as exc:
        log.info("training of %s not queued: %s", asset, exc.message)
        return None
    return str(job["id"])


def _score_ledger(engine: Engine, asset: str, now: datetime, *, risk: bool = False) -> Any:
    """Score served (price, or risk) forecasts against new candles: how many, or the error
    that stopped it."""
    score = ledger.score_risk_ledger if risk else ledger.score_ledger
    try:
        return to_json(score(engine, asset, now=now))
    except Exception as exc:
        # The candles are already stored: a scoring problem must not fail the refresh itself.
        log.exception("scoring the %s ledger of %s failed", "risk" if risk else "forecast", asset)
        return {"error": f"{type(exc).__name__}: {exc}"}


def _steps(progress: Progress, what: str) -> ProgressFn:
    """Adapt a training ProgressFn (done, total, loss) to the job's Progress."""

    def report(done: int, total: int, loss: float | None) -> None:
        """Report one training step."""
        detail = f", validation loss {loss:.4g}" if loss is not None else ""
        progress(done / max(total, 1), f"{what} step {done}/{total}{detail}")

    return report


def run_train(ctx: JobContext, request: TrainRequest, progress: Progress) -> dict[str, Any]:
    """Train a model version (or, with no model named, the default risk then price model);
    the promotion mode decides whether each becomes active."""
    what = request.model or (f"{ctx.settings.default_risk_model} and {ctx.settings.default_model}")
    progress(0.0, f"training {what} for {request.asset}")
    report = train(
        ctx.settings, ctx.engine, request, now=ctx.clock(), progress=_steps(progress, "training")
    )
    for trained in (report, report.risk):
        if trained is not None:
            telemetry.TRAINING_DURATION.labels(trained.asset, trained.model).observe(
                trained.training_duration
            )
    # The calibration residuals (~30 × 600 floats) live in the version's meta.json already.
    return report.model_dump(mode="json", exclude=TRAIN_JOB_EXCLUDE)


def run_retrain(ctx: JobContext, request: RetrainRequest, progress: Progress) -> dict[str, Any]:
    """Train with ``promote=auto`` (the promotion rule) and record why it was retrained."""
    reason = request.reason or "retrain requested"
    return run_train(ctx, request.as_train(), progress) | {"reason": reason}


def run_backtest_job(
    ctx: JobContext, request: BacktestRequest, progress: Progress
) -> dict[str, Any]:
    """A walk-forward backtest; the result is the full backtest JSON (series included)."""

    def folds(done: int, total: int) -> None:
        """Report finished folds."""
        progress(done / max(total, 1), f"fold {done}/{total}")

    progress(0.0, f"backtesting {request.model} on {request.asset}")
    report = run_backtest(ctx.settings, ctx.engine, request, executor=ctx.executor, progress=folds)
    return report.model_dump(mode="json")


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
