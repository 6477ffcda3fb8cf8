"""The predict use case: stored candles + a stored model version -> forecasts with intervals.

Never imports torch: artifacts run through ONNX Runtime (``forecasting.onnx_runtime``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import pairwise
from typing import Any, Literal

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from btc_predictor.config import Settings
from btc_predictor.errors import BtcpError, InvalidInputError, NoDataError, NoModelError
from btc_predictor.forecasting import adaptive
from btc_predictor.forecasting.base import FloatArray
from btc_predictor.forecasting.onnx_runtime import OnnxModel
from btc_predictor.forecasting.paths import ForecastPath, MixedWidths
from btc_predictor.services import intervals
from btc_predictor.services.ingest import require_known_asset
from btc_predictor.services.intervals import VersionIntervals
from btc_predictor.shapes.requests import ForecastRequest
from btc_predictor.shapes.results import Forecast, ForecastPoint
from btc_predictor.sources.base import DAY, Candle, data_age, parse_asset
from btc_predictor.storage import interval_scores as scores_store
from btc_predictor.storage import model_store as store
from btc_predictor.storage import repository as repo
from btc_predictor.storage.db import read_session

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadedVersion:
    """A version's id, kind and ready-to-run model (and the asset it forecasts), with what
    its meta says about adaptive intervals and p_up."""

    version_id: int
    model: str
    runner: OnnxModel
    asset: str
    intervals: VersionIntervals = field(default_factory=lambda: VersionIntervals(None, None, ()))
    direction_weight: float = 0.0


def _loaded(
    version_id: int, model: str, asset: str, meta: dict[str, Any], onnx: bytes
) -> LoadedVersion:
    """A LoadedVersion from verified artifacts."""
    metrics = meta.get("metrics") or {}
    weight = adaptive.direction_weight(metrics.get("dm_pvalue"), metrics.get("mase"))
    runner = OnnxModel(onnx, meta)
    return LoadedVersion(version_id, model, runner, asset, VersionIntervals.from_meta(meta), weight)


# (newest ingest run, newest interval_scores row) of an asset: what its runs (price and
# risk) depend on besides the version and the newest candle.
DataMark = tuple[int | None, int | None]


def data_mark(session: Session, asset: str) -> DataMark:
    """``asset``'s data mark now."""
    return (
        repo.data_mark(session=session, asset=asset),
        scores_store.mark(session=session, asset=asset),
    )


def check_horizon(settings: Settings, horizon: int) -> None:
    """Models are trained for BTCP_MAX_HORIZON days (the shapes bound only the schema's 365)."""
    if not 1 <= horizon <= settings.max_horizon:
        raise InvalidInputError(f"horizon {horizon} is out of range (1..{settings.max_horizon})")


@dataclass(frozen=True, slots=True)
class AssetState:
    """What a forecast of one asset depends on besides its request."""

    active_version: int | None
    last_candle: datetime | None
    # The newest ingest run that stored data (moves when stored days are rewritten too) and
    # the newest interval_scores row (moves when an ingest recorded and scored the adaptive
    # state, in its own transaction after the candles).
    data_mark: DataMark | None = None
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
        scored = scores_store.marks(session=session)
        newest = {a: c.ts for a, c in repo.newest_candles(session=session).items()}
        kinds = store.usable_versions(session=session)
        risk_kinds = store.usable_versions(session=session, family=store.RISK)
        assets = set(newest) | set(store.promoted_assets(session=session)) | set(kinds)
        assets |= set(store.promoted_assets(session=session, family=store.RISK)) | set(risk_kinds)
        return {
            a: AssetState(
                store.active_version_id(session=session, asset=a),
                newest.get(a),
                (marks.get(a), scored.get(a)),
                kinds.get(a, {}),
                store.active_version_id(session=session, asset=a, family=store.RISK),
                risk_kinds.get(a, {}),
            )
            for a in assets
        }


def check_request(settings: Settings, request: ForecastRequest) -> None:
    """Reject horizons beyond the trained ones before any work (levels: the shape)."""
    check_horizon(settings, request.horizon)


def load_version(session: Session, version_id: int) -> LoadedVersion:
    """Verify and load one version into ONNX Runtime."""
    artifacts = store.load_artifacts(session=session, version_id=version_id)
    row = store.get_version(session=session, version_id=version_id)
    onnx = artifacts.require_onnx(version_id)
    return _loaded(version_id, row.model, row.asset, artifacts.meta, onnx)


def load_stored_version(engine: Engine, version_id: int) -> LoadedVersion:
    """Verify and load one version (ArtifactError when damaged); the session is closed before
    ONNX Runtime builds the model, so no connection is held meanwhile."""
    with read_session(engine) as session:
        artifacts = store.load_artifacts(session=session, version_id=version_id)
        row = store.get_version(session=session, version_id=version_id)
        model, asset = row.model, row.asset
    return _loaded(version_id, model, asset, artifacts.meta, artifacts.require_onnx(version_id))


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


RunKey = tuple[int, datetime, DataMark | None]  # (version, newest candle, data mark)


@dataclass(frozen=True, slots=True)
class AdaptiveInputs:
    """What a run's adaptive intervals need besides the path: the version's live scores and
    σ̂ now from its sigma_source risk version."""

    risk_version: int
    live: list[tuple[int, date, float]]
    sigma: FloatArray


@dataclass(frozen=True, slots=True)
class Located:
    """What one model run needs: the version, its input candles and the data mark, and the
    adaptive interval inputs (or why the run's intervals are static)."""

    version: LoadedVersion
    candles: list[Candle]
    data_mark: DataMark | None
    adaptive: AdaptiveInputs | None = None
    static_note: str | None = None

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
    with unknown_asset_is_404(settings, engine, asset), read_session(engine) as session:
        mark = data_mark(session, asset)  # first: see asset_states
        version_id = store.pick_version(
            session=session, asset=asset, family=store.PRICE, model=model
        )
        version = loaded.get(version_id) or load_version(session, version_id)
        candles = recent_closes(session, asset, version.runner.context_length)
        if settings.intervals != "adaptive":
            return Located(version, candles, mark)
        inputs, note = _adaptive_inputs(session, asset, version)
        return Located(version, candles, mark, inputs, note)


@contextmanager
def unknown_asset_is_404(settings: Settings, engine: Engine, asset: str) -> Iterator[None]:
    """Let the block's NoModelError out only for a known asset (checked once the block's
    session is closed): AssetNotFoundError otherwise."""
    try:
        yield
    except NoModelError:
        require_known_asset(settings, engine, asset)  # an unknown asset is a 404, not "train it"
        raise


def _adaptive_inputs(
    session: Session, asset: str, version: LoadedVersion
) -> tuple[AdaptiveInputs | None, str | None]:
    """The live scores and σ̂ now for ``version``'s adaptive intervals, or why there are none."""
    source = version.intervals.sigma_source
    if source is None:
        return None, "no risk version was active when this price version was trained"
    try:
        risk = intervals.load_risk_model(session, source[1])
    except BtcpError as exc:
        return None, f"risk version {source[1]} cannot give σ̂: {exc.message}"
    candles = repo.load_candles(session=session, asset=asset, limit=intervals.RISK_CONTEXT)
    candles = intervals.consecutive_tail(candles)
    if len(candles) < risk.min_history:
        return None, f"risk version {source[1]} needs {risk.min_history} consecutive days"
    sigma = intervals.sigma_now(risk, candles)
    live = intervals.stored_scores(session, asset, version.version_id)
    return AdaptiveInputs(source[1], live, sigma), None


@dataclass(frozen=True, slots=True)
class ModelRun:
    """One model run of a version on one asset's data: every horizon and level derives from it."""

    asset: str
    version: LoadedVersion
    last_ts: datetime  # the newest candle: the last data day
    data_mark: DataMark | None
    path: ForecastPath
    interval_method: Literal["adaptive", "static"] = "static"
    risk_version: int | None = None
    interval_note: str | None = None

    @property
    def key(self) -> RunKey:
        """(version, newest candle, data mark): what the run depends on."""
        return (self.version.version_id, self.last_ts, self.data_mark)

    def points(self, horizon: int, level: int) -> list[ForecastPoint]:
        """Horizons 1..``horizon`` with their interval at ``level`` (no model run)."""
        result = self.path.forecast(horizon, level)
        risk = self.path.risk()
        last_day: date = self.last_ts.date()
        return [
            ForecastPoint(
                horizon=h + 1,
                target_date=last_day + timedelta(days=h + 1),
                value=float(result.values[h]),
                lower=float(result.lower[h]),
                upper=float(result.upper[h]),
                naive=self.path.last_close,
                var_95=_finite(risk.var_95[h]),
                var_99=_finite(risk.var_99[h]),
                p_up=_finite(risk.p_up[h]),
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
            interval_method=self.interval_method,
            risk_model_version=self.risk_version,
            interval_note=self.interval_note,
            points=points,
        )

    def forecast(self, settings: Settings, horizon: int, level: int, *, now: datetime) -> Forecast:
        """The forecast of (horizon, level) derived from this run."""
        return self.shape(settings, self.points(horizon, level), level, now=now)


def _finite(value: float) -> float | None:
    """A JSON-safe number: None for NaN or ±inf."""
    return float(value) if math.isfinite(value) else None


def run_model(asset: str, located: Located) -> ModelRun:
    """Run the located version once on its candles (the only place serving runs a model),
    with adaptive intervals when they can be had (the replay runs here, once per run)."""
    closes = np.array([c.close for c in located.candles], dtype=np.float64)
    version = located.version
    raw = version.runner.run(closes)
    last_ts = located.candles[-1].ts
    static = ForecastPath(raw.values, raw.last_close, raw.widths, version.direction_weight)
    inputs, note = located.adaptive, located.static_note
    if inputs is not None:
        widths = intervals.adaptive_widths(
            version.intervals, inputs.live, inputs.sigma, raw.max_horizon, last_ts.date()
        )
        if not isinstance(widths, str):
            plain = version.intervals.static_horizons
            mixed = MixedWidths(widths, raw.widths, plain) if plain else widths
            path = ForecastPath(raw.values, raw.last_close, mixed, version.direction_weight)
            return ModelRun(
                asset,
                version,
                last_ts,
                located.data_mark,
                path,
                "adaptive",
                inputs.risk_version,
                _static_note(plain, raw.max_horizon),
            )
        note = widths
    if note is not None:
        log.debug("%s v%d served with static intervals: %s", asset, version.version_id, note)
    return ModelRun(asset, version, last_ts, located.data_mark, static, "static", None, note)


def _static_note(static_horizons: frozenset[int], max_horizon: int) -> str | None:
    """What an adaptive answer says about the horizons it serves static, if any."""
    served = sorted(h for h in static_horizons if h <= max_horizon)
    if not served:
        return None
    return (
        f"horizons {_spans(served)} use static intervals: σ̂-scaled ones scored significantly "
        "worse on this version's holdout"
    )


def _spans(horizons: list[int]) -> str:
    """``[1, 2, 3, 7]`` as ``1-3, 7``."""
    runs: list[list[int]] = []
    for h in horizons:
        if runs and h == runs[-1][-1] + 1:
            runs[-1].append(h)
        else:
            runs.append([h])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def predict(
    settings: Settings, engine: Engine, request: ForecastRequest, *, now: datetime
) -> Forecast:
    """The forecast printed by ``predict --json`` and served by the API."""
    check_request(settings, request)
    asset = parse_asset(request.asset).symbol
    located = locate(settings, engine, asset, request.model, loaded={})
    return run_model(asset, located).forecast(settings, request.horizon, request.level, now=now)
