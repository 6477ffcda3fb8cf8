"""Model runs as an API process serves them, and the LRU of loaded versions that holds them.

A forecast depends only on (asset, version, data) and the request's (horizon, level). One
model run per (version, newest candle, data mark) gives the whole path, and every horizon and
level derives from it (``services.forecast.ModelRun``); a risk run likewise, per (risk
version, newest candle, data mark, active price version). Each level's points are dumped to
JSON once, so a cached answer is a dict built around a list slice. Versions and their runs
share one LRU of ``BTCP_MAX_LOADED_MODELS`` entries.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from btc_predictor.config import Settings
from btc_predictor.services import ledger
from btc_predictor.services.forecast import AssetState, LoadedVersion, ModelRun
from btc_predictor.services.risk import LoadedRisk, RiskRun
from btc_predictor.shapes.requests import ForecastRequest, RiskRequest
from btc_predictor.sources.base import data_age

_HEAD = ("asset", "model", "model_version", "as_of", "last_close", "last_date")
_INTERVALS = ("interval_method", "risk_model_version", "interval_note")  # after ``level``
R = TypeVar("R", ModelRun, RiskRun)
L = TypeVar("L", LoadedVersion, LoadedRisk)
ServedRequest = ForecastRequest | RiskRequest


class ServedRun(Protocol):
    """What the serving state asks of a cached run (price or risk): its answer, whether it
    still answers for an asset's state, and which horizons the ledger has."""

    recorded: int  # horizons 1..recorded are in the ledger or queued for it

    @property
    def what(self) -> str:
        """What its answers are called in logs."""

    def payload(
        self, settings: Settings, horizon: int, level: int, now: datetime
    ) -> dict[str, Any]:
        """The answer of (horizon, level), exactly the fresh answer's JSON."""

    def current(self, state: AssetState) -> bool:
        """Whether the run still answers for ``state``."""

    def ledger_rows(
        self, settings: Settings, start: int, horizon: int, now: datetime
    ) -> list[dict[str, Any]]:
        """Ledger rows of horizons ``start+1..horizon`` (BtcpError: none the ledger can score)."""


class _JsonLevels(Generic[R]):
    """A run, what it was computed on, and its points as JSON per level (dumped once each)."""

    __slots__ = ("data_mark", "last_ts", "levels", "recorded", "run")

    def __init__(self, run: R) -> None:
        self.run: R = run
        self.last_ts, self.data_mark = run.last_ts, run.data_mark
        self.levels: dict[int, list[dict[str, Any]]] = {}
        self.recorded = 0  # horizons 1..recorded are in the ledger or queued for it

    def points_at(self, level: int) -> list[dict[str, Any]]:
        """Every horizon servable at ``level`` as JSON (what risk answers read VaR from)."""
        points = self.levels.get(level)
        return self._points(level) if points is None else points

    def _served(self, horizon: int, level: int) -> list[dict[str, Any]]:
        """The points of (horizon, level) as JSON: the level's, or a refusal."""
        points = self.levels.get(level)
        if points is None:
            points = self._points(level)
        if horizon > len(points):  # refused as a fresh computation refuses it
            points = [p.model_dump(mode="json") for p in self.run.points(horizon, level)]
        return points[:horizon]

    def _points(self, level: int) -> list[dict[str, Any]]:
        """Every horizon servable at ``level`` as JSON (computed once per level)."""
        usable = self.run.path.usable(level)
        points = [p.model_dump(mode="json") for p in self.run.points(usable, level)]
        self.levels[level] = points
        return points


class CachedRun(_JsonLevels[ModelRun]):
    """A model run as this process serves it: its JSON per level and its ledger progress."""

    __slots__ = ("head", "intervals")
    what = "forecast"

    def __init__(self, run: ModelRun, settings: Settings) -> None:
        super().__init__(run)
        shape = run.shape(settings, [], ledger.LEDGER_LEVEL, now=run.last_ts)
        dumped = shape.model_dump(mode="json")
        self.head = {name: dumped[name] for name in _HEAD}
        self.intervals = {name: dumped[name] for name in _INTERVALS}

    def payload(
        self, settings: Settings, horizon: int, level: int, now: datetime
    ) -> dict[str, Any]:
        """The forecast object of (horizon, level), exactly ``Forecast.model_dump(mode="json")``."""
        points = self._served(horizon, level)
        age = data_age(self.last_ts, now)
        return {
            **self.head,
            "data_age_seconds": age,
            "stale": settings.is_stale(age),
            "level": level,
            **self.intervals,
            "points": points,
        }

    def current(self, state: AssetState) -> bool:
        """Whether the run still answers for ``state``: same newest candle, same data."""
        return self.last_ts == state.last_candle and self.data_mark == state.data_mark

    def ledger_rows(
        self, settings: Settings, start: int, horizon: int, now: datetime
    ) -> list[dict[str, Any]]:
        """Ledger rows (90% intervals) of horizons ``start+1..horizon``."""
        ninety = self.run.forecast(settings, horizon, ledger.LEDGER_LEVEL, now=now)
        fresh = ninety.model_copy(update={"points": ninety.points[start:]})
        return ledger.entry_rows(fresh, now=now)


class CachedRiskRun(_JsonLevels[RiskRun]):
    """A risk run's JSON per level, what it depends on, and how much of it the ledger has."""

    __slots__ = ("head", "price_version")
    what = "risk forecast"

    def __init__(self, run: RiskRun, settings: Settings) -> None:
        super().__init__(run)
        self.price_version = run.price_version  # the active price version it was run with
        dumped = run.shape(settings, [], ledger.LEDGER_LEVEL, now=run.last_ts).model_dump(
            mode="json"
        )
        self.head = tuple(dumped[k] for k in _HEAD)

    def payload(
        self, settings: Settings, horizon: int, level: int, now: datetime
    ) -> dict[str, Any]:
        """The risk object of (horizon, level), exactly ``Risk.model_dump(mode="json")``."""
        points = self._served(horizon, level)
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
            "points": points,
        }

    def current(self, state: AssetState) -> bool:
        """Whether the run still answers for ``state``: same data, same active price version."""
        return (
            self.last_ts == state.last_candle
            and self.data_mark == state.data_mark
            and self.price_version == state.active_version
        )

    def ledger_rows(
        self, settings: Settings, start: int, horizon: int, now: datetime
    ) -> list[dict[str, Any]]:
        """Risk ledger rows (90% range intervals) of horizons ``start+1..horizon``."""
        ninety = self.run.risk(settings, horizon, ledger.LEDGER_LEVEL, now=now)
        fresh = ninety.model_copy(update={"points": ninety.points[start:]})
        p_up = self.run.p_up(horizon)[start:]
        version = self.run.price.version
        return ledger.risk_entry_rows(fresh, price_version=version, p_up=p_up, now=now)


class Slot:
    """One loaded version in the LRU and its run on the current data, once computed (a price
    version's ``run``, or a risk version's ``risk``)."""

    __slots__ = ("loaded", "risk", "run")

    def __init__(self, loaded: LoadedVersion | LoadedRisk) -> None:
        self.loaded = loaded
        self.run: CachedRun | None = None
        self.risk: CachedRiskRun | None = None


class RunCache(OrderedDict[int, Slot]):
    """Loaded versions (price and risk) and their runs by version id, least recently used
    first. Writers hold the serving state's lock; readers look up without it."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity

    def loaded(self, kind: type[L]) -> dict[int, L]:
        """The held versions of one family, by id (what locating a run may reuse)."""
        return {
            version_id: slot.loaded
            for version_id, slot in self.items()
            if isinstance(slot.loaded, kind)
        }

    def hold(self, loaded: LoadedVersion | LoadedRisk) -> Slot:
        """The version's slot, made the most recently used (the least used one evicted)."""
        slot = self.get(loaded.version_id)
        if slot is None:
            slot = self[loaded.version_id] = Slot(loaded)
        self.move_to_end(loaded.version_id)
        while len(self) > self.capacity:
            self.popitem(last=False)
        return slot

    def forget(self, asset: str, state: AssetState | None) -> None:
        """Drop the versions of ``asset`` no request resolves to now, and runs on old data."""
        wanted = set() if state is None else state.wanted()
        for version_id, slot in list(self.items()):
            if slot.loaded.asset != asset:
                continue
            if state is None or version_id not in wanted:
                self.pop(version_id, None)
                continue
            if slot.run is not None and not slot.run.current(state):
                slot.run = None
            if slot.risk is not None and not slot.risk.current(state):
                slot.risk = None
