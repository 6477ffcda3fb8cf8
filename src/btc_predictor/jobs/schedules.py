"""Worker schedules: refresh data, retrain, and bootstrap a fresh install.

The timing rules are pure functions of an injected ``now``. :func:`enqueue_due` turns due
schedules into ordinary jobs and persists each run in the ``schedules`` table (through
:mod:`btc_predictor.storage.job_store`), so a restart never runs a schedule twice and any
process (the API) can list them.

- ``refresh``: an ingest job per tracked asset shortly after each UTC day closes (00:00 UTC +
  ``refresh_delay``); on the first start at once, and on a later start only if a run was
  missed while no worker was up.
- ``retrain``: a ``retrain`` job of the default models (risk, then price) per tracked asset every
  ``retrain_every`` (the first one a full period after the first start); the promotion rule
  decides whether the new version becomes active.
- ``health``: every hour, per tracked asset, :func:`services.health.degradation` (live error worse
  than naive's by the margin, or coverage outside its band, on each of the last
  ``degraded_days`` days) queues a ``retrain`` that records why, at most one per asset per
  ``retrain_cooldown``; the promotion rule still decides whether the new version serves. The
  active risk model is watched the same way (:func:`services.risk_health.risk_degradation`:
  live range error worse than the naive range's by the margin on each of those days) and
  queues a ``retrain`` of that risk model, with its own cooldown (a retrain of both defaults
  counts for either).
- ``bootstrap``: at every worker start, for each tracked asset without an active model: with
  no stored data, an ingest job (the first-run ingest, BOOTSTRAP_CSV aware) that queues the
  default models' training when it succeeds (chained, so training never starts before its
  data, even with several workers); with data, the training job directly. An asset whose
  price model is active but that has no active risk model gets the default risk model's
  training.

An equivalent queued or running job (same dedupe key) means the work is already under way:
that asset is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import Engine

from btc_predictor.config import Settings
from btc_predictor.errors import InvalidInputError, JobRunningError
from btc_predictor.forecasting.registry import RISK_MODELS
from btc_predictor.jobs.queue import submit
from btc_predictor.services.health import degradation
from btc_predictor.services.ingest import has_candles
from btc_predictor.services.risk_health import active_risk_model, risk_degradation
from btc_predictor.services.versions import active_version_id
from btc_predictor.shapes.results import ScheduleView
from btc_predictor.storage import job_store
from btc_predictor.storage.job_store import Schedule
from btc_predictor.telemetry import RETRAINS_TRIGGERED_TOTAL

log = logging.getLogger(__name__)

DAY = timedelta(days=1)
# Bootstrap first: its ingest must take an asset's ingest slot before refresh's online one.
SCHEDULES = ("bootstrap", "refresh", "health", "retrain")
HEALTH_EVERY = timedelta(hours=1)
DESCRIPTIONS = {
    "bootstrap": "first run: ingest data and train the default risk and price models for "
    "tracked assets that have no active model",
    "refresh": "ingest the day that just closed for every tracked asset",
    "health": "retrain an asset whose live forecasts degraded (vs naive, or interval "
    "coverage) for several days; at most once per cooldown",
    "retrain": "retrain the default risk and price models of every tracked asset (each "
    "promoted only if better)",
}


def next_run(name: str, now: datetime, settings: Settings) -> datetime | None:
    """When ``name`` runs next after a run at ``now`` (None: at the next worker start)."""
    now = now.astimezone(UTC)
    if name == "refresh":
        candidate = datetime.combine(now.date(), time(), tzinfo=UTC) + settings.refresh_delay % DAY
        while candidate <= now:
            candidate += DAY
        return candidate
    if name == "retrain":
        return now + settings.retrain_every
    if name == "health":
        return now + HEALTH_EVERY
    if name == "bootstrap":
        return None
    raise InvalidInputError(f"unknown schedule `{name}` (use one of: {', '.join(SCHEDULES)})")


def first_run(name: str, now: datetime, settings: Settings) -> datetime | None:
    """When ``name`` first runs on an install that never ran it."""
    return now + settings.retrain_every if name == "retrain" else now


def enqueue_due(
    engine: Engine, settings: Settings, *, now: datetime, starting: bool = False
) -> list[str]:
    """Enqueue the jobs of every due schedule (``starting``: a worker's first tick)."""
    if starting:
        replan(engine, settings, now=now)
    rows = job_store.schedules(engine)
    job_ids: list[str] = []
    for name in SCHEDULES:
        row, armed = rows.get(name), starting and name == "bootstrap"
        # A read first: most ticks have nothing due and should not take the write lock.
        if row is not None and not armed and not job_store.due(now, row):
            continue
        if not _claim(engine, settings, name, now, armed=armed):
            continue
        ids = _ACTIONS[name](engine, settings, now)
        if ids:
            job_store.record_schedule_job(engine, name, ids[-1])
        log.info("schedule %s ran: %d job(s) queued", name, len(ids))
        job_ids += ids
    return job_ids


def replan(engine: Engine, settings: Settings, *, now: datetime) -> None:
    """Re-plan stored runs for the current cadences (a worker start after a settings change).

    A schedule that ran is next due one cadence after its last run; one that never ran keeps
    its planned time unless the new cadence brings it closer.
    """
    changed = job_store.replan_schedules(engine, lambda row: _replanned(row, settings, now))
    for name, planned in changed.items():
        log.info("schedule %s re-planned for %s", name, planned.isoformat())


def _replanned(row: Schedule, settings: Settings, now: datetime) -> datetime | None:
    """When a stored schedule should next run under the current cadences (None: as planned)."""
    if row.name == "bootstrap" or row.next_run_at is None:
        return None
    if row.last_run_at is not None:
        return next_run(row.name, row.last_run_at, settings)
    return min(row.next_run_at, first_run(row.name, now, settings) or now)


def _claim(engine: Engine, settings: Settings, name: str, now: datetime, *, armed: bool) -> bool:
    """Atomically decide that this worker runs ``name`` now (``armed``: due whatever is stored)."""
    return job_store.claim_schedule(
        engine,
        name,
        now=now,
        first_run_at=first_run(name, now, settings),
        next_run_at=next_run(name, now, settings),
        force=armed,
    )


def _submit(
    engine: Engine, settings: Settings, kind: str, params: dict[str, Any], now: datetime
) -> list[str]:
    """Queue a job; an equivalent one already queued or running counts as done."""
    try:
        return [str(submit(engine, settings, kind=kind, params=params, now=now)["id"])]
    except JobRunningError as exc:
        log.info("schedule skipped a %s job: %s", kind, exc.message)
        return []


def _refresh(engine: Engine, settings: Settings, now: datetime) -> list[str]:
    """An ingest job per tracked asset."""
    return [
        job_id
        for asset in settings.assets
        for job_id in _submit(engine, settings, "ingest", {"asset": asset}, now)
    ]


def _retrain(engine: Engine, settings: Settings, now: datetime) -> list[str]:
    """A retrain job of the default model per tracked asset."""
    reason = f"scheduled retrain (every {_duration(settings.retrain_every)})"
    params = {"reason": reason, "trigger": "schedule"}
    return [
        job_id
        for asset in settings.assets
        for job_id in _submit(engine, settings, "retrain", {"asset": asset, **params}, now)
    ]


def _health(engine: Engine, settings: Settings, now: datetime) -> list[str]:
    """A retrain per tracked asset whose live forecasts degraded (outside its cooldown), and a
    retrain of the active risk model whose live range error degraded (outside its own)."""
    job_ids: list[str] = []
    for asset in settings.assets:
        if active_version_id(engine, asset) is None:
            continue  # nothing serves yet: bootstrap's training, not a retrain, is due
        job_ids += _price_health(engine, settings, asset, now)
        job_ids += _risk_health(engine, settings, asset, now)
    return job_ids


def _price_health(engine: Engine, settings: Settings, asset: str, now: datetime) -> list[str]:
    """A retrain of the default models (risk, then price) when the price forecasts degraded."""
    reason = degradation(settings, engine, asset, now.date())
    since = now - settings.retrain_cooldown
    if reason is None or _recent_health_retrain(engine, asset, since, "price"):
        return []
    params = {"asset": asset, "reason": reason, "trigger": "health"}
    return _queue_health_retrain(engine, settings, params, now, _reason_kind(reason))


def _risk_health(engine: Engine, settings: Settings, asset: str, now: datetime) -> list[str]:
    """A retrain of the active risk model's kind when its live range error degraded."""
    model = active_risk_model(engine, asset)
    if model is None:
        return []
    reason = risk_degradation(settings, engine, asset, now.date())
    since = now - settings.retrain_cooldown
    if reason is None or _recent_health_retrain(engine, asset, since, "risk"):
        return []
    params = {"asset": asset, "model": model, "reason": reason, "trigger": "health"}
    return _queue_health_retrain(engine, settings, params, now, "range_error")


def _queue_health_retrain(
    engine: Engine, settings: Settings, params: dict[str, Any], now: datetime, kind: str
) -> list[str]:
    """Queue one health-triggered retrain and count it by reason."""
    queued = _submit(engine, settings, "retrain", params, now)
    if queued:
        RETRAINS_TRIGGERED_TOTAL.labels(params["asset"], kind).inc()
        log.warning("queued retrain %s of %s: %s", queued[0], params["asset"], params["reason"])
    return queued


def _recent_health_retrain(engine: Engine, asset: str, since: datetime, family: str) -> bool:
    """Whether a health-triggered retrain covering ``family`` of ``asset`` was queued since
    ``since`` (a retrain without a model trains both default models: it covers both)."""
    params = job_store.params_since(engine, kind="retrain", since=since)
    return any(
        p.get("asset") == asset
        and p.get("trigger") == "health"
        and (p.get("model") is None or _family(str(p["model"])) == family)
        for p in params
    )


def _family(model: str) -> str:
    """``price`` or ``risk`` for a stored model name (an unknown one counts as price)."""
    return "risk" if model in RISK_MODELS else "price"


def _reason_kind(reason: str) -> str:
    """The metric label of a degradation reason."""
    return "coverage" if "coverage" in reason else "live_error"


def _bootstrap(engine: Engine, settings: Settings, now: datetime) -> list[str]:
    """Ingest-then-train (or just train) each tracked asset that has no active model: both
    defaults (risk, then price) without a price model, the risk one alone without a risk one."""
    job_ids: list[str] = []
    for asset in settings.assets:
        if active_version_id(engine, asset) is not None:
            if active_version_id(engine, asset, "risk") is None and has_candles(engine, asset):
                risk = {"asset": asset, "model": settings.default_risk_model}
                job_ids += _submit(engine, settings, "train", risk, now)
            continue
        if has_candles(engine, asset):
            job_ids += _submit(engine, settings, "train", {"asset": asset}, now)
        else:
            params = {"asset": asset, "bootstrap": True, "then_train": True}
            job_ids += _submit(engine, settings, "ingest", params, now)
    return job_ids


_ACTIONS: dict[str, Callable[[Engine, Settings, datetime], list[str]]] = {
    "bootstrap": _bootstrap,
    "refresh": _refresh,
    "health": _health,
    "retrain": _retrain,
}


def list_schedules(engine: Engine, settings: Settings, *, now: datetime) -> list[ScheduleView]:
    """Every schedule with its timing (``GET /api/v1/schedules``); never-run ones as planned."""
    rows = job_store.schedules(engine)
    return [_schedule_view(name, rows.get(name), settings, now) for name in SCHEDULES]


def _schedule_view(
    name: str, row: Schedule | None, settings: Settings, now: datetime
) -> ScheduleView:
    """One schedule as listed."""
    return ScheduleView(
        name=name,
        description=DESCRIPTIONS[name],
        every=_every(name, settings),
        next_run_at=row.next_run_at if row is not None else first_run(name, now, settings),
        last_run_at=row.last_run_at if row is not None else None,
        last_job_id=row.last_job_id if row is not None else None,
    )


def _every(name: str, settings: Settings) -> str:
    """How often ``name`` runs, for people."""
    if name == "refresh":
        minutes = int((settings.refresh_delay % DAY).total_seconds() // 60)
        return f"daily at {minutes // 60:02d}:{minutes % 60:02d} UTC"
    if name == "retrain":
        return f"every {_duration(settings.retrain_every)}"
    if name == "health":
        return f"every {_duration(HEALTH_EVERY)}"
    return "at worker start"


def _duration(value: timedelta) -> str:
    """``7d``, ``6h``, ``45m`` or ``90s``: the largest unit that divides ``value``."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
