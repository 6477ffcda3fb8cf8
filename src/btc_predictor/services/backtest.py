"""The walk-forward backtest use case and its PNG report (price and risk models)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime

import numpy as np
from sqlalchemy import Engine

from btc_predictor.config import Settings
from btc_predictor.errors import NotEnoughDataError
from btc_predictor.forecasting.backtest import backtest
from btc_predictor.forecasting.executors import Executor
from btc_predictor.forecasting.registry import get_model_class, get_risk_model_class
from btc_predictor.forecasting.risk.backtest import risk_backtest
from btc_predictor.forecasting.risk.ohlc import OHLC
from btc_predictor.services import risk_training as risk
from btc_predictor.services.forecast import check_horizon
from btc_predictor.services.training import TrainingData, admit_fit
from btc_predictor.services.training_common import load_window
from btc_predictor.shapes.common import family_of
from btc_predictor.shapes.requests import BacktestRequest
from btc_predictor.shapes.results import BacktestReport
from btc_predictor.shapes.risk_results import RiskBacktestReport
from btc_predictor.sources.base import Candle, parse_asset


def check_backtest(settings: Settings, request: BacktestRequest) -> None:
    """Reject what the shape cannot know before any data is read: horizon, model."""
    check_horizon(settings, request.horizon)
    name = request.model or settings.default_model
    if family_of(name) == "risk":
        get_risk_model_class(name)
    else:
        get_model_class(name)


def admit_backtest(
    settings: Settings, engine: Engine, request: BacktestRequest, *, now: datetime
) -> None:
    """Refuse, before it is queued, a backtest that can only fail (see ``admit_fit``; and a
    horizon beyond BTCP_MAX_HORIZON)."""
    check_horizon(settings, request.horizon)
    admit_fit(settings, engine, request, now=now)


def run_backtest(
    settings: Settings,
    engine: Engine,
    request: BacktestRequest,
    *,
    executor: Executor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestReport | RiskBacktestReport:
    """Walk forward over the stored closes (risk models: candles); the ``backtest --json``
    object. Price intervals follow ``BTCP_INTERVALS``: adaptive ones refit
    ``BTCP_DEFAULT_RISK_MODEL`` on the stored candles inside each fold."""
    check_backtest(settings, request)
    if family_of(request.model or settings.default_model) == "risk":
        return run_risk_backtest(settings, engine, request, progress=progress)
    asset = parse_asset(request.asset).symbol
    candles = load_window(engine, asset, settings.train_start)
    data = TrainingData(
        asset,
        np.array([c.close for c in candles], dtype=np.float64),
        [c.ts.date() for c in candles],
    )
    start = _start_index(data.days, request)
    result = backtest(
        data.closes,
        model=request.model or settings.default_model,
        seed=request.seed,
        start=start,
        refit_every=request.refit_every,
        max_horizon=request.horizon,
        level=request.level,
        epochs=request.epochs or settings.train_epochs,
        executor=executor,
        progress=progress,
        intervals=settings.intervals,
        candles=_sigma_candles(settings, engine, asset, candles),
        risk_model=settings.default_risk_model,
    )
    return BacktestReport.model_validate(
        result.to_json([d.isoformat() for d in data.days], asset=asset)
    )


def _sigma_candles(
    settings: Settings, engine: Engine, asset: str, candles: list[Candle]
) -> OHLC | None:
    """The OHLC adaptive intervals refit the risk model on (None for static intervals)."""
    if settings.intervals != "adaptive":
        return None
    risk.refuse_inverted_candles(engine, asset, settings.train_start)
    return risk.risk_data(asset, candles).ohlc


def run_risk_backtest(
    settings: Settings,
    engine: Engine,
    request: BacktestRequest,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> RiskBacktestReport:
    """A risk model's walk-forward over the stored candles, ``garch`` refitted alongside.

    Folds run in this process: a risk fit takes milliseconds (``garch`` ~0.1 s on 4,000
    days), far less than starting a worker process that imports ``arch``.
    """
    asset = parse_asset(request.asset).symbol
    risk.refuse_inverted_candles(engine, asset, settings.train_start)
    data = risk.risk_data(asset, load_window(engine, asset, settings.train_start))
    start = _start_index(data.days, request)
    result = risk_backtest(
        data.ohlc,
        model=request.model or settings.default_risk_model,
        seed=request.seed,
        start=start,
        refit_every=request.refit_every,
        max_horizon=request.horizon,
        level=request.level,
        progress=progress,
    )
    return RiskBacktestReport.model_validate(
        result.to_json([d.isoformat() for d in data.days], asset=asset)
    )


def _start_index(days: list[date], request: BacktestRequest) -> int:
    """Index of the first evaluated day (default: the last 365 days)."""
    if request.start is not None:
        if not days[0] < request.start <= days[-1]:
            raise NotEnoughDataError(
                f"--start {request.start} must fall after {days[0]} and by {days[-1]}"
            )
        return days.index(request.start)
    wanted = request.days or 365
    if wanted >= len(days):
        raise NotEnoughDataError(
            f"--days {wanted} leaves no history to fit on ({len(days)} days stored)"
        )
    return len(days) - wanted
