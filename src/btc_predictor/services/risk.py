"""The risk use case: stored candles + a stored risk version -> volatility and range forecasts
with range intervals, VaR 95/99 from the active price version beside them.

A risk version is served by numpy (weights.safetensors + meta.json, no ONNX). One run per
(risk version, newest candle, data mark) gives every horizon (``RiskRun``); intervals at any
level derive from it without another run, as ``services.forecast.ModelRun`` does for prices.
The model runs on the stored days from its training window's first day: the recursive models
(``ewma-vol``, ``garch``) carry their state from there, as they did when they were trained.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import pairwise
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from btc_predictor.config import Settings
from btc_predictor.errors import (
    ArtifactError,
    HorizonExceedsModelError,
    NoDataError,
    NoModelError,
)
from btc_predictor.forecasting.intervals import DEFAULT_WINDOW
from btc_predictor.forecasting.paths import HalfWidths
from btc_predictor.forecasting.registry import get_risk_model_class
from btc_predictor.forecasting.risk.base import RiskForecaster
from btc_predictor.forecasting.risk.paths import RiskPath, run_risk
from btc_predictor.services.forecast import (
    DataMark,
    check_horizon,
    data_mark,
    locate,
    run_model,
    unknown_asset_is_404,
)
from btc_predictor.services.risk_training import risk_data
from btc_predictor.shapes.requests import RiskRequest
from btc_predictor.shapes.risk_results import Risk, RiskPoint
from btc_predictor.sources.base import DAY, Candle, data_age, parse_asset, utc_day
from btc_predictor.storage import model_store as store
from btc_predictor.storage import repository as repo
from btc_predictor.storage.db import read_session

log = logging.getLogger(__name__)
PRICE_LEVEL = 90  # the price points VaR and p_up are read from (neither depends on the level)


@dataclass(frozen=True, slots=True)
class LoadedRisk:
    """A risk version ready to run: its fitted model, range half-widths and training start."""

    version_id: int
    model: str
    forecaster: RiskForecaster
    widths: HalfWidths
    asset: str
    train_start: date


def load_risk_version(session: Session, version_id: int) -> LoadedRisk:
    """Verify one risk version's artifacts and rebuild its fitted model (numpy)."""
    artifacts = store.load_artifacts(session=session, version_id=version_id)
    row = store.get_version(session=session, version_id=version_id)
    return _rebuild(version_id, row.model, row.asset, row.train_start, artifacts)


def load_stored_risk_version(engine: Engine, version_id: int) -> LoadedRisk:
    """Verify and rebuild one risk version (ArtifactError when damaged)."""
    with read_session(engine) as session:
        return load_risk_version(session, version_id)


def _rebuild(
    version_id: int, model: str, asset: str, train_start: date, artifacts: store.ArtifactSet
) -> LoadedRisk:
    """The fitted model and half-widths of a verified artifact set."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    meta = artifacts.meta
    residuals = meta.get("residuals_per_horizon")
    if not isinstance(residuals, list) or not isinstance(meta.get("config"), dict):
        raise ArtifactError(f"meta.json of risk version {version_id} lacks its config/residuals")
    try:
        tensors = load(artifacts.weights)
    except SafetensorError as exc:
        raise ArtifactError(f"weights of risk version {version_id} do not load: {exc}") from None
    forecaster = get_risk_model_class(model).from_artifacts(meta["config"], tensors)
    widths = HalfWidths([_floats(r) for r in residuals], window=DEFAULT_WINDOW)
    return LoadedRisk(version_id, model, forecaster, widths, asset, train_start)


def _floats(values: Any) -> Any:
    """One horizon's stored residuals as a float array."""
    import numpy as np

    return np.asarray(values, dtype=np.float64)


def risk_candles(session: Session, asset: str, first: date, need: int) -> list[Candle]:
    """Stored candles from ``first`` (the version's training start), consecutive days."""
    candles = repo.load_candles(session=session, asset=asset, start=utc_day(first))
    if not candles:
        raise NoDataError(f"no data for {asset}: run `btc-predictor ingest --asset {asset}`")
    if len(candles) < need:
        raise NoDataError(f"{asset} has {len(candles)} days stored; the risk model needs {need}")
    for before, after in pairwise(candles):
        if after.ts - before.ts != DAY:
            raise NoDataError(
                f"{asset} is missing days after {before.ts.date()}: "
                f"run `btc-predictor ingest --asset {asset} --since {before.ts.date()}`"
            )
    return candles


# --- VaR and p_up from the active price version ------------------------------------------


@dataclass(frozen=True, slots=True)
class PriceRisk:
    """VaR 95/99 (loss in % of the last close) and ``p_up`` per horizon (index h−1) from one
    price version's forecast; ``version`` None: no active price version (all None)."""

    version: int | None
    var_95: tuple[float | None, ...] = ()
    var_99: tuple[float | None, ...] = ()
    p_up: tuple[float | None, ...] = ()

    def at(self, horizon: int) -> tuple[float | None, float | None, float | None]:
        """(var_95, var_99, p_up) of ``horizon`` (None beyond the price forecast)."""
        i = horizon - 1
        return _nth(self.var_95, i), _nth(self.var_99, i), _nth(self.p_up, i)


NO_PRICE = PriceRisk(None)


def price_risk(version: int, points: Sequence[Mapping[str, Any]]) -> PriceRisk:
    """Where a risk forecast's ``var_95``/``var_99`` (and the ledger's ``p_up``) are filled: read
    per horizon from the price version's forecast points (JSON, every servable horizon). The
    price forecast carries them once issue 16's serving adds them; until then they are None."""
    return PriceRisk(
        version,
        tuple(_number(p.get("var_95")) for p in points),
        tuple(_number(p.get("var_99")) for p in points),
        tuple(_number(p.get("p_up")) for p in points),
    )


def _number(value: Any) -> float | None:
    """A finite float, or None."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _nth(values: tuple[float | None, ...], i: int) -> float | None:
    """``values[i]``, or None past the end."""
    return values[i] if i < len(values) else None


def fresh_price_risk(settings: Settings, engine: Engine, asset: str) -> PriceRisk:
    """The active price version's VaR and p_up on the stored data (one price model run); None
    fields when it has none or cannot forecast (a risk answer never fails for the price's sake)."""
    try:
        located = locate(settings, engine, asset, None, loaded={})
        run = run_model(asset, located)
        points = run.points(run.path.usable(PRICE_LEVEL), PRICE_LEVEL)
    except NoModelError:
        return NO_PRICE
    except (ArtifactError, NoDataError, HorizonExceedsModelError) as exc:
        log.warning("no VaR beside the %s risk forecast: %s", asset, exc)
        return NO_PRICE
    return price_risk(run.version.version_id, [p.model_dump(mode="json") for p in points])


# --- one risk model run ------------------------------------------------------------------

# (risk version, newest candle, data mark, price version)
RiskKey = tuple[int, datetime, DataMark | None, int | None]


@dataclass(frozen=True, slots=True)
class RiskLocated:
    """What one risk run needs: the version, its candles, the data mark, the active price
    version (whose VaR is served beside it)."""

    version: LoadedRisk
    candles: list[Candle]
    data_mark: DataMark | None
    price_version: int | None

    @property
    def key(self) -> RiskKey:
        """The run these inputs give (its cache key)."""
        version = self.version.version_id
        return (version, self.candles[-1].ts, self.data_mark, self.price_version)


def locate_risk(
    settings: Settings,
    engine: Engine,
    asset: str,
    model: str | None,
    *,
    loaded: Mapping[int, LoadedRisk],
) -> RiskLocated:
    """The risk version serving (asset, model), from ``loaded`` when there, and its input."""
    with unknown_asset_is_404(settings, engine, asset), read_session(engine) as session:
        mark = data_mark(session, asset)  # first: see asset_states
        version_id = store.pick_version(
            session=session,
            asset=asset,
            family=store.RISK,
            model=model,
            default_model=settings.default_risk_model,
        )
        version = loaded.get(version_id) or load_risk_version(session, version_id)
        need = version.forecaster.min_history
        candles = risk_candles(session, asset, version.train_start, need)
        price = store.active_version_id(session=session, asset=asset)
        return RiskLocated(version, candles, mark, price)


@dataclass(frozen=True, slots=True)
class RiskRun:
    """One run of a risk version on one asset's data, with the price VaR beside it: every
    horizon and level derives from it."""

    asset: str
    version: LoadedRisk
    last_ts: datetime  # the newest candle: the last data day
    data_mark: DataMark | None
    path: RiskPath
    price_version: int | None  # the active price version when it ran
    price: PriceRisk  # that version's VaR and p_up (all None when it could not forecast)

    @property
    def key(self) -> RiskKey:
        """What the run depends on."""
        return (self.version.version_id, self.last_ts, self.data_mark, self.price_version)

    def points(self, horizon: int, level: int) -> list[RiskPoint]:
        """Horizons 1..``horizon`` with their range interval at ``level`` (no model run)."""
        found = self.path.outlook(horizon, level)
        last_day: date = self.last_ts.date()
        close = self.path.last_close
        points = []
        for i in range(horizon):
            var_95, var_99, _ = self.price.at(i + 1)
            range_pct = float(found.range_pct[i])
            points.append(
                RiskPoint(
                    horizon=i + 1,
                    target_date=last_day + timedelta(days=i + 1),
                    volatility=float(found.volatility[i]),
                    range_pct=range_pct,
                    range_lower_pct=float(found.lower[i]),
                    range_upper_pct=float(found.upper[i]),
                    range_price=range_pct * close / 100.0,
                    naive_range_pct=self.path.naive_range_pct,
                    var_95=var_95,
                    var_99=var_99,
                )
            )
        return points

    def shape(
        self, settings: Settings, points: list[RiskPoint], level: int, *, now: datetime
    ) -> Risk:
        """The risk result around ``points``, its data age taken at ``now``."""
        age = data_age(self.last_ts, now)
        return Risk(
            asset=self.asset,
            model=self.version.model,
            model_version=self.version.version_id,
            level=level,
            as_of=self.last_ts + DAY,
            last_close=self.path.last_close,
            last_date=self.last_ts.date(),
            data_age_seconds=age,
            stale=settings.is_stale(age),
            points=points,
        )

    def risk(self, settings: Settings, horizon: int, level: int, *, now: datetime) -> Risk:
        """The risk forecast of (horizon, level) derived from this run."""
        return self.shape(settings, self.points(horizon, level), level, now=now)

    def p_up(self, horizon: int) -> list[float | None]:
        """``p_up`` of horizons 1..``horizon`` from the price forecast (the ledger's)."""
        return [self.price.at(h)[2] for h in range(1, horizon + 1)]


def run_risk_model(asset: str, located: RiskLocated, price: PriceRisk) -> RiskRun:
    """Run the located risk version once on its candles (the only place serving runs one)."""
    data = risk_data(asset, located.candles)
    path = run_risk(located.version.forecaster, data.ohlc, located.version.widths)
    last_ts = located.candles[-1].ts
    return RiskRun(
        asset, located.version, last_ts, located.data_mark, path, located.price_version, price
    )


def risk(settings: Settings, engine: Engine, request: RiskRequest, *, now: datetime) -> Risk:
    """The risk forecast printed by ``risk --json`` and served by ``GET /api/v1/risk``."""
    check_horizon(settings, request.horizon)
    asset = parse_asset(request.asset).symbol
    located = locate_risk(settings, engine, asset, request.model, loaded={})
    price = fresh_price_risk(settings, engine, asset)
    run = run_risk_model(asset, located, price)
    return run.risk(settings, request.horizon, request.level, now=now)
