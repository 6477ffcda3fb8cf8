"""The walk-forward backtest use case and its PNG report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from btc_predictor.config import Settings
from btc_predictor.errors import InvalidInputError, NotEnoughDataError
from btc_predictor.forecasting.backtest import backtest
from btc_predictor.forecasting.executors import Executor
from btc_predictor.forecasting.registry import get_model_class
from btc_predictor.services.training import load_training_data
from btc_predictor.sources.base import parse_asset


@dataclass(frozen=True, slots=True)
class BacktestRequest:
    """Mirrors ``btc-predictor backtest`` flags (``days`` and ``start`` are exclusive)."""

    asset: str = "BTC-USD"
    model: str | None = None
    days: int | None = None
    start: date | None = None
    refit_every: int = 30
    horizon: int = 7
    level: int = 90
    seed: int = 0
    epochs: int | None = None


def check_backtest(settings: Settings, request: BacktestRequest) -> None:
    """Reject malformed requests before any data is read."""
    if request.days is not None and request.start is not None:
        raise InvalidInputError("give --days or --start, not both")
    if request.days is not None and request.days < 1:
        raise InvalidInputError(f"--days must be at least 1, got {request.days}")
    if not 1 <= request.horizon <= settings.max_horizon:
        raise InvalidInputError(
            f"horizon {request.horizon} is out of range (1..{settings.max_horizon})"
        )
    if request.refit_every < 1:
        raise InvalidInputError(f"--refit-every must be at least 1, got {request.refit_every}")
    get_model_class(request.model or settings.default_model)


def run_backtest(
    settings: Settings,
    engine: Engine,
    request: BacktestRequest,
    *,
    executor: Executor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Walk forward over the stored closes; the ``backtest --json`` object."""
    check_backtest(settings, request)
    asset = parse_asset(request.asset).symbol
    data = load_training_data(engine, asset, settings.train_start)
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
    )
    return result.to_json([d.isoformat() for d in data.days], asset=asset)


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


def plot_backtest(report: dict[str, Any], path: Path) -> Path:
    """Actual vs forecast (h=1) with the interval band and naive, plus error by horizon."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot's import
    import matplotlib.pyplot as plt

    rows = [r for r in report["series"] if r["h"] == 1]
    dates = [date.fromisoformat(r["target_date"]) for r in rows]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8), height_ratios=[3, 2])
    nan = float("nan")  # burn-in folds have no interval: leave a gap in the band
    lower = [nan if r["lower"] is None else r["lower"] for r in rows]
    upper = [nan if r["upper"] is None else r["upper"] for r in rows]
    top.fill_between(dates, lower, upper, alpha=0.25, label=f"{report['level']}% interval")
    top.plot(dates, [r["actual"] for r in rows], color="black", linewidth=1, label="actual")
    top.plot(dates, [r["forecast"] for r in rows], linewidth=1, label=f"{report['model']} (h=1)")
    top.plot(dates, [r["naive"] for r in rows], linewidth=0.8, linestyle="--", label="naive")
    top.set_title(f"{report['asset']} walk-forward backtest {report['start']} .. {report['end']}")
    top.legend()
    horizons = report["horizons"]
    steps = [h["h"] for h in horizons]
    bottom.plot(steps, [h["mae"] for h in horizons], marker="o", label=f"{report['model']} MAE")
    bottom.plot(
        steps, [h["naive_mae"] for h in horizons], marker="x", linestyle="--", label="naive MAE"
    )
    bottom.set_xticks(steps)
    bottom.set_xlabel("horizon (days)")
    bottom.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
