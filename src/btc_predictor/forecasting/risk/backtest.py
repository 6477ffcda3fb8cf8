"""Walk-forward backtest of a risk model: expanding window, refit every K days, horizons 1..H.

Folds are those of :mod:`btc_predictor.forecasting.folds` (``plan_folds``, ``fold_seed``, run
by ``run_folds``):
fold ``i`` fits on days ``[0, e_i)`` only and forecasts from origins ``e_i−1 .. e_i+K−2``.
``garch`` is refitted in the same folds as the textbook comparison (QLIKE and its DM test).
Intervals on range_pct: each fold is calibrated on the log range residuals realised by its
first origin (earlier folds' errors only), the most recent ``window`` per horizon; folds
short of ``min_residuals(level)`` are burn-in (no interval, excluded from coverage, width and
Winkler; their point forecasts still count). The core works with day indices;
``RiskBacktestResult.to_json`` maps them to dates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from btc_predictor.errors import InvalidInputError
from btc_predictor.forecasting import metrics
from btc_predictor.forecasting.backtest_report import FoldInfo
from btc_predictor.forecasting.base import FloatArray, JSONValue
from btc_predictor.forecasting.executors import Executor, SerialExecutor
from btc_predictor.forecasting.folds import fold_infos, fold_seed, plan_folds, run_folds
from btc_predictor.forecasting.intervals import (
    check_level,
    conformal_quantile,
    has_enough_residuals,
    recent_residuals,
)
from btc_predictor.forecasting.registry import create_risk_model, get_risk_model_class
from btc_predictor.forecasting.risk.base import IntArray
from btc_predictor.forecasting.risk.intervals import DEFAULT_WINDOW, floored
from btc_predictor.forecasting.risk.ohlc import OHLC

COMPARISON = "garch"


@dataclass(frozen=True)
class RiskFold:
    """One fold: plain data, so it can cross a process boundary."""

    index: int
    model: str
    params: dict[str, JSONValue]
    seed: int
    train_end: int  # fitted on candles[:train_end]
    candles: OHLC  # up to the fold's last origin; nothing later
    origins: IntArray
    max_horizon: int


@dataclass(frozen=True)
class RiskFoldForecast:
    """A fold's forecasts ``[n_origins, H]``."""

    index: int
    origins: IntArray
    variance: FloatArray
    range_pct: FloatArray


def make_risk_folds(
    ohlc: OHLC,
    *,
    model: str,
    params: dict[str, JSONValue] | None = None,
    seed: int = 0,
    start: int | None = None,
    refit_every: int = 30,
    max_horizon: int = 30,
) -> list[RiskFold]:
    """Walk-forward folds over ``ohlc`` (``start`` defaults to ceil(0.8·N))."""
    return [
        RiskFold(
            index=index,
            model=model,
            params=dict(params or {}),
            seed=fold_seed(seed, index),
            train_end=train_end,
            candles=ohlc.head(int(origins[-1]) + 1),
            origins=origins,
            max_horizon=max_horizon,
        )
        for index, (train_end, origins) in enumerate(plan_folds(len(ohlc), start, refit_every))
    ]


def run_risk_fold(fold: RiskFold) -> RiskFoldForecast:
    """Fit on the fold's training days and forecast from each of its origins."""
    model = create_risk_model(fold.model, max_horizon=fold.max_horizon, **fold.params)
    model.fit(fold.candles.head(fold.train_end), seed=fold.seed)
    batch = model.forecast_batch(fold.candles, fold.origins)
    return RiskFoldForecast(
        index=fold.index, origins=fold.origins, variance=batch.variance, range_pct=batch.range_pct
    )


@dataclass(frozen=True)
class RiskHorizonMetrics:
    """Backtest metrics at one horizon (range_pct units; coverage etc. exclude burn-in)."""

    h: int
    n: int
    mase: float | None
    range_mae: float | None
    naive_range_mae: float | None
    qlike: float | None
    qlike_garch: float | None
    dm_pvalue: float | None  # vs naive-range, absolute range error
    dm_pvalue_garch: float | None  # vs garch, QLIKE loss
    coverage: float | None
    interval_width: float | None
    winkler: float | None


@dataclass(frozen=True)
class RiskBacktestResult:
    """Walk-forward results over day indices; ``series`` columns are parallel, one row per
    realised (origin, h), sorted by origin then h; NaN bounds = no interval."""

    model: str
    level: int
    refit_every: int
    start: int
    end: int
    folds: list[FoldInfo]
    horizons: list[RiskHorizonMetrics]
    series: dict[str, np.ndarray[Any, Any]] = field(repr=False)

    def horizon(self, h: int) -> RiskHorizonMetrics:
        """The metrics at horizon ``h``."""
        return self.horizons[h - 1]

    def to_json(self, dates: Sequence[str], *, asset: str) -> dict[str, Any]:
        """The API/CLI shape (the price backtest's keys plus ``family``), dates as ISO."""
        return {
            "asset": asset,
            "model": self.model,
            "family": "risk",
            "level": self.level,
            "refit_every": self.refit_every,
            "start": dates[self.start],
            "end": dates[self.end],
            "folds": len(self.folds),
            "burn_in_folds": sum(f.burn_in for f in self.folds),
            "fold_details": [f.to_json(dates) for f in self.folds],
            "horizons": [asdict(m) for m in self.horizons],
            "series": self._series_json(dates),
        }

    def _series_json(self, dates: Sequence[str]) -> list[dict[str, Any]]:
        """One dict per (origin, h) row; missing bounds become None."""
        s = self.series
        rows = zip(
            *(s[k].tolist() for k in ("origin", "target", "h", "actual", "forecast")),
            *(s[k].tolist() for k in ("lower", "upper", "naive", "volatility")),
            strict=True,
        )
        return [
            {
                "origin": dates[o],
                "target_date": dates[t],
                "h": h,
                "actual": a,
                "forecast": f,
                "lower": None if np.isnan(lo) else lo,
                "upper": None if np.isnan(hi) else hi,
                "naive": nv,
                "volatility": v,
            }
            for o, t, h, a, f, lo, hi, nv, v in rows
        ]


def risk_backtest(
    ohlc: OHLC,
    *,
    model: str,
    params: dict[str, JSONValue] | None = None,
    seed: int = 0,
    start: int | None = None,
    refit_every: int = 30,
    max_horizon: int = 30,
    level: int = 90,
    window: int | None = DEFAULT_WINDOW,
    executor: Executor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RiskBacktestResult:
    """Walk-forward backtest of risk model ``model`` (and ``garch`` in the same folds).

    Risk fits take milliseconds to a fraction of a second, so folds run serially by default.
    """
    check_level(level)
    get_risk_model_class(model)  # fail on an unknown name before fitting anything
    folds = make_risk_folds(
        ohlc,
        model=model,
        params=params,
        seed=seed,
        start=start,
        refit_every=refit_every,
        max_horizon=max_horizon,
    )
    runs = [folds] if model == COMPARISON else [folds, _comparison(folds)]
    outputs = run_folds(run_risk_fold, runs, executor or SerialExecutor(), progress)
    own, garch = _stack(outputs[0]), _stack(outputs[-1])
    lower, upper, burn_in = _bounds(ohlc, folds, own, level, window)
    series = _series(ohlc, own, garch, lower, upper)
    return RiskBacktestResult(
        model=model,
        level=level,
        refit_every=refit_every,
        start=int(own.origins[0]) + 1,
        end=len(ohlc) - 1,
        folds=fold_infos(folds, burn_in),
        horizons=[_metrics(series, h, level) for h in range(1, max_horizon + 1)],
        series=series,
    )


def _comparison(folds: list[RiskFold]) -> list[RiskFold]:
    """The comparison's folds: every boundary and seed of ``folds``, default parameters."""
    return [replace(fold, model=COMPARISON, params={}) for fold in folds]


def _stack(outputs: list[RiskFoldForecast]) -> RiskFoldForecast:
    """All folds' forecasts as one block, in origin order."""
    return RiskFoldForecast(
        index=-1,
        origins=np.concatenate([o.origins for o in outputs]),
        variance=np.concatenate([o.variance for o in outputs]),
        range_pct=np.concatenate([o.range_pct for o in outputs]),
    )


def _bounds(
    ohlc: OHLC, folds: list[RiskFold], own: RiskFoldForecast, level: int, window: int | None
) -> tuple[FloatArray, FloatArray, list[bool]]:
    """Interval bounds ``[n_origins, H]`` (NaN in burn-in folds) and each fold's burn-in flag."""
    origins, forecast = own.origins, floored(own.range_pct)
    steps = np.arange(1, forecast.shape[1] + 1)
    targets = origins[:, None] + steps[None, :]
    realised = targets < len(ohlc)
    table = np.full(forecast.shape, np.nan)  # log residuals where the target is realised
    actual = floored(ohlc.range_pct())
    table[realised] = np.log(actual[targets[realised]]) - np.log(forecast[realised])
    lower, upper = np.full(forecast.shape, np.nan), np.full(forecast.shape, np.nan)
    burn_in = []
    for fold in folds:
        first = int(fold.origins[0])
        q = _fold_quantiles(table, origins, first, level, window)
        burn_in.append(q is None)
        if q is not None:
            rows = (origins >= first) & (origins <= fold.origins[-1])
            lower[rows], upper[rows] = forecast[rows] * np.exp(-q), forecast[rows] * np.exp(q)
    return lower, upper, burn_in


def _fold_quantiles(
    table: FloatArray, origins: IntArray, first_origin: int, level: int, window: int | None
) -> FloatArray | None:
    """Half-widths ``(H,)`` from residuals realised by ``first_origin``; None if too few."""
    quantiles = []
    for h in range(1, table.shape[1] + 1):
        recent = recent_residuals(table[origins + h <= first_origin, h - 1], window)
        if not has_enough_residuals(recent, level):
            return None
        quantiles.append(conformal_quantile(recent, level))
    return np.array(quantiles)


def _series(
    ohlc: OHLC,
    own: RiskFoldForecast,
    garch: RiskFoldForecast,
    lower: FloatArray,
    upper: FloatArray,
) -> dict[str, np.ndarray[Any, Any]]:
    """The realised (origin, h) cells as parallel columns, sorted by origin then h."""
    if not np.array_equal(own.origins, garch.origins):
        raise InvalidInputError("comparison folds do not match the model's folds")
    steps = np.arange(1, own.range_pct.shape[1] + 1, dtype=np.int64)
    targets = own.origins[:, None] + steps[None, :]
    realised = targets < len(ohlc)
    origin = np.broadcast_to(own.origins[:, None], targets.shape)[realised]
    ranges, variance = ohlc.range_pct(), ohlc.variance("parkinson")
    return {
        "origin": origin,
        "target": targets[realised],
        "h": np.broadcast_to(steps[None, :], targets.shape)[realised],
        "actual": ranges[targets[realised]],
        "forecast": own.range_pct[realised],
        "lower": lower[realised],
        "upper": upper[realised],
        "naive": ranges[origin],
        "volatility": np.sqrt(own.variance[realised]),
        "realised_variance": variance[targets[realised]],
        "variance": own.variance[realised],
        "garch_variance": garch.variance[realised],
    }


def _metrics(series: dict[str, np.ndarray[Any, Any]], h: int, level: int) -> RiskHorizonMetrics:
    """Point and loss metrics over all folds; interval metrics over non-burn-in rows."""
    rows = series["h"] == h
    actual, forecast, naive = (series[k][rows] for k in ("actual", "forecast", "naive"))
    lower, upper = series["lower"][rows], series["upper"][rows]
    x, f, g = (series[k][rows] for k in ("realised_variance", "variance", "garch_variance"))
    covered = ~np.isnan(lower)
    dm = metrics.diebold_mariano(forecast - actual, naive - actual, h=h)
    dm_garch = metrics.diebold_mariano(metrics.qlike_losses(x, f), metrics.qlike_losses(x, g), h=h)
    return RiskHorizonMetrics(
        h=h,
        n=int(rows.sum()),
        mase=metrics.range_mase(actual, forecast, naive),
        range_mae=metrics.mae(actual, forecast),
        naive_range_mae=metrics.mae(actual, naive),
        qlike=metrics.qlike(x, f),
        qlike_garch=metrics.qlike(x, g),
        dm_pvalue=None if dm is None else dm.pvalue,
        dm_pvalue_garch=None if dm_garch is None else dm_garch.pvalue,
        coverage=metrics.coverage(actual[covered], lower[covered], upper[covered]),
        interval_width=metrics.interval_width(lower[covered], upper[covered]),
        winkler=metrics.winkler(actual[covered], lower[covered], upper[covered], level),
    )
