"""The train use case: load candles, holdout + final fit, store a verified version, promote.

Price models train on closes (``model.onnx`` served by ONNX Runtime), risk models on OHLC
(``services.risk_training``; numpy-served). Without a model name both defaults are trained,
``BTCP_DEFAULT_RISK_MODEL`` first, and the price summary carries the risk one as ``risk``.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime
from importlib.metadata import PackageNotFoundError, version
from itertools import pairwise
from typing import Any

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from btc_predictor.config import Settings
from btc_predictor.errors import (
    ArtifactError,
    BtcpError,
    InvalidInputError,
    NoDataError,
    NotEnoughDataError,
)
from btc_predictor.forecasting import adaptive, interval_choice
from btc_predictor.forecasting.base import FloatArray, Forecaster, ProgressFn
from btc_predictor.forecasting.intervals import DEFAULT_WINDOW, MIN_RESIDUALS
from btc_predictor.forecasting.onnx_runtime import OnnxModel
from btc_predictor.forecasting.promotion import (
    PromotionEvidence,
    promotion_decision,
)
from btc_predictor.forecasting.registry import (
    create_model,
    create_risk_model,
    get_model_class,
    get_risk_model_class,
)
from btc_predictor.forecasting.risk.training import holdout_sigma
from btc_predictor.forecasting.training import DayErrors, TrainOutcome, split_index, train_model
from btc_predictor.services import risk_training as risk
from btc_predictor.services.ingest import require_candles
from btc_predictor.shapes.common import family_of
from btc_predictor.shapes.requests import ModelFit, TrainRequest
from btc_predictor.shapes.results import (
    Baseline,
    Calibration,
    HoldoutMetrics,
    PointMetrics,
    TrainResult,
    TrainSummary,
)
from btc_predictor.sources.base import DAY, Candle, parse_asset, utc_day
from btc_predictor.storage import model_store as store
from btc_predictor.storage import repository as repo
from btc_predictor.storage.db import read_session, write_session

log = logging.getLogger(__name__)
# The ONNX graph must reproduce the fitted model before a version is stored.
ONNX_TOLERANCE = 1e-5


@dataclass(frozen=True, slots=True)
class TrainingData:
    """Contiguous daily closes of the training window."""

    asset: str
    closes: FloatArray
    days: list[date]

    @property
    def sha256(self) -> str:
        """Fingerprint of exactly what was trained on (days and closes)."""
        digest = hashlib.sha256(np.asarray(self.closes, dtype="<f8").tobytes())
        digest.update(",".join(d.isoformat() for d in self.days).encode())
        return digest.hexdigest()


def load_training_data(engine: Engine, asset: str, start: date) -> TrainingData:
    """Stored closes from ``start``; gaps would corrupt returns, so they are refused."""
    return training_data(asset, load_window(engine, asset, start))


def training_data(asset: str, candles: list[Candle]) -> TrainingData:
    """The closes and days of gap-free candles."""
    closes = np.array([c.close for c in candles], dtype=np.float64)
    return TrainingData(asset, closes, [c.ts.date() for c in candles])


def load_window(engine: Engine, asset: str, start: date) -> list[Candle]:
    """Stored candles from ``start``: NoDataError when there are none or they have a gap."""
    with read_session(engine) as session:
        candles = repo.load_candles(session=session, asset=asset, start=utc_day(start))
    if not candles:
        raise NoDataError(
            f"no data for {asset} from {start}: run `btc-predictor ingest --asset {asset}`"
        )
    _refuse_gaps(asset, candles)
    return candles


def _refuse_gaps(asset: str, candles: list[Candle]) -> None:
    """NoDataError naming the first gap in the window, with what to run."""
    for before, after in pairwise(candles):
        if after.ts - before.ts != DAY:
            raise NoDataError(
                f"{asset} is missing {before.ts.date() + DAY}..{after.ts.date() - DAY} in the "
                f"training window: backfill with `btc-predictor ingest --asset {asset} "
                f"--since {before.ts.date()}` or train with --start {after.ts.date()}"
            )


def min_training_days(max_horizon: int) -> int:
    """Fewest closes whose 20% holdout yields MIN_RESIDUALS residuals at every horizon."""
    n = 1
    while n - split_index(n) - max_horizon + 1 < MIN_RESIDUALS:
        n += 1
    return n


def _require_calibration_days(asset: str, days: list[date], max_horizon: int) -> None:
    """NotEnoughDataError unless the holdout can calibrate intervals for every horizon."""
    need = min_training_days(max_horizon)
    if len(days) < need:
        raise NotEnoughDataError(
            f"{asset} has {len(days)} days from {days[0]}; training for "
            f"horizons up to {max_horizon} needs at least {need} (use an earlier --start)"
        )


def admit_fit(settings: Settings, engine: Engine, request: ModelFit, *, now: datetime) -> None:
    """Refuse, before it is queued, a fit that can only fail: an unknown asset (404), one with
    no data (409), a window starting today or later. (Model names: the request shape; the
    class is not imported here, since the API process must never import torch.)"""
    require_candles(settings, engine, request.asset)
    if request.start is not None and request.start >= now.date():
        raise InvalidInputError(
            f"start {request.start} is not a past day (today is {now.date()}, UTC): "
            "a training window needs closed days"
        )
    if request.model is None or family_of(request.model) == "risk":
        start = request.start or settings.train_start
        risk.refuse_inverted_candles(engine, parse_asset(request.asset).symbol, start)


def train(
    settings: Settings,
    engine: Engine,
    request: TrainRequest,
    *,
    now: datetime,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Train, store and (by the promotion rule) activate a version; the ``train --json`` object.

    Without a model name: the default risk model, then the default price model, whose
    summary is returned with the risk one as ``risk``."""
    if request.model is not None:
        if family_of(request.model) == "risk":
            return train_risk(settings, engine, request, now=now, progress=progress)
        return train_price(settings, engine, request, now=now, progress=progress)
    risk_request = request.model_copy(update={"model": settings.default_risk_model})
    price_request = request.model_copy(update={"model": settings.default_model})
    risk_result = train_risk(settings, engine, risk_request, now=now, progress=progress)
    price = train_price(settings, engine, price_request, now=now, progress=progress)
    return price.model_copy(update={"risk": risk_result})


def train_price(
    settings: Settings,
    engine: Engine,
    request: TrainRequest,
    *,
    now: datetime,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Train, store and promote one price model (closes -> ONNX-served version)."""
    asset = parse_asset(request.asset).symbol
    name = request.model or settings.default_model
    get_model_class(name)  # unknown names fail before any data is read
    candles = load_window(engine, asset, request.start or settings.train_start)
    data = training_data(asset, candles)
    _require_calibration_days(asset, data.days, settings.max_horizon)
    epochs = request.epochs or settings.train_epochs
    started = time.perf_counter()
    outcome = train_model(
        lambda: create_model(name, max_horizon=settings.max_horizon),
        data.closes,
        seed=request.seed,
        epochs=epochs,
        max_horizon=settings.max_horizon,
        progress=progress,
        days=[d.toordinal() for d in data.days],
    )
    duration = time.perf_counter() - started
    artifacts = build_artifacts(outcome, data, request.seed, epochs, now)
    artifacts.meta.update(_interval_meta(settings, engine, data, candles, outcome, request.seed))
    verify_onnx(outcome.model, artifacts, data.closes)
    summary = _summary(name, data, outcome, duration, request.seed)
    result = _store_and_promote(settings, engine, summary, artifacts, request.promote, now)
    calibration = Calibration(residuals_per_horizon=outcome.residuals_per_horizon)
    return result.model_copy(update={"calibration": calibration})


def train_risk(
    settings: Settings,
    engine: Engine,
    request: TrainRequest,
    *,
    now: datetime,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Train, store and promote one risk model (OHLC -> numpy-served version, family risk)."""
    asset = parse_asset(request.asset).symbol
    name = request.model or settings.default_risk_model
    get_risk_model_class(name)  # unknown names fail before any data is read
    start = request.start or settings.train_start
    risk.refuse_inverted_candles(engine, asset, start)
    data = risk.risk_data(asset, load_window(engine, asset, start))
    _require_calibration_days(asset, data.days, settings.max_horizon)
    started = time.perf_counter()
    outcome = risk.fit_risk(settings, data, name, request.seed, progress)
    duration = time.perf_counter() - started
    libraries = _library_versions(("btc-predictor", "numpy", "safetensors", "arch"))
    artifacts = risk.build_risk_artifacts(outcome, data, request.seed, now, libraries)
    risk.verify_risk_serving(outcome.model, artifacts, data.ohlc)
    summary = risk.risk_summary(name, data, outcome, duration, request.seed)
    result = _store_and_promote(settings, engine, summary, artifacts, request.promote, now)
    calibration = Calibration(residuals_per_horizon=outcome.residuals_per_horizon)
    return result.model_copy(update={"calibration": calibration})


def _interval_meta(
    settings: Settings,
    engine: Engine,
    data: TrainingData,
    candles: list[Candle],
    outcome: TrainOutcome,
    seed: int,
) -> dict[str, Any]:
    """``sigma_source`` and ``interval_scores`` for a price version's meta.

    ``sigma_source`` is the active risk version at training time (when one command trains
    both, the risk version trained just before): what serving normalises this version's
    intervals with, pinned so that a later risk retrain never rescales them. The scores are
    the holdout's |log residual| / σ̂ per horizon, σ̂ from the same risk model kind refit on
    the holdout's training part only (None when that model cannot be fitted there)."""
    with read_session(engine) as session:
        risk_id = store.active_version_id(session=session, asset=data.asset, family=store.RISK)
        kind = None if risk_id is None else store.get_version(session=session, version_id=risk_id)
        source = None if kind is None else {"model": kind.model, "version": risk_id}
    name = settings.default_risk_model if kind is None else kind.model
    scores = _holdout_scores(settings, data, candles, outcome, name, seed)
    return {"sigma_source": source, "interval_scores": scores}


def _holdout_scores(
    settings: Settings,
    data: TrainingData,
    candles: list[Candle],
    outcome: TrainOutcome,
    risk_model: str,
    seed: int,
) -> dict[str, Any] | None:
    """The holdout's normalised scores per horizon (JSON: NaN as null), the risk model kind,
    the first holdout origin's day and the horizons where static bands beat σ̂-scaled ones
    over the holdout (:mod:`~btc_predictor.forecasting.interval_choice`); None (logged) when
    the risk model cannot be fitted."""
    holdout = outcome.holdout
    origins = holdout.horizons[0].origins
    try:
        # Price models train on closes only: a bad candle (high < low) costs the normalised
        # scores (intervals fall back to static), never the price version.
        ohlc = risk.risk_data(data.asset, candles).ohlc
        model = create_risk_model(risk_model, max_horizon=settings.max_horizon)
        sigma = holdout_sigma(model, ohlc, holdout.split, origins, seed=seed)
        scores = adaptive.holdout_scores(holdout.residuals_per_horizon, sigma)
        plain = interval_choice.static_horizons(
            holdout.residuals_per_horizon, sigma, window=DEFAULT_WINDOW
        )
    except BtcpError as exc:
        log.warning("holdout scores of %s not normalised by %s: %s", data.asset, risk_model, exc)
        return None
    return {
        "risk_model": risk_model,
        "first_origin": data.days[int(origins[0])].isoformat(),
        "per_horizon": [[None if np.isnan(v) else float(v) for v in h] for h in scores],
        "static_horizons": plain,
    }


def build_artifacts(
    outcome: TrainOutcome, data: TrainingData, seed: int, epochs: int | None, now: datetime
) -> store.ArtifactSet:
    """model.onnx, weights.safetensors and meta.json for a trained model."""
    from safetensors.numpy import save

    model = outcome.model
    meta = {
        "format": 1,
        "asset": data.asset,
        "model": model.name,
        "config": model.config(),
        "context_length": model.context_length,
        "max_horizon": model.max_horizon,
        "residuals_per_horizon": outcome.residuals_per_horizon,
        "metrics": outcome.metrics,
        "baseline": outcome.baseline,
        "day_errors": outcome.holdout.day_errors.to_json(),
        "train_start": data.days[0].isoformat(),
        "train_end": data.days[-1].isoformat(),
        "data_points": int(data.closes.size),
        "data_sha256": data.sha256,
        "seed": seed,
        "epochs": epochs,
        "trained_at": now.isoformat(),
        "libraries": _library_versions(),
    }
    weights = save({k: np.ascontiguousarray(v) for k, v in model.tensors().items()})
    return store.ArtifactSet(model.to_onnx(), weights, meta)


PRICE_LIBRARIES = ("btc-predictor", "numpy", "torch", "onnx", "onnxruntime", "safetensors")


def _library_versions(packages: tuple[str, ...] = PRICE_LIBRARIES) -> dict[str, str]:
    """Versions of the libraries that shaped the artifacts."""
    found = {}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    found["python"] = sys.version.split()[0]
    return found


def verify_onnx(model: Forecaster, artifacts: store.ArtifactSet, closes: FloatArray) -> None:
    """Refuse to store a graph whose forecasts differ from the fitted model's."""
    expected = model.predict(closes, model.max_horizon)
    window = np.ascontiguousarray(closes[-model.context_length :])[None, :]
    if artifacts.onnx is None:
        raise ArtifactError("a price model must export an ONNX graph")
    runner = OnnxModel(artifacts.onnx, artifacts.meta)
    got = runner.session.run(["forecast"], {"closes": window})[0][0]
    if not np.allclose(got, expected, rtol=ONNX_TOLERANCE, atol=0.0):
        worst = float(np.max(np.abs(got / expected - 1)))
        raise ArtifactError(
            f"exported ONNX graph disagrees with the model (rel. error {worst:.2e})"
        )


def _summary(
    name: str, data: TrainingData, outcome: TrainOutcome, duration: float, seed: int
) -> TrainSummary:
    """What the training measured, known before storing."""
    return TrainSummary(
        asset=data.asset,
        model=name,
        seed=seed,
        training_duration=round(duration, 3),
        data_points_used=int(data.closes.size),
        train_start=data.days[0],
        train_end=data.days[-1],
        data_sha256=data.sha256,
        metrics=HoldoutMetrics.model_validate(outcome.metrics),
        baseline=Baseline(naive=PointMetrics.model_validate(outcome.baseline["naive"])),
    )


def _store_and_promote(
    settings: Settings,
    engine: Engine,
    summary: TrainSummary,
    artifacts: store.ArtifactSet,
    mode: str,
    now: datetime,
) -> TrainResult:
    """Write the version, decide on promotion and prune, all in one transaction."""
    with write_session(engine) as session:
        version_id = store.save_version(
            session=session, version=_new_version(summary, now), artifacts=artifacts
        )  # in its family: a risk version never displaces the serving price version
        promoted, reason = _decide(session, summary, artifacts, mode)
        if promoted:
            store.promote(session=session, version_id=version_id, reason=reason, now=now)
        store.prune(
            session=session,
            asset=summary.asset,
            model=summary.model,
            keep=settings.keep_versions,
            now=now,
        )
        result = TrainResult(
            **dict(summary), version=version_id, promoted=promoted, promotion_reason=reason
        )
        row = store.get_version(session=session, version_id=version_id)
        row.summary = result.model_dump(mode="json", exclude={"calibration"})
    return result


def _new_version(summary: TrainSummary, now: datetime) -> store.NewVersion:
    """The version row fields from a training summary."""
    return store.NewVersion(
        asset=summary.asset,
        model=summary.model,
        family=summary.family,
        created_at=now,
        train_start=summary.train_start,
        train_end=summary.train_end,
        data_points=summary.data_points_used,
        data_sha256=summary.data_sha256,
        seed=summary.seed,
        training_duration=summary.training_duration,
        holdout_mase=summary.metrics.mase,
        summary={},
    )


def _decide(
    session: Session, summary: TrainSummary, artifacts: store.ArtifactSet, mode: str
) -> tuple[bool, str]:
    """The DESIGN promotion rule against the active version of the candidate's family.

    Risk versions compare range MASE on the same holdout days (their day errors are absolute
    range errors against naive-range); ``naive-range`` is a baseline, never auto-promoted."""
    is_baseline = (
        risk.is_risk_baseline(summary.model)
        if summary.family == "risk"
        else get_model_class(summary.model).is_baseline
    )
    candidate = PromotionEvidence(
        summary.model,
        is_baseline,
        summary.metrics.mase,
        DayErrors.from_json(artifacts.meta["day_errors"]),
    )
    active_id = store.active_version_id(session=session, asset=summary.asset, family=summary.family)
    if active_id is None or mode != "auto":
        return promotion_decision(candidate, None, mode=mode)
    try:
        active = store.load_artifacts(session=session, version_id=active_id).meta
    except BtcpError as exc:
        return True, f"promoted: the active version {active_id} is unusable ({exc.message})"
    evidence = PromotionEvidence(
        str(active.get("model")),
        False,
        active.get("metrics", {}).get("mase"),
        DayErrors.from_json(active["day_errors"]) if "day_errors" in active else None,
        label=f"active v{active_id}",
    )
    return promotion_decision(candidate, evidence, mode=mode)


def bootstrap_models(
    settings: Settings, engine: Engine, *, now: datetime, progress: ProgressFn | None = None
) -> dict[str, list[TrainResult | str]]:
    """Per tracked asset with data: train the default risk model (first) and the default
    price model where that family has no active version; what happened, per family."""
    results: dict[str, list[TrainResult | str]] = {}
    for asset in settings.assets:
        results[asset] = [
            _bootstrap_family(settings, engine, asset, family, now=now, progress=progress)
            for family in ("risk", "price")
        ]
    return results


def _bootstrap_family(
    settings: Settings,
    engine: Engine,
    asset: str,
    family: str,
    *,
    now: datetime,
    progress: ProgressFn | None,
) -> TrainResult | str:
    """Train ``family``'s default model for ``asset`` unless a version of it is active."""
    with read_session(engine) as session:
        active = store.active_version_id(session=session, asset=asset, family=family)
    if active is not None:
        return f"{family} version {active} is active"
    name = settings.default_risk_model if family == "risk" else settings.default_model
    request = TrainRequest.model_validate({"asset": asset, "model": name})
    try:
        return train(settings, engine, request, now=now, progress=progress)
    except NoDataError as exc:
        return f"{family} model not trained: {exc.message}"
