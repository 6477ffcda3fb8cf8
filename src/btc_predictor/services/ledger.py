"""The forecast ledgers: every served forecast (price and risk), recorded once and scored when
its day closes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from btc_predictor.forecasting import metrics
from btc_predictor.shapes.results import Forecast, LedgerEntry
from btc_predictor.shapes.risk_results import Risk
from btc_predictor.sources.base import DAY, Candle
from btc_predictor.storage import ledger as store
from btc_predictor.storage import repository as repo
from btc_predictor.storage import risk_ledger as risk_store
from btc_predictor.storage.db import read_session, write_session
from btc_predictor.storage.ledger import WindowStats
from btc_predictor.storage.risk_ledger import RangeWindowStats
from btc_predictor.storage.tables import PredictionRow, RiskPredictionRow

LEDGER_LEVEL = 90  # every ledger entry carries its 90% interval, whatever level was served
_CHUNK = 500


def record_forecast(engine: Engine, forecast: Forecast, *, now: datetime) -> int:
    """Record a forecast's points (at the 90% level); repeats are ignored."""
    return record_rows(engine, entry_rows(forecast, now=now))


def entry_rows(forecast: Forecast, *, now: datetime) -> list[dict[str, Any]]:
    """The ledger rows of a level-90 forecast's points (to record now or in a batch)."""
    if forecast.level != LEDGER_LEVEL:
        raise ValueError("the ledger records 90% intervals; pass a level-90 forecast")
    return [
        {
            "asset": forecast.asset,
            "model": forecast.model,
            "model_version": forecast.model_version,
            "as_of": forecast.as_of,
            "horizon": p.horizon,
            "target_date": p.target_date,
            "forecast": p.value,
            "lower": p.lower,
            "upper": p.upper,
            "level": LEDGER_LEVEL,
            "naive": p.naive,
            "created_at": now,
        }
        for p in forecast.points
    ]


def record_rows(engine: Engine, rows: list[dict[str, Any]]) -> int:
    """Insert ledger rows in one transaction, skipping ones already recorded; how many new."""
    with write_session(engine) as session:
        # Chunks keep each statement under SQLite's and psycopg's bound-parameter limits.
        chunks = range(0, len(rows), _CHUNK)
        return sum(store.insert_entries(session=session, rows=rows[i : i + _CHUNK]) for i in chunks)


def score_ledger(engine: Engine, asset: str, *, now: datetime) -> int:
    """Score unscored entries whose target day's candle is stored; returns how many."""
    with write_session(engine) as session:
        pending = store.unscored(session=session, asset=asset)
        days = {entry.target_date for entry in pending}
        closes = repo.closes_on(session=session, asset=asset, days=days)
        return sum(_score(entry, closes.get(entry.target_date), now) for entry in pending)


def _score(entry: PredictionRow, actual: float | None, now: datetime) -> bool:
    """Fill in an entry's outcome once its day's close is known; whether it was scored."""
    if actual is None:
        return False
    entry.actual, entry.scored_at = actual, now
    entry.abs_error = abs(entry.forecast - actual)
    entry.naive_abs_error = abs(entry.naive - actual)
    entry.inside = entry.lower <= actual <= entry.upper
    return True


def entry_view(row: PredictionRow) -> LedgerEntry:
    """One ledger entry as served by ``GET /api/v1/predictions``."""
    return LedgerEntry.model_validate(row, from_attributes=True)


def list_predictions(engine: Engine, *, asset: str, limit: int = 100) -> list[LedgerEntry]:
    """Newest ledger entries of ``asset`` (by target day, then horizon)."""
    with read_session(engine) as session:
        rows = store.newest_entries(session=session, asset=asset, limit=limit)
    return [entry_view(r) for r in rows]


def live_window(engine: Engine, *, asset: str, end: date, days: int = 30) -> list[WindowStats]:
    """Per horizon and model kind over (end - days, end]: n, MAE, naive MAE, coverage."""
    with read_session(engine) as session:
        rows = store.window_stats(
            session=session, asset=asset, after=end - timedelta(days=days), until=end
        )
    return rows


# --- the risk ledger (risk_predictions): served risk forecasts, scored at ingest -------------
#
# Read API for monitoring (issue 17 items 3–5): ``risk_range_window`` (live range error vs
# naive-range per horizon and risk model), ``var_violations`` (VaR violation ratio per level
# over the newest scored days), ``direction_window`` (p_up against went_up) and
# ``risk_scored_count``; ``risk_live`` reads them all in one session.

VAR_LEVELS = (95, 99)
VAR_DAYS = 250  # the Basel/Kupiec backtest window: the newest 250 scored next-day VaRs


@dataclass(frozen=True, slots=True)
class VarStats:
    """VaR violations at one level over the newest scored next-day VaR forecasts."""

    level: int  # 95 or 99
    n: int  # scored VaR forecasts (one per target day and price version)
    violations: int  # days whose loss exceeded the VaR
    ratio: float | None  # violations / n (None: nothing scored); expected 1 − level/100


@dataclass(frozen=True, slots=True)
class DirectionStats:
    """``p_up`` served with price forecasts against whether the close went up."""

    horizon: int
    n: int
    brier: float  # mean (p_up − went_up)²; 0.25 is always saying 0.5
    up_rate: float  # share of days that went up
    mean_p_up: float


@dataclass(frozen=True, slots=True)
class RiskLive:
    """Everything monitoring reads from the risk ledger of one asset."""

    asset: str
    ranges: list[RangeWindowStats]  # per (horizon, model) over the window
    var: list[VarStats]  # per level, over the newest VAR_DAYS scored days
    direction: list[DirectionStats]  # per horizon over the window
    scored: int  # scored risk entries, all time


def risk_entry_rows(
    risk: Risk,
    *,
    price_version: int | None,
    p_up: Sequence[float | None],
    now: datetime,
) -> list[dict[str, Any]]:
    """Risk ledger rows of a level-90 risk forecast's points; ``p_up[i]`` belongs to point i
    (from the price version that gave its VaR; None where there was none)."""
    if risk.level != LEDGER_LEVEL:
        raise ValueError("the risk ledger records 90% range intervals; pass a level-90 forecast")
    return [
        {
            "asset": risk.asset,
            "model": risk.model,
            "model_version": risk.model_version,
            "price_version": price_version,
            "as_of": risk.as_of,
            "horizon": p.horizon,
            "target_date": p.target_date,
            "last_close": risk.last_close,
            "level": LEDGER_LEVEL,
            "volatility": p.volatility,
            "range_pct": p.range_pct,
            "range_lower_pct": p.range_lower_pct,
            "range_upper_pct": p.range_upper_pct,
            "naive_range_pct": p.naive_range_pct,
            "var_95": p.var_95,
            "var_99": p.var_99,
            "p_up": p_up[i] if i < len(p_up) else None,
            "created_at": now,
        }
        for i, p in enumerate(risk.points)
    ]


def record_risk_rows(engine: Engine, rows: list[dict[str, Any]]) -> int:
    """Insert risk ledger rows in one transaction, skipping ones already recorded."""
    with write_session(engine) as session:
        chunks = range(0, len(rows), _CHUNK)
        return sum(
            risk_store.insert_entries(session=session, rows=rows[i : i + _CHUNK]) for i in chunks
        )


def score_risk_ledger(engine: Engine, asset: str, *, now: datetime) -> int:
    """Score unscored risk entries whose target day and the day before are stored."""
    with write_session(engine) as session:
        pending = risk_store.unscored(session=session, asset=asset)
        days = {e.target_date for e in pending} | {e.target_date - DAY for e in pending}
        candles = repo.candles_on(session=session, asset=asset, days=days)
        return sum(
            _score_risk(e, candles.get(e.target_date), candles.get(e.target_date - DAY), now)
            for e in pending
        )


def _score_risk(
    entry: RiskPredictionRow, target: Candle | None, before: Candle | None, now: datetime
) -> bool:
    """Fill in a risk entry's outcome once its day (and the previous close) is stored."""
    if target is None or before is None:
        return False
    actual = float(metrics.range_pct([target.high], [target.low], [before.close])[0])
    entry.actual_range_pct, entry.scored_at = actual, now
    entry.abs_error = abs(entry.range_pct - actual)
    entry.naive_abs_error = abs(entry.naive_range_pct - actual)
    lower, upper = entry.range_lower_pct, entry.range_upper_pct
    entry.inside = None if lower is None or upper is None else lower <= actual <= upper
    # VaR is a loss in % of the last close the forecast knew (a gain is a negative loss).
    loss = (1.0 - target.close / entry.last_close) * 100.0
    entry.loss_pct = loss
    entry.var_95_violated = None if entry.var_95 is None else loss > entry.var_95
    entry.var_99_violated = None if entry.var_99 is None else loss > entry.var_99
    entry.went_up = target.close > entry.last_close
    return True


def risk_range_window(
    engine: Engine, *, asset: str, end: date, days: int = 30
) -> list[RangeWindowStats]:
    """Per horizon and risk model over (end − days, end]: n, range MAE, naive MAE, coverage."""
    with read_session(engine) as session:
        return _ranges(session, asset, end, days)


def var_violations(
    engine: Engine, *, asset: str, last: int = VAR_DAYS, horizon: int = 1
) -> list[VarStats]:
    """VaR 95 and 99 violations over the newest ``last`` scored VaR forecasts of ``horizon``
    (next-day by default: longer horizons overlap, so their violations cluster)."""
    with read_session(engine) as session:
        return _var(session, asset, last, horizon)


def direction_window(
    engine: Engine, *, asset: str, end: date, days: int = 30
) -> list[DirectionStats]:
    """Per horizon over (end − days, end]: ``p_up`` Brier score, up rate and mean p_up."""
    with read_session(engine) as session:
        return _direction(session, asset, end, days)


def risk_scored_count(engine: Engine, *, asset: str) -> int:
    """Scored risk entries of ``asset``."""
    with read_session(engine) as session:
        return risk_store.scored_count(session=session, asset=asset)


def risk_live(
    engine: Engine, *, asset: str, end: date, days: int = 30, var_last: int = VAR_DAYS
) -> RiskLive:
    """Every live risk statistic of ``asset`` in one read session (what /metrics reads)."""
    with read_session(engine) as session:
        return RiskLive(
            asset=asset,
            ranges=_ranges(session, asset, end, days),
            var=_var(session, asset, var_last, 1),
            direction=_direction(session, asset, end, days),
            scored=risk_store.scored_count(session=session, asset=asset),
        )


def list_risk_predictions(
    engine: Engine, *, asset: str, limit: int = 100
) -> list[RiskPredictionRow]:
    """Newest risk ledger rows of ``asset`` (detached: read their columns only)."""
    with read_session(engine) as session:
        rows = risk_store.newest_entries(session=session, asset=asset, limit=limit)
        session.expunge_all()
    return rows


def _ranges(session: Session, asset: str, end: date, days: int) -> list[RangeWindowStats]:
    """Range window statistics inside an open session."""
    after = end - timedelta(days=days)
    return risk_store.range_window_stats(session=session, asset=asset, after=after, until=end)


def _var(session: Session, asset: str, last: int, horizon: int) -> list[VarStats]:
    """VaR statistics per level inside an open session."""
    seen = risk_store.var_observations(session=session, asset=asset, horizon=horizon, limit=last)
    found = []
    for level, flags in (
        (95, [o.var_95_violated for o in seen]),
        (99, [o.var_99_violated for o in seen]),
    ):
        known = [f for f in flags if f is not None]
        hits = sum(known)
        found.append(VarStats(level, len(known), hits, hits / len(known) if known else None))
    return found


def _direction(session: Session, asset: str, end: date, days: int) -> list[DirectionStats]:
    """p_up statistics per horizon inside an open session."""
    after = end - timedelta(days=days)
    seen = risk_store.direction_observations(session=session, asset=asset, after=after, until=end)
    by_h: dict[int, list[tuple[float, bool]]] = {}
    for o in seen:
        by_h.setdefault(o.horizon, []).append((o.p_up, o.went_up))
    return [
        DirectionStats(
            horizon=h,
            n=len(pairs),
            brier=sum((p - up) ** 2 for p, up in pairs) / len(pairs),
            up_rate=sum(up for _, up in pairs) / len(pairs),
            mean_p_up=sum(p for p, _ in pairs) / len(pairs),
        )
        for h, pairs in sorted(by_h.items())
    ]
