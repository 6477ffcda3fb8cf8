"""The train use case: load candles, holdout + final fit, store a verified version, promote.

Price models train on closes (``model.onnx`` served by ONNX Runtime), here; risk models on
OHLC (``services.risk_training``; numpy-served). Both store and promote through
``services.training_common``. Without a model name both defaults are trained,
``BTCP_DEFAULT_RISK_MODEL`` first, and the price summary carries the risk one as ``risk``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine

from btc_predictor.config import Settings
from btc_predictor.errors import (
    ArtifactError,
    BtcpError,
    InvalidInputError,
    NoDataError,
)
from btc_predictor.forecasting import adaptive, interval_choice
from btc_predictor.forecasting.base import FloatArray, Forecaster, ProgressFn
from btc_predictor.forecasting.intervals import DEFAULT_WINDOW
from btc_predictor.forecasting.onnx_runtime import OnnxModel
from btc_predictor.forecasting.registry import (
    create_model,
    create_risk_model,
    get_model_class,
)
from btc_predictor.forecasting.risk.training import holdout_sigma
from btc_predictor.forecasting.training import TrainOutcome, train_model
from btc_predictor.services import risk_training as risk
from btc_predictor.services.ingest import require_candles
from btc_predictor.services.training_common import (
    Candidate,
    library_versions,
    load_window,
    require_calibration_days,
    store_and_promote,
)
from btc_predictor.shapes.common import family_of
from btc_predictor.shapes.requests import ModelFit, TrainRequest
from btc_predictor.shapes.results import (
    Baseline,
    HoldoutMetrics,
    PointMetrics,
    TrainResult,
    TrainSummary,
)
from btc_predictor.sources.base import Candle, parse_asset
from btc_predictor.storage import model_store as store
from btc_predictor.storage.db import read_session

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
            return risk.train_risk(settings, engine, request, now=now, progress=progress)
        return train_price(settings, engine, request, now=now, progress=progress)
    risk_request = request.model_copy(update={"model": settings.default_risk_model})
    price_request = request.model_copy(update={"model": settings.default_model})
    risk_result = risk.train_risk(settings, engine, risk_request, now=now, progress=progress)
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
    require_calibration_days(asset, data.days, settings.max_horizon)
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
    is_baseline = get_model_class(name).is_baseline
    candidate = Candidate(summary, artifacts, outcome.residuals_per_horizon, is_baseline)
    return store_and_promote(settings, engine, candidate, request.promote, now)


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
        "libraries": library_versions(PRICE_LIBRARIES),
    }
    weights = save({k: np.ascontiguousarray(v) for k, v in model.tensors().items()})
    return store.ArtifactSet(model.to_onnx(), weights, meta)


PRICE_LIBRARIES = ("btc-predictor", "numpy", "torch", "onnx", "onnxruntime", "safetensors")


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
