"""The forecast-health rule: live error against naive and interval coverage from the scored
ledger, and the degradation rule the worker uses to queue a retrain (``degradation``).
The same figures feed the ``/metrics`` gauges (``api.metrics``) and ``/monitoring``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from btc_predictor.config import Settings
from btc_predictor.services import ledger
from btc_predictor.sources.base import data_age
from btc_predictor.storage import model_store as store
from btc_predictor.storage import repository as repo
from btc_predictor.storage.db import current_revision, head_revision, read_session
from btc_predictor.storage.ledger import WindowStats
from btc_predictor.storage.repository import LastRun

LIVE_DAYS = 30  # the rolling window of live error and coverage


def thresholds(settings: Settings) -> dict[str, float]:
    """The alert thresholds users tune, as exported by ``bitcoin_lstm_alert_threshold``."""
    return {
        "live_error_margin": settings.alert_live_error_margin,
        "coverage_min": settings.alert_coverage_min,
        "coverage_max": settings.alert_coverage_max,
        "min_scored_forecasts": float(settings.alert_min_scored),
        "max_data_age_seconds": settings.max_data_age.total_seconds(),
        "latency_p95_seconds": settings.alert_latency_p95.total_seconds(),
        "error_ratio": settings.alert_error_ratio,
    }


@dataclass(frozen=True, slots=True)
class Live:
    """One horizon's live record over the window: served model(s) vs naive."""

    n: int
    mae_by_model: dict[str, float]
    naive_mae: float
    coverage: float


def summarize(rows: Sequence[WindowStats]) -> dict[int, Live]:
    """Per-horizon live figures from :func:`ledger.live_window` rows (weighted by count)."""
    grouped: dict[int, list[WindowStats]] = {}
    for row in rows:
        grouped.setdefault(row.horizon, []).append(row)
    result = {}
    for horizon, group in grouped.items():
        n = sum(r.n for r in group)
        result[horizon] = Live(
            n=n,
            mae_by_model={r.model: r.mae for r in group},
            naive_mae=sum(r.naive_mae * r.n for r in group) / n,
            coverage=sum(r.coverage * r.n for r in group) / n,
        )
    return result


def unhealthy(live: Live | None, settings: Settings) -> str | None:
    """Why one day's next-day record is unhealthy (None: healthy or too few forecasts)."""
    if live is None or live.n < settings.alert_min_scored:
        return None
    mae = sum(live.mae_by_model.values()) / len(live.mae_by_model)
    if mae > live.naive_mae * (1 + settings.alert_live_error_margin):
        return (
            f"live MAE {mae:.2f} is worse than naive's {live.naive_mae:.2f} by more than "
            f"{settings.alert_live_error_margin:.0%} over {LIVE_DAYS} days"
        )
    if not settings.alert_coverage_min <= live.coverage <= settings.alert_coverage_max:
        return (
            f"90% interval coverage {live.coverage:.1%} is outside "
            f"{settings.alert_coverage_min:.0%}..{settings.alert_coverage_max:.0%}"
        )
    return None


def degradation(settings: Settings, engine: Engine, asset: str, today: date) -> str | None:
    """Why ``asset`` needs retraining: unhealthy on each of the last ``degraded_days`` days."""
    reasons = []
    for back in range(settings.degraded_days):
        end = today - timedelta(days=back)
        live = summarize(ledger.live_window(engine, asset=asset, end=end, days=LIVE_DAYS))
        reason = unhealthy(live.get(1), settings)
        if reason is None:
            return None
        reasons.append(reason)
    return f"{reasons[0]} (for {settings.degraded_days} days)"


# --- the /health rule (DESIGN §7; issue 12) ---------------------------------------------------
# ``unhealthy`` (HTTP 503) only when the database does not answer within 2 s; ``degraded`` when
# any component gives a reason; else ``healthy``. Each component reports its own view and its
# reasons, so a new cause (the worker's, a cross-check's) is one more Component in the list.


UNREACHABLE = "the database did not answer within 2 s"


@dataclass(frozen=True, slots=True)
class Reason:
    """One cause of ``degraded``: the component, the asset (None: not asset-bound), why."""

    component: str
    asset: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class Component:
    """What /health shows of one component, and the reasons it gives for ``degraded``."""

    view: dict[str, Any]
    reasons: tuple[Reason, ...] = ()


@dataclass(frozen=True, slots=True)
class AssetRecord:
    """What the database says about one tracked asset."""

    asset: str
    active_version: int | None
    last_candle: datetime | None
    last_run: LastRun | None


@dataclass(frozen=True, slots=True)
class DatabaseRecord:
    """Everything /health reads from the database, in one unit of work."""

    at_head: bool
    assets: tuple[AssetRecord, ...]


def read_database(settings: Settings, engine: Engine) -> DatabaseRecord:
    """Migration state and each tracked asset's active version, newest day and last ingest
    run, over one connection (the caller's probe engine bounds it to 2 s)."""
    with read_session(engine) as session:
        at_head = current_revision(session.connection()) == head_revision()
        newest = repo.newest_candles(session=session)
        runs = repo.last_ingest_runs(session=session, assets=settings.assets)
        assets = tuple(
            AssetRecord(
                asset,
                store.active_version_id(session=session, asset=asset),
                newest[asset].ts if asset in newest else None,
                runs.get(asset),
            )
            for asset in settings.assets
        )
    return DatabaseRecord(at_head, assets)


def database_component(record: DatabaseRecord | None) -> Component:
    """The database: answering and migrated (None: it did not answer)."""
    if record is None:
        return Component({"status": "unreachable"}, (Reason("database", None, UNREACHABLE),))
    if not record.at_head:
        detail = "migrations are not at head: run `btc-predictor db upgrade`"
        return Component({"status": "migrations pending"}, (Reason("database", None, detail),))
    return Component({"status": "ok"})


def model_component(record: DatabaseRecord, load_error: Callable[[int], str | None]) -> Component:
    """Every tracked asset has an active price model, and it loads."""
    reasons: list[Reason] = []
    for item in record.assets:
        version = item.active_version
        if version is None:
            detail = f"no active price model: run `btc-predictor train --asset {item.asset}`"
            reasons.append(Reason("model_store", item.asset, detail))
        elif (why := load_error(version)) is not None:
            detail = f"active version {version} cannot be loaded: {why}"
            reasons.append(Reason("model_store", item.asset, detail))
    view = {
        "status": "ok" if not reasons else "degraded",
        "active_versions": {item.asset: item.active_version for item in record.assets},
    }
    return Component(view, tuple(reasons))


def data_component(settings: Settings, record: DatabaseRecord, now: datetime) -> Component:
    """Every tracked asset has fresh data, and its last refresh did not fail."""
    view: dict[str, Any] = {}
    reasons: list[Reason] = []
    for item in record.assets:
        view[item.asset], found = _asset_data(settings, item, now)
        reasons += found
    return Component(view, tuple(reasons))


def _asset_data(
    settings: Settings, item: AssetRecord, now: datetime
) -> tuple[dict[str, Any], list[Reason]]:
    """One asset's data view and its reasons (none stored, stale, last refresh failed)."""
    reasons: list[Reason] = []
    if item.last_candle is None:
        view: dict[str, Any] = {"status": "no data"}
        detail = f"no data stored: run `btc-predictor ingest --asset {item.asset}`"
        reasons.append(Reason("data", item.asset, detail))
    else:
        age = data_age(item.last_candle, now)
        stale = settings.is_stale(age)
        last_day = item.last_candle.date().isoformat()
        view = {"status": "stale" if stale else "ok", "last_date": last_day, "age_seconds": age}
        if stale:
            days, limit = age / 86400, settings.max_data_age.total_seconds() / 86400
            detail = f"data is stale: newest day {last_day}, {days:.1f} days old (limit {limit:g})"
            reasons.append(Reason("data", item.asset, detail))
    if item.last_run is not None:
        run = item.last_run
        view["last_refresh"] = {"status": run.status, "at": run.finished_at.isoformat()}
        if run.status == "failed":
            detail = f"the last refresh failed at {run.finished_at.isoformat()} ({run.requested})"
            reasons.append(Reason("data", item.asset, detail))
    return view, reasons


def verdict(
    database_answers: bool, components: Mapping[str, Component]
) -> tuple[str, list[Reason]]:
    """The overall status and every reason, in component order."""
    reasons = [reason for component in components.values() for reason in component.reasons]
    if not database_answers:
        return "unhealthy", reasons
    return ("degraded" if reasons else "healthy"), reasons
