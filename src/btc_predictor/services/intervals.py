"""Adaptive interval state (issue 16): recorded and scored at ingest, replayed for serving.

Each ingest records the active price version's forecasts for every horizon, with σ̂ from the
risk version its meta names (``sigma_source``), and scores the forecasts whose target day has
closed: ``|log(actual / forecast)| / σ̂``. Serving replays a version's stored scores — the
holdout's normalised scores from its meta first (so a fresh install is adaptive at once), the
live ones after them, by origin day — into the quantile per level and horizon
(:func:`btc_predictor.forecasting.adaptive.quantile_path`). None of it depends on traffic.

σ̂ of a forecast made on day t always comes from the same candles: the ``RISK_CONTEXT`` days
ending at t, so the σ̂ recorded at ingest and the one served for the same origin are equal.

Cost (real BTC, drift + har, ~580 holdout scores per horizon, 30 horizons, 87 grid levels,
2 shared cores at load 6): a model run with its replay takes ~0.5 s against ~0.01 s static.
It is paid once per (version, data) on a cache miss; cached answers do no replay or I/O.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from btc_predictor.errors import ArtifactError, BtcpError
from btc_predictor.forecasting import adaptive
from btc_predictor.forecasting.base import FloatArray
from btc_predictor.forecasting.onnx_runtime import OnnxModel
from btc_predictor.forecasting.paths import SERVED_GRID, AdaptiveWidths
from btc_predictor.forecasting.registry import get_risk_model_class
from btc_predictor.forecasting.risk.base import RiskForecaster
from btc_predictor.services.risk_training import risk_data
from btc_predictor.sources.base import DAY, Candle
from btc_predictor.storage import interval_scores as scores_store
from btc_predictor.storage import model_store as store
from btc_predictor.storage import repository as repo
from btc_predictor.storage.db import write_session
from btc_predictor.storage.tables import IntervalScoreRow

log = logging.getLogger(__name__)
# Candles a σ̂ forecast reads, ending at its origin: EWMA(0.94) and GARCH forget within it
# (0.94^400 ≈ 2e-11), har needs 22.
RISK_CONTEXT = 400
# Origins one ingest records at most: the days missed since the previous ingest.
BACKFILL_DAYS = 30


@dataclass(frozen=True, slots=True)
class VersionIntervals:
    """What a price version's meta says about its adaptive intervals."""

    sigma_source: tuple[str, int] | None  # (risk model kind, risk version)
    first_origin: date | None  # the holdout's first origin day
    holdout: tuple[FloatArray, ...]  # normalised holdout scores per horizon (NaN: unknown)
    # Horizons whose static bands beat σ̂-scaled ones over the holdout: served static.
    static_horizons: frozenset[int] = frozenset()

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> VersionIntervals:
        """Parsed from meta.json (versions trained before issue 16 have neither entry)."""
        source = meta.get("sigma_source")
        pinned = None
        if isinstance(source, dict) and isinstance(source.get("version"), int):
            pinned = (str(source.get("model")), int(source["version"]))
        scores = meta.get("interval_scores")
        if not isinstance(scores, dict):
            return cls(pinned, None, ())
        try:
            first = date.fromisoformat(str(scores["first_origin"]))
            per_horizon = tuple(
                np.array([math.nan if v is None else v for v in h], dtype=np.float64)
                for h in scores["per_horizon"]
            )
            plain = frozenset(int(h) for h in scores.get("static_horizons", ()))
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"meta.json has unusable interval_scores ({exc})") from None
        return cls(pinned, first, per_horizon, plain)


def load_risk_model(session: Session, version_id: int) -> RiskForecaster:
    """A stored risk version, verified and rebuilt (numpy only)."""
    from safetensors.numpy import load

    artifacts = store.load_artifacts(session=session, version_id=version_id)
    meta = artifacts.meta
    try:
        cls = get_risk_model_class(str(meta["model"]))
        return cls.from_artifacts(meta["config"], load(artifacts.weights))
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"risk version {version_id} cannot be rebuilt: {exc}") from None


def sigma_now(model: RiskForecaster, candles: Sequence[Candle]) -> FloatArray:
    """σ̂ of the h-day log return for h = 1..max from the last of ``candles`` (consecutive
    days), reading the ``RISK_CONTEXT`` days that end there."""
    window = list(candles[-RISK_CONTEXT:])
    ohlc = risk_data("", window).ohlc
    forecast = model.forecast(ohlc, model.max_horizon)
    return adaptive.sigma_paths(forecast.volatility**2)


# --- ingest: record and score ---------------------------------------------------------------


def record_and_score(engine: Engine, asset: str, *, now: datetime) -> dict[str, Any]:
    """After an ingest committed: record the active price version's forecasts for the days
    not recorded yet, and score every recorded forecast whose target has closed, in one
    transaction of its own. A model problem is logged and reported, never raised."""
    try:
        with write_session(engine) as session:
            recorded = _record(session, asset, now)
            scored = _score(session, asset, now)
        return {"recorded": recorded, "scored": scored}
    except Exception as exc:  # the candles are stored: this must never fail the ingest
        log.exception("recording interval scores of %s failed", asset)
        return {"error": f"{type(exc).__name__}: {exc}"}


def _record(session: Session, asset: str, now: datetime) -> int:
    """Forecast rows of the active price version for its unrecorded origins; how many new."""
    version_id = store.active_version_id(session=session, asset=asset)
    if version_id is None:
        return 0
    version = store.get_version(session=session, version_id=version_id)
    artifacts = store.load_artifacts(session=session, version_id=version_id)
    runner = OnnxModel(artifacts.require_onnx(version_id), artifacts.meta)
    source = VersionIntervals.from_meta(artifacts.meta).sigma_source
    risk = None if source is None else _risk_or_none(session, source[1])
    need = max(runner.context_length, RISK_CONTEXT) + BACKFILL_DAYS
    candles = consecutive_tail(repo.load_candles(session=session, asset=asset, limit=need))
    last = scores_store.last_origin(session=session, asset=asset, price_version=version_id)
    rows = []
    for i in range(runner.context_length - 1, len(candles)):
        day = candles[i].ts.date()
        if day < version.train_end or (last is not None and day <= last):
            continue
        if day < candles[-1].ts.date() - timedelta(days=BACKFILL_DAYS):
            continue
        rows += _origin_rows(asset, version_id, source, runner, risk, candles[: i + 1], now)
    return scores_store.insert_forecasts(session=session, rows=rows) if rows else 0


def _risk_or_none(session: Session, version_id: int) -> RiskForecaster | None:
    """The sigma_source risk version, or None (logged) when it is pruned or damaged."""
    try:
        return load_risk_model(session, version_id)
    except BtcpError as exc:
        log.warning("risk version %d cannot give σ̂: %s", version_id, exc)
        return None


def consecutive_tail(candles: list[Candle]) -> list[Candle]:
    """The newest run of consecutive days (forecasts need gap-free context)."""
    start = 0
    for i in range(1, len(candles)):
        if candles[i].ts - candles[i - 1].ts != DAY:
            start = i
    return candles[start:]


def _origin_rows(
    asset: str,
    version_id: int,
    source: tuple[str, int] | None,
    runner: OnnxModel,
    risk: RiskForecaster | None,
    candles: list[Candle],
    now: datetime,
) -> list[dict[str, Any]]:
    """One row per horizon for the forecast made on the last of ``candles``."""
    closes = np.array([c.close for c in candles], dtype=np.float64)
    path = runner.run(closes)
    sigma = np.full(path.max_horizon, np.nan)
    if risk is not None and len(candles) >= risk.min_history:
        got = sigma_now(risk, candles)[: path.max_horizon]
        sigma[: got.size] = got
    origin = candles[-1].ts.date()
    finite = np.isfinite(path.values) & (path.values > 0)
    return [
        {
            "asset": asset,
            "price_version": version_id,
            "risk_version": None if source is None else source[1],
            "horizon": h,
            "origin_date": origin,
            "target_date": origin + timedelta(days=h),
            "last_close": path.last_close,
            "forecast": float(path.values[h - 1]),
            "sigma": float(sigma[h - 1]) if math.isfinite(sigma[h - 1]) else None,
            "created_at": now,
        }
        for h in range(1, path.max_horizon + 1)
        if finite[h - 1]  # a forecast that cannot be served cannot be scored either
    ]


def _score(session: Session, asset: str, now: datetime) -> int:
    """Score recorded forecasts whose target day's close is stored; how many."""
    newest = repo.newest_candles(session=session).get(asset)
    if newest is None:
        return 0
    pending = scores_store.unscored(session=session, asset=asset, until=newest.ts.date())
    closes = repo.closes_on(session=session, asset=asset, days={r.target_date for r in pending})
    return sum(_score_row(row, closes.get(row.target_date), now) for row in pending)


def _score_row(row: IntervalScoreRow, actual: float | None, now: datetime) -> bool:
    """Fill in a recorded forecast's outcome and score (null without σ̂); whether scored."""
    if actual is None:
        return False
    row.actual, row.scored_at = actual, now
    good = row.sigma is not None and row.sigma > 0 and row.forecast > 0 and actual > 0
    row.score = abs(math.log(actual / row.forecast)) / row.sigma if good else None  # type: ignore[operator]
    return True


# --- serving: the replay ---------------------------------------------------------------------


def stored_scores(session: Session, asset: str, version_id: int) -> list[tuple[int, date, float]]:
    """The live scores of (asset, version), for :func:`score_series`."""
    return scores_store.scores(session=session, asset=asset, price_version=version_id)


def score_series(
    meta: VersionIntervals, live: Sequence[tuple[int, date, float]], h: int, last_day: date
) -> FloatArray:
    """Horizon h's scores per consecutive origin day, holdout then live (NaN where none),
    ending at origin ``last_day − h`` (the last whose target has closed)."""
    mine = [(d, s) for hh, d, s in live if hh == h]
    starts = [d for d, _ in mine] + ([meta.first_origin] if meta.first_origin else [])
    end = last_day - timedelta(days=h)
    if not starts or end < min(starts):
        return np.empty(0)
    first = min(starts)
    out = np.full((end - first).days + 1, np.nan)
    if meta.first_origin is not None and h <= len(meta.holdout):
        held = meta.holdout[h - 1]
        at = (meta.first_origin - first).days
        take = held[: max(0, min(held.size, out.size - at))]
        out[at : at + take.size] = take
    for day, score in mine:
        if first <= day <= end:
            out[(day - first).days] = score
    return out


def adaptive_widths(
    meta: VersionIntervals,
    live: Sequence[tuple[int, date, float]],
    sigma: FloatArray,
    horizons: int,
    last_day: date,
) -> AdaptiveWidths | str:
    """The replayed quantiles on the served grid per horizon and σ̂ now, or why not (then
    serving falls back to static). Horizons the version serves static are not replayed."""
    quantiles = np.full((horizons, SERVED_GRID.size), np.nan)
    for h in range(1, horizons + 1):
        if h in meta.static_horizons:
            continue
        if h > sigma.size or not math.isfinite(sigma[h - 1]):
            return f"the risk version has no σ̂ at horizon {h}"
        series = score_series(meta, live, h, last_day)
        row = adaptive.quantile_path(series, SERVED_GRID, h)[-1] if series.size else None
        if row is None or np.isnan(row[0]):
            return f"too few interval scores at horizon {h}"
        quantiles[h - 1] = row
    return AdaptiveWidths(quantiles, sigma[:horizons].copy())
