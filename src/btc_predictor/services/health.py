"""The forecast-health rule: live error against naive and interval coverage from the scored
ledger, and the degradation rule the worker uses to queue a retrain (``degradation``).
The same figures feed the ``/metrics`` gauges (``api.metrics``) and ``/monitoring``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import Engine

from btc_predictor.config import Settings
from btc_predictor.services import ledger
from btc_predictor.storage.ledger import WindowStats

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
