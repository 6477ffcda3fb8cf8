"""The walk-forward backtest use case and its PNG report."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime

import numpy as np
from sqlalchemy import Engine

from btc_predictor.config import Settings
from btc_predictor.errors import NotEnoughDataError
from btc_predictor.forecasting.backtest import backtest
from btc_predictor.forecasting.executors import Executor
from btc_predictor.forecasting.registry import get_model_class
from btc_predictor.forecasting.risk.ohlc import OHLC
from btc_predictor.services.forecast import check_horizon
from btc_predictor.services.training import admit_fit, load_training_candles, training_data
from btc_predictor.shapes.requests import BacktestRequest
from btc_predictor.shapes.results import BacktestReport
from btc_predictor.sources.base import Candle, parse_asset

EPOCH = date(1970, 1, 1)


def check_backtest(settings: Settings, request: BacktestRequest) -> None:
    """Reject what the shape cannot know before any data is read: horizon, model."""
    check_horizon(settings, request.horizon)
    get_model_class(request.model or settings.default_model)


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
) -> BacktestReport:
    """Walk forward over the stored closes; the ``backtest --json`` object.

    Intervals follow ``BTCP_INTERVALS``: adaptive ones refit ``BTCP_DEFAULT_RISK_MODEL`` on the
    stored candles inside each fold.
    """
    check_backtest(settings, request)
    asset = parse_asset(request.asset).symbol
    candles = load_training_candles(engine, asset, settings.train_start)
    data = training_data(asset, candles)
    start = _start_index(data.days, request)
    adaptive = settings.intervals == "adaptive"
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
        candles=to_ohlc(candles) if adaptive else None,
        risk_model=settings.default_risk_model,
    )
    return BacktestReport.model_validate(
        result.to_json([d.isoformat() for d in data.days], asset=asset)
    )


def to_ohlc(candles: list[Candle]) -> OHLC:
    """Checked consecutive candles as the risk models' OHLC (days numbered for weekdays)."""
    return OHLC.from_arrays(
        [c.open for c in candles],
        [c.high for c in candles],
        [c.low for c in candles],
        [c.close for c in candles],
        np.array([(c.ts.date() - EPOCH).days for c in candles], dtype=np.int64),
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
