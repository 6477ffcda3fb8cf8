"""Risk-model training (issue 15): stored OHLC candles -> holdout + final fit -> artifacts
-> a stored (and, by the promotion rule, active) risk version.

The pure core is ``forecasting.risk.training``; this module is its edge: it loads and checks
the candles, builds weights.safetensors + meta.json (no model.onnx: serving is numpy), checks
that the stored parameters rebuild the fitted model, and shapes the summary. The training
window's checks, storing and the promotion rule are shared with price models
(``services.training_common``); ``services.training.train`` dispatches here by family.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine

from btc_predictor.config import Settings
from btc_predictor.errors import ArtifactError, NoDataError
from btc_predictor.forecasting.base import ProgressFn
from btc_predictor.forecasting.registry import create_risk_model, get_risk_model_class
from btc_predictor.forecasting.risk.base import RiskForecaster
from btc_predictor.forecasting.risk.ohlc import OHLC
from btc_predictor.forecasting.risk.training import NAIVE, RiskTrainOutcome, train_risk_model
from btc_predictor.services.training_common import (
    Candidate,
    library_versions,
    load_window,
    require_calibration_days,
    store_and_promote,
)
from btc_predictor.shapes.requests import TrainRequest
from btc_predictor.shapes.results import (
    Baseline,
    PointMetrics,
    RiskMetrics,
    TrainResult,
    TrainSummary,
)
from btc_predictor.sources.base import Candle, parse_asset, utc_day
from btc_predictor.storage import model_store as store
from btc_predictor.storage import repository as repo
from btc_predictor.storage.db import read_session

# The stored parameters must rebuild the fitted model: forecasts equal to this relative error.
SERVING_TOLERANCE = 1e-9
EPOCH = date(1970, 1, 1)  # OHLC.day counts days from here (har's weekday profile needs them)
LIBRARIES = ("btc-predictor", "numpy", "safetensors", "arch")  # recorded in meta.json


@dataclass(frozen=True, slots=True)
class RiskData:
    """Contiguous daily candles of the training window, as the risk core takes them."""

    asset: str
    ohlc: OHLC
    days: list[date]

    @property
    def sha256(self) -> str:
        """Fingerprint of exactly what was trained on (days and the four prices)."""
        digest = hashlib.sha256()
        for column in (self.ohlc.open, self.ohlc.high, self.ohlc.low, self.ohlc.close):
            digest.update(np.asarray(column, dtype="<f8").tobytes())
        digest.update(",".join(d.isoformat() for d in self.days).encode())
        return digest.hexdigest()


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
    refuse_inverted_candles(engine, asset, start)
    data = risk_data(asset, load_window(engine, asset, start))
    require_calibration_days(asset, data.days, settings.max_horizon)
    started = time.perf_counter()
    outcome = fit_risk(settings, data, name, request.seed, progress)
    duration = time.perf_counter() - started
    artifacts = build_risk_artifacts(outcome, data, request.seed, now, library_versions(LIBRARIES))
    verify_risk_serving(outcome.model, artifacts, data.ohlc)
    summary = risk_summary(name, data, outcome, duration, request.seed)
    candidate = Candidate(summary, artifacts, outcome.residuals_per_horizon, is_risk_baseline(name))
    return store_and_promote(settings, engine, candidate, request.promote, now)


def refuse_inverted_candles(engine: Engine, asset: str, start: date) -> None:
    """NoDataError naming the first stored day whose high is below its low (ingest rejects
    such rows; this guards databases written before it did, or by hand)."""
    with read_session(engine) as session:
        bad = repo.first_inverted_candle(session=session, asset=asset, start=utc_day(start))
    if bad is not None:
        day = bad.ts.date()
        raise NoDataError(
            f"{asset} candle {day} has high {bad.high:g} below low {bad.low:g}: risk models need "
            f"consistent daily ranges; re-ingest it with `btc-predictor ingest --asset {asset} "
            f"--since {day} --force` or train with a --start after {day}"
        )


def risk_data(asset: str, candles: list[Candle]) -> RiskData:
    """The OHLC of gap-free candles (the caller has refused gaps), days numbered from 1970."""
    days = [c.ts.date() for c in candles]
    ohlc = OHLC.from_arrays(
        [c.open for c in candles],
        [c.high for c in candles],
        [c.low for c in candles],
        [c.close for c in candles],
        day=[(d - EPOCH).days for d in days],
    )
    return RiskData(asset, ohlc, days)


def fit_risk(
    settings: Settings, data: RiskData, name: str, seed: int, progress: ProgressFn | None
) -> RiskTrainOutcome:
    """Holdout evaluation and final fit of risk model ``name`` on ``data``."""
    return train_risk_model(
        lambda: create_risk_model(name, max_horizon=settings.max_horizon),
        data.ohlc,
        seed=seed,
        max_horizon=settings.max_horizon,
        progress=progress,
        days=[d.toordinal() for d in data.days],
    )


def build_risk_artifacts(
    outcome: RiskTrainOutcome, data: RiskData, seed: int, now: datetime, libraries: dict[str, str]
) -> store.ArtifactSet:
    """weights.safetensors and meta.json of a fitted risk model (no model.onnx)."""
    from safetensors.numpy import save

    model = outcome.model
    meta: dict[str, Any] = {
        "format": 1,
        "asset": data.asset,
        "model": model.name,
        "family": "risk",
        "config": model.config(),
        "max_horizon": model.max_horizon,
        "min_history": model.min_history,
        "residuals_per_horizon": outcome.residuals_per_horizon,
        "metrics": outcome.metrics,
        "baseline": outcome.baseline,
        "day_errors": outcome.holdout.day_errors.to_json(),
        "train_start": data.days[0].isoformat(),
        "train_end": data.days[-1].isoformat(),
        "data_points": len(data.ohlc),
        "data_sha256": data.sha256,
        "seed": seed,
        "trained_at": now.isoformat(),
        "libraries": libraries,
    }
    weights = save({k: np.ascontiguousarray(v) for k, v in model.tensors().items()})
    return store.ArtifactSet(None, weights, meta)


def verify_risk_serving(model: RiskForecaster, artifacts: store.ArtifactSet, ohlc: OHLC) -> None:
    """Refuse to store parameters that do not rebuild the fitted model (numpy serving path)."""
    from safetensors.numpy import load

    rebuilt = get_risk_model_class(model.name).from_artifacts(
        artifacts.meta["config"], load(artifacts.weights)
    )
    expected = model.forecast(ohlc, model.max_horizon)
    got = rebuilt.forecast(ohlc, model.max_horizon)
    for name in ("volatility", "range_pct"):
        want, have = getattr(expected, name), getattr(got, name)
        if not np.allclose(have, want, rtol=SERVING_TOLERANCE, atol=0.0):
            worst = float(np.max(np.abs(have / want - 1)))
            raise ArtifactError(
                f"stored {model.name} parameters do not rebuild the model ({name} rel. error "
                f"{worst:.2e})"
            )


def risk_summary(
    name: str, data: RiskData, outcome: RiskTrainOutcome, duration: float, seed: int
) -> TrainSummary:
    """What a risk training measured: the price summary's keys, risk metrics inside."""
    naive = outcome.baseline.get(NAIVE, {})
    return TrainSummary(
        asset=data.asset,
        model=name,
        family="risk",
        seed=seed,
        training_duration=round(duration, 3),
        data_points_used=len(data.ohlc),
        train_start=data.days[0],
        train_end=data.days[-1],
        data_sha256=data.sha256,
        metrics=RiskMetrics.model_validate(outcome.metrics),
        # naive-range's range MAE on the same holdout days, in range_pct points.
        baseline=Baseline(naive=PointMetrics(mae=naive.get("range_mae"))),
    )


def is_risk_baseline(name: str) -> bool:
    """Whether risk model ``name`` is a baseline (never auto-promoted)."""
    return bool(get_risk_model_class(name).is_baseline)
