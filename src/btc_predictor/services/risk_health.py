"""Live health of the risk forecasts: range error against the naive range and VaR violations
from the scored risk ledger, the adaptive interval level, and the degradation rule that queues
a risk retrain (``risk_degradation``). The same figures feed the ``/metrics`` gauges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from btc_predictor.config import Settings
from btc_predictor.errors import BtcpError
from btc_predictor.forecasting.adaptive_level import applied_level
from btc_predictor.forecasting.metrics import kupiec_pof
from btc_predictor.services import intervals, ledger
from btc_predictor.services.health import LIVE_DAYS
from btc_predictor.services.intervals import VersionIntervals
from btc_predictor.storage import model_store
from btc_predictor.storage import repository as repo
from btc_predictor.storage import risk_stats as store
from btc_predictor.storage.db import read_session
from btc_predictor.storage.risk_ledger import RangeWindowStats

NAIVE_RANGE = "naive-range"  # the baseline series' model label
NOMINAL_LEVEL = 90  # the interval level whose adaptive correction is watched
KUPIEC_SIZE = 0.05


@dataclass(frozen=True, slots=True)
class LiveRange:
    """One horizon's live range record over the window: served risk model(s) vs naive range."""

    n: int
    mae_by_model: dict[str, float]
    naive_mae: float


def live_range(
    engine: Engine, *, asset: str, end: date, days: int = LIVE_DAYS
) -> dict[int, LiveRange]:
    """Per horizon over (end - days, end]: n, range MAE per model kind, naive-range MAE."""
    return summarize_range(ledger.risk_range_window(engine, asset=asset, end=end, days=days))


def summarize_range(rows: Sequence[RangeWindowStats]) -> dict[int, LiveRange]:
    """Group window rows by horizon; the naive MAE is weighted by each model's count."""
    grouped: dict[int, list[RangeWindowStats]] = {}
    for row in rows:
        grouped.setdefault(row.horizon, []).append(row)
    result = {}
    for horizon, group in grouped.items():
        n = sum(r.n for r in group)
        naive = sum(r.naive_mae * r.n for r in group) / n
        result[horizon] = LiveRange(n, {r.model: r.mae for r in group}, naive)
    return result


def kupiec_band(days: int, level: int, size: float = KUPIEC_SIZE) -> tuple[int, int]:
    """The violation counts the Kupiec POF test accepts at ``size`` over ``days`` days.

    For 250 days: VaR 95 accepts 7..19 violations, VaR 99 accepts 1..6 (p ≥ 0.05)."""
    p = 1 - level / 100
    accepted = [
        x
        for x in range(days + 1)
        if (test := kupiec_pof([True] * x + [False] * (days - x), p)) is not None
        and test.pvalue >= size
    ]
    return min(accepted), max(accepted)


def adaptive_level(settings: Settings, engine: Engine, asset: str, horizon: int) -> float | None:
    """The level the active price version's intervals apply for nominal 90% (None: static
    intervals at this horizon, no active version, no σ̂ source, or still in burn-in).

    The one place this figure is computed: the score series serving replays
    (:func:`services.intervals.score_series`: holdout scores, then live ones, up to the
    newest stored day), read through :func:`forecasting.adaptive_level.applied_level`."""
    if settings.intervals != "adaptive":
        return None
    with read_session(engine) as session:
        version = model_store.active_version_id(session=session, asset=asset)
        newest = repo.newest_candles(session=session).get(asset)
        if version is None or newest is None:
            return None
        meta = _version_intervals(session, str(engine.url), version)
        if meta is None or meta.sigma_source is None or horizon in meta.static_horizons:
            return None  # serving is static for this version or horizon
        live = intervals.stored_scores(session, asset, version)
    last_day = newest.ts.date()
    # The replay costs ~35 ms per horizon over 1,200 scores (one core) and its inputs change
    # once a day: keyed by what it reads, a scrape replays only after an ingest.
    newest_score = max((d for _, d, _ in live), default=None)
    key = (str(engine.url), version, horizon, last_day, len(live), newest_score)
    if key not in _LEVELS:
        series = intervals.score_series(meta, live, horizon, last_day)
        _LEVELS[key] = applied_level(series, horizon, NOMINAL_LEVEL) if series.size else None
        while len(_LEVELS) > 64:
            _LEVELS.pop(next(iter(_LEVELS)))
    return _LEVELS[key]


# A version's meta never changes: read once per (database, version).
_METAS: dict[tuple[str, int], VersionIntervals | None] = {}
_LEVELS: dict[tuple[object, ...], float | None] = {}


def _version_intervals(session: Session, database: str, version: int) -> VersionIntervals | None:
    """What the version's meta says about its intervals (None: its artifacts are unusable)."""
    key = (database, version)
    if key not in _METAS:
        try:
            meta = model_store.load_artifacts(session=session, version_id=version).meta
            _METAS[key] = VersionIntervals.from_meta(meta)
        except BtcpError:
            _METAS[key] = None
        while len(_METAS) > 64:
            _METAS.pop(next(iter(_METAS)))
    return _METAS[key]


def unhealthy_range(live: LiveRange | None, settings: Settings) -> str | None:
    """Why one day's next-day range record is unhealthy (None: healthy or too few forecasts);
    the price model's margin convention: MAE > naive MAE × (1 + margin)."""
    if live is None or live.n < settings.alert_min_scored:
        return None
    models = {m: v for m, v in live.mae_by_model.items() if m != NAIVE_RANGE}
    if not models:
        return None  # the baseline is never compared with itself
    mae = sum(models.values()) / len(models)
    if mae > live.naive_mae * (1 + settings.alert_live_error_margin):
        return (
            f"live range MAE {mae:.2f} pp is worse than naive-range's {live.naive_mae:.2f} pp "
            f"by more than {settings.alert_live_error_margin:.0%} over {LIVE_DAYS} days"
        )
    return None


def risk_degradation(settings: Settings, engine: Engine, asset: str, today: date) -> str | None:
    """Why the risk model of ``asset`` needs retraining: its next-day range record is
    unhealthy on each of the last ``degraded_days`` days."""
    reasons = []
    for back in range(settings.degraded_days):
        live = live_range(engine, asset=asset, end=today - timedelta(days=back))
        reason = unhealthy_range(live.get(1), settings)
        if reason is None:
            return None
        reasons.append(reason)
    return f"{reasons[0]} (for {settings.degraded_days} days)"


@dataclass(frozen=True, slots=True)
class LastScored:
    """The newest scored next-day risk forecast beside what happened (None: not served)."""

    range_pct: dict[str, float]  # forecast, lower, upper, naive, realised
    var_loss_pct: dict[str, float]  # var_95, var_99, realised_loss


def last_scored(engine: Engine, asset: str) -> LastScored | None:
    """The newest scored next-day risk forecast of ``asset`` and its outcome."""
    with read_session(engine) as session:
        row = store.newest_scored(session=session, asset=asset)
        if row is None or row.actual_range_pct is None:
            return None
        ranges = {
            "forecast": row.range_pct,
            "lower": row.range_lower_pct,
            "upper": row.range_upper_pct,
            "naive": row.naive_range_pct,
            "realised": row.actual_range_pct,
        }
        losses = {"var_95": row.var_95, "var_99": row.var_99, "realised_loss": row.loss_pct}
    return LastScored(
        {k: v for k, v in ranges.items() if v is not None},
        {k: v for k, v in losses.items() if v is not None},
    )


def active_risk_model(engine: Engine, asset: str) -> str | None:
    """The model kind of the active risk version of ``asset`` (None: no active one)."""
    with read_session(engine) as session:
        version = model_store.active_version_id(session=session, asset=asset, family="risk")
        if version is None:
            return None
        return model_store.get_version(session=session, version_id=version).model
