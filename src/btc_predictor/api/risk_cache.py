"""A risk model run as an API process serves it: its JSON per level and its ledger progress.

The risk twin of ``state.CachedRun``: one run per (risk version, newest candle, data mark,
active price version) answers every horizon and level; each level's points are dumped to
JSON once, so a cached answer is a dict built around a list slice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from btc_predictor.config import Settings
from btc_predictor.services import ledger
from btc_predictor.services.risk import RiskRun
from btc_predictor.sources.base import data_age


class CachedRiskRun:
    """A risk run's JSON per level, what it depends on, and how much of it the ledger has."""

    __slots__ = ("data_mark", "head", "last_ts", "levels", "price_version", "recorded", "run")

    def __init__(self, run: RiskRun, settings: Settings) -> None:
        self.run = run
        self.last_ts, self.data_mark = run.last_ts, run.data_mark
        self.price_version = run.price_version  # the active price version it was run with
        dumped = run.shape(settings, [], ledger.LEDGER_LEVEL, now=run.last_ts).model_dump(
            mode="json"
        )
        self.head = tuple(
            dumped[k]
            for k in ("asset", "model", "model_version", "as_of", "last_close", "last_date")
        )
        self.levels: dict[int, list[dict[str, Any]]] = {}
        self.recorded = 0  # horizons 1..recorded are in the risk ledger or queued for it

    def payload(
        self, settings: Settings, horizon: int, level: int, now: datetime
    ) -> dict[str, Any]:
        """The risk object of (horizon, level), exactly ``Risk.model_dump(mode="json")``."""
        points = self.levels.get(level)
        if points is None:
            points = self._points(level)
        if horizon > len(points):  # refused as a fresh computation refuses it
            points = [p.model_dump(mode="json") for p in self.run.points(horizon, level)]
        asset, model, version, as_of, last_close, last_date = self.head
        age = data_age(self.last_ts, now)
        return {
            "asset": asset,
            "model": model,
            "model_version": version,
            "level": level,
            "as_of": as_of,
            "last_close": last_close,
            "last_date": last_date,
            "data_age_seconds": age,
            "stale": settings.is_stale(age),
            "points": points[:horizon],
        }

    def _points(self, level: int) -> list[dict[str, Any]]:
        """Every horizon servable at ``level`` as JSON (computed once per level)."""
        usable = self.run.path.usable(level)
        points = [p.model_dump(mode="json") for p in self.run.points(usable, level)]
        self.levels[level] = points
        return points
