"""The predict use case: stored candles + a stored model version -> forecasts with intervals.

Never imports torch: artifacts run through ONNX Runtime (``forecasting.onnx_runtime``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import pairwise

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from btc_predictor.config import Settings
from btc_predictor.errors import InvalidInputError, NoDataError, NoModelError
from btc_predictor.forecasting.onnx_runtime import OnnxModel
from btc_predictor.services.ingest import require_known_asset
from btc_predictor.shapes.requests import ForecastRequest
from btc_predictor.shapes.results import Forecast, ForecastPoint
from btc_predictor.sources.base import DAY, Candle, data_age, parse_asset
from btc_predictor.storage import model_store as store
from btc_predictor.storage import repository as repo
from btc_predictor.storage.db import read_session


@dataclass(frozen=True, slots=True)
class LoadedVersion:
    """A version's id, kind and ready-to-run model."""

    version_id: int
    model: str
    runner: OnnxModel


def check_horizon(settings: Settings, horizon: int) -> None:
    """Models are trained for BTCP_MAX_HORIZON days (the shapes bound only the schema's 365)."""
    if not 1 <= horizon <= settings.max_horizon:
        raise InvalidInputError(f"horizon {horizon} is out of range (1..{settings.max_horizon})")


@dataclass(frozen=True, slots=True)
class AssetState:
    """What a forecast of one asset depends on besides its request."""

    active_version: int | None
    last_candle: datetime | None


def asset_states(engine: Engine) -> dict[str, AssetState]:
    """Active version and newest candle of every asset with data or a promotion."""
    with read_session(engine) as session:
        newest = {a: c.ts for a, c in repo.newest_candles(session=session).items()}
        assets = set(newest) | set(store.promoted_assets(session=session))
        return {
            a: AssetState(store.active_version_id(session=session, asset=a), newest.get(a))
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
    return LoadedVersion(version_id, row.model, runner)


def load_stored_version(engine: Engine, version_id: int) -> LoadedVersion:
    """Verify and load one version (ArtifactError when damaged); the session is closed before
    ONNX Runtime builds the model, so no connection is held meanwhile."""
    with read_session(engine) as session:
        artifacts = store.load_artifacts(session=session, version_id=version_id)
        model = store.get_version(session=session, version_id=version_id).model
    runner = OnnxModel(artifacts.require_onnx(version_id), artifacts.meta)
    return LoadedVersion(version_id, model, runner)


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


def prepare(
    settings: Settings,
    engine: Engine,
    asset: str,
    model: str | None,
    *,
    loaded: Mapping[int, LoadedVersion],
) -> tuple[LoadedVersion, list[Candle]]:
    """The version serving (asset, model), taken from ``loaded`` when there, and its input."""
    try:
        with read_session(engine) as session:
            version_id = pick_version(session, asset, model)
            version = loaded.get(version_id) or load_version(session, version_id)
            return version, recent_closes(session, asset, version.runner.context_length)
    except NoModelError:
        require_known_asset(settings, engine, asset)  # an unknown asset is a 404, not "train it"
        raise


def predict(
    settings: Settings, engine: Engine, request: ForecastRequest, *, now: datetime
) -> Forecast:
    """The forecast printed by ``predict --json`` and served by the API."""
    check_request(settings, request)
    asset = parse_asset(request.asset).symbol
    loaded, candles = prepare(settings, engine, asset, request.model, loaded={})
    return make_forecast(settings, asset, loaded, candles, request, now=now)


def make_forecast(
    settings: Settings,
    asset: str,
    loaded: LoadedVersion,
    candles: list[Candle],
    request: ForecastRequest,
    *,
    now: datetime,
) -> Forecast:
    """Run the model on the candles and shape the result."""
    closes = np.array([c.close for c in candles], dtype=np.float64)
    result = loaded.runner.forecast(closes, request.horizon, request.level)
    last_day: date = candles[-1].ts.date()
    age = data_age(candles[-1].ts, now)
    return Forecast(
        asset=asset,
        model=loaded.model,
        model_version=loaded.version_id,
        as_of=candles[-1].ts + DAY,
        last_close=float(closes[-1]),
        last_date=last_day,
        data_age_seconds=age,
        stale=settings.is_stale(age),
        level=request.level,
        points=[
            ForecastPoint(
                horizon=h + 1,
                target_date=last_day + timedelta(days=h + 1),
                value=float(result.values[h]),
                lower=float(result.lower[h]),
                upper=float(result.upper[h]),
                naive=float(closes[-1]),
            )
            for h in range(request.horizon)
        ],
    )
