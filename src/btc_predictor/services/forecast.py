"""The predict use case: stored candles + a stored model version -> forecasts with intervals.

Never imports torch: artifacts run through ONNX Runtime (``forecasting.onnx_runtime``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import pairwise

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from btc_predictor.config import Settings
from btc_predictor.errors import InvalidInputError, NoDataError, NoModelError
from btc_predictor.forecasting.onnx_runtime import OnnxModel
from btc_predictor.forecasting.paths import ForecastPath
from btc_predictor.services.ingest import require_known_asset
from btc_predictor.shapes.requests import ForecastRequest
from btc_predictor.shapes.results import Forecast, ForecastPoint
from btc_predictor.sources.base import DAY, Candle, data_age, parse_asset
from btc_predictor.storage import model_store as store
from btc_predictor.storage import repository as repo
from btc_predictor.storage.db import read_session


@dataclass(frozen=True, slots=True)
class LoadedVersion:
    """A version's id, kind and ready-to-run model (and the asset it forecasts)."""

    version_id: int
    model: str
    runner: OnnxModel
    asset: str


def check_horizon(settings: Settings, horizon: int) -> None:
    """Models are trained for BTCP_MAX_HORIZON days (the shapes bound only the schema's 365)."""
    if not 1 <= horizon <= settings.max_horizon:
        raise InvalidInputError(f"horizon {horizon} is out of range (1..{settings.max_horizon})")


@dataclass(frozen=True, slots=True)
class AssetState:
    """What a forecast of one asset depends on besides its request."""

    active_version: int | None
    last_candle: datetime | None
    # The newest ingest run that stored data: moves when stored days are rewritten too.
    data_mark: int | None = None
    # Newest usable version of each model kind and how many are usable (moves on new or
    # pruned versions): what ``model=`` resolves to.
    kinds: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    # The same for the risk family (what /api/v1/risk resolves to).
    risk_version: int | None = None
    risk_kinds: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def version_for(self, model: str | None) -> int | None:
        """The version a request for ``model`` (None: the active one) is served by."""
        if model is None:
            return self.active_version
        kind = self.kinds.get(model)
        return None if kind is None else kind[0]

    def risk_version_for(self, model: str | None) -> int | None:
        """The risk version a risk request for ``model`` (None: the active one) is served by."""
        if model is None:
            return self.risk_version
        kind = self.risk_kinds.get(model)
        return None if kind is None else kind[0]

    def wanted(self) -> set[int]:
        """Every version (price or risk) some request for this asset can be served by now."""
        found = {newest for newest, _ in (*self.kinds.values(), *self.risk_kinds.values())}
        active = {self.active_version, self.risk_version}
        return found | {v for v in active if v is not None}


def asset_states(engine: Engine) -> dict[str, AssetState]:
    """Active version, newest candle, data mark and newest version per kind (of both
    families) of every asset with data, a version or a promotion."""
    with read_session(engine) as session:
        # The mark is read before the candles: data read later is never older than its mark.
        marks = repo.data_marks(session=session)
        newest = {a: c.ts for a, c in repo.newest_candles(session=session).items()}
        kinds = store.usable_versions(session=session)
        risk_kinds = store.usable_versions(session=session, family=store.RISK)
        assets = set(newest) | set(store.promoted_assets(session=session)) | set(kinds)
        assets |= set(store.promoted_assets(session=session, family=store.RISK)) | set(risk_kinds)
        return {
            a: AssetState(
                store.active_version_id(session=session, asset=a),
                newest.get(a),
                marks.get(a),
                kinds.get(a, {}),
                store.active_version_id(session=session, asset=a, family=store.RISK),
                risk_kinds.get(a, {}),
            )
            for a in assets
        }


def check_request(settings: Settings, request: ForecastRequest) -> None:
    """Reject horizons beyond the trained ones before any work (levels: the shape)."""
    check_horizon(settings, request.horizon)


def pick_version(session: Session, asset: str, model: str | None) -> int:
    """The active version, or the newest usable one of kind ``model``."""
    if model is None:
        active = store.active_version_id(session=session, asset=asset)
        if active is None:
            raise NoModelError(
                f"no active model for {asset}: run `btc-predictor train --asset {asset}`"
            )
        return active
    for row in store.list_versions(session=session, asset=asset, model=model, family=store.PRICE):
        if row.pruned_at is None:
            return row.id
    raise NoModelError(
        f"no {model} version for {asset}: run `btc-predictor train --asset {asset} --model {model}`"
    )


def load_version(session: Session, version_id: int) -> LoadedVersion:
    """Verify and load one version into ONNX Runtime."""
    artifacts = store.load_artifacts(session=session, version_id=version_id)
    row = store.get_version(session=session, version_id=version_id)
    runner = OnnxModel(artifacts.require_onnx(version_id), artifacts.meta)
    return LoadedVersion(version_id, row.model, runner, row.asset)


def load_stored_version(engine: Engine, version_id: int) -> LoadedVersion:
    """Verify and load one version (ArtifactError when damaged); the session is closed before
    ONNX Runtime builds the model, so no connection is held meanwhile."""
    with read_session(engine) as session:
        artifacts = store.load_artifacts(session=session, version_id=version_id)
        row = store.get_version(session=session, version_id=version_id)
        model, asset = row.model, row.asset
    runner = OnnxModel(artifacts.require_onnx(version_id), artifacts.meta)
    return LoadedVersion(version_id, model, runner, asset)


def recent_closes(session: Session, asset: str, count: int) -> list[Candle]:
    """The newest ``count`` candles, which must be consecutive days."""
    candles = repo.load_candles(session=session, asset=asset, limit=count)
    if not candles:
        raise NoDataError(f"no data for {asset}: run `btc-predictor ingest --asset {asset}`")
    if len(candles) < count:
        raise NoDataError(f"{asset} has {len(candles)} days stored; the model needs {count}")
    for before, after in pairwise(candles):
        if after.ts - before.ts != DAY:
            raise NoDataError(
                f"{asset} is missing days after {before.ts.date()}: "
                f"run `btc-predictor ingest --asset {asset} --since {before.ts.date()}`"
            )
    return candles


RunKey = tuple[int, datetime, int | None]  # (version, newest candle, data mark)


@dataclass(frozen=True, slots=True)
class Located:
    """What one model run needs: the version, its input candles and the data mark."""

    version: LoadedVersion
    candles: list[Candle]
    data_mark: int | None

    @property
    def key(self) -> RunKey:
        """The run these inputs give (its cache key)."""
        return (self.version.version_id, self.candles[-1].ts, self.data_mark)


def locate(
    settings: Settings,
    engine: Engine,
    asset: str,
    model: str | None,
    *,
    loaded: Mapping[int, LoadedVersion],
) -> Located:
    """The version serving (asset, model), taken from ``loaded`` when there, and its input."""
    try:
        with read_session(engine) as session:
            mark = repo.data_mark(session=session, asset=asset)  # first: see asset_states
            version_id = pick_version(session, asset, model)
            version = loaded.get(version_id) or load_version(session, version_id)
            candles = recent_closes(session, asset, version.runner.context_length)
            return Located(version, candles, mark)
    except NoModelError:
        require_known_asset(settings, engine, asset)  # an unknown asset is a 404, not "train it"
        raise


@dataclass(frozen=True, slots=True)
class ModelRun:
    """One model run of a version on one asset's data: every horizon and level derives from it."""

    asset: str
    version: LoadedVersion
    last_ts: datetime  # the newest candle: the last data day
    data_mark: int | None
    path: ForecastPath

    @property
    def key(self) -> RunKey:
        """(version, newest candle, data mark): what the run depends on."""
        return (self.version.version_id, self.last_ts, self.data_mark)

    def points(self, horizon: int, level: int) -> list[ForecastPoint]:
        """Horizons 1..``horizon`` with their interval at ``level`` (no model run)."""
        result = self.path.forecast(horizon, level)
        last_day: date = self.last_ts.date()
        return [
            ForecastPoint(
                horizon=h + 1,
                target_date=last_day + timedelta(days=h + 1),
                value=float(result.values[h]),
                lower=float(result.lower[h]),
                upper=float(result.upper[h]),
                naive=self.path.last_close,
            )
            for h in range(horizon)
        ]

    def shape(
        self, settings: Settings, points: list[ForecastPoint], level: int, *, now: datetime
    ) -> Forecast:
        """The forecast result around ``points``, its data age taken at ``now``."""
        age = data_age(self.last_ts, now)
        return Forecast(
            asset=self.asset,
            model=self.version.model,
            model_version=self.version.version_id,
            as_of=self.last_ts + DAY,
            last_close=self.path.last_close,
            last_date=self.last_ts.date(),
            data_age_seconds=age,
            stale=settings.is_stale(age),
            level=level,
            points=points,
        )

    def forecast(self, settings: Settings, horizon: int, level: int, *, now: datetime) -> Forecast:
        """The forecast of (horizon, level) derived from this run."""
        return self.shape(settings, self.points(horizon, level), level, now=now)


def run_model(asset: str, located: Located) -> ModelRun:
    """Run the located version once on its candles (the only place serving runs a model)."""
    closes = np.array([c.close for c in located.candles], dtype=np.float64)
    path = located.version.runner.run(closes)
    return ModelRun(asset, located.version, located.candles[-1].ts, located.data_mark, path)


def predict(
    settings: Settings, engine: Engine, request: ForecastRequest, *, now: datetime
) -> Forecast:
    """The forecast printed by ``predict --json`` and served by the API."""
    check_request(settings, request)
    asset = parse_asset(request.asset).symbol
    located = locate(settings, engine, asset, request.model, loaded={})
    return run_model(asset, located).forecast(settings, request.horizon, request.level, now=now)
