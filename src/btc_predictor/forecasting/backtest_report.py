"""A walk-forward backtest's report: series rows, metrics per horizon, and the JSON shape.

Works on integer day indices; :meth:`BacktestResult.to_json` maps them to dates. Coverage and
interval width leave out rows without an interval (burn-in folds); the point metrics do not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from btc_predictor.forecasting import metrics
from btc_predictor.forecasting.base import FloatArray
from btc_predictor.forecasting.training import IntArray


@dataclass(frozen=True)
class FoldInfo:
    """A fold's boundaries (indices) and whether it was interval burn-in."""

    index: int
    train_end: int  # last training close is train_end − 1
    first_origin: int
    last_origin: int
    burn_in: bool


@dataclass(frozen=True)
class HorizonMetrics:
    """Backtest metrics at one horizon; coverage/width exclude burn-in folds."""

    h: int
    n: int
    mae: float | None
    rmse: float | None
    mape: float | None
    mase: float | None
    directional_accuracy: float | None
    coverage: float | None
    interval_width: float | None
    relative_interval_width: float | None
    n_intervals: int
    naive_mae: float | None
    dm_pvalue: float | None


@dataclass(frozen=True)
class BacktestResult:
    """Walk-forward results over day indices; ``series_*`` are parallel arrays, one row per
    (origin, h) with a realised target, sorted by origin then h; NaN bounds = no interval."""

    model: str
    level: int
    refit_every: int
    start: int  # first target index (first close the first fold did not see)
    end: int  # last target index
    folds: list[FoldInfo]
    horizons: list[HorizonMetrics]
    series_origin: IntArray
    series_target: IntArray
    series_h: IntArray
    series_actual: FloatArray
    series_forecast: FloatArray
    series_lower: FloatArray
    series_upper: FloatArray
    series_naive: FloatArray = field(repr=False)

    def to_json(self, dates: Sequence[str], *, asset: str) -> dict[str, Any]:
        """The API/CLI shape, with ``dates[i]`` the ISO date of close ``i``."""
        return {
            "asset": asset,
            "model": self.model,
            "level": self.level,
            "refit_every": self.refit_every,
            "start": dates[self.start],
            "end": dates[self.end],
            "folds": len(self.folds),
            "burn_in_folds": sum(f.burn_in for f in self.folds),
            "fold_details": [_fold_json(f, dates) for f in self.folds],
            "horizons": [asdict(h) for h in self.horizons],
            "series": self._series_json(dates),
        }

    def _series_json(self, dates: Sequence[str]) -> list[dict[str, Any]]:
        """One dict per (origin, h) row; missing bounds become None."""
        rows = zip(
            self.series_origin.tolist(),
            self.series_target.tolist(),
            self.series_h.tolist(),
            self.series_actual.tolist(),
            self.series_forecast.tolist(),
            self.series_lower.tolist(),
            self.series_upper.tolist(),
            self.series_naive.tolist(),
            strict=True,
        )
        return [
            {
                "origin": dates[o],
                "target_date": dates[t],
                "h": h,
                "actual": a,
                "forecast": f,
                "lower": _or_none(lo),
                "upper": _or_none(hi),
                "naive": nv,
            }
            for o, t, h, a, f, lo, hi, nv in rows
        ]


def _fold_json(fold: FoldInfo, dates: Sequence[str]) -> dict[str, Any]:
    """A fold's boundaries as dates."""
    return {
        "index": fold.index,
        "train_end": dates[fold.train_end - 1],
        "first_origin": dates[fold.first_origin],
        "last_origin": dates[fold.last_origin],
        "burn_in": fold.burn_in,
    }


def _or_none(value: float) -> float | None:
    """NaN (no interval) as None for JSON."""
    return None if math.isnan(value) else value


# --- Assembly --------------------------------------------------------------------------------


def assemble(
    y: FloatArray,
    model: str,
    level: int,
    refit_every: int,
    folds: list[FoldInfo],
    origins: IntArray,
    forecasts: FloatArray,
    lower: FloatArray,
    upper: FloatArray,
) -> BacktestResult:
    """Flatten the realised (origin, h) cells into series rows and score each horizon."""
    columns = _columns(y, origins, forecasts, lower, upper)
    return BacktestResult(
        model=model,
        level=level,
        refit_every=refit_every,
        start=int(origins[0]) + 1,
        end=y.size - 1,
        folds=folds,
        horizons=[_horizon_metrics(columns, h) for h in range(1, forecasts.shape[1] + 1)],
        series_origin=columns.origin,
        series_target=columns.target,
        series_h=columns.h,
        series_actual=columns.actual,
        series_forecast=columns.forecast,
        series_lower=columns.lower,
        series_upper=columns.upper,
        series_naive=columns.naive,
    )


@dataclass(frozen=True)
class _Columns:
    """Series rows as parallel arrays (one per realised (origin, h) cell)."""

    origin: IntArray
    target: IntArray
    h: IntArray
    actual: FloatArray
    forecast: FloatArray
    naive: FloatArray
    lower: FloatArray
    upper: FloatArray


def _columns(
    y: FloatArray, origins: IntArray, forecasts: FloatArray, lower: FloatArray, upper: FloatArray
) -> _Columns:
    """The cells ``[n_origins, H]`` whose target lies within ``y``, as rows."""
    steps = np.arange(1, forecasts.shape[1] + 1, dtype=np.int64)
    targets = origins[:, None] + steps[None, :]  # [n, H]
    realised = targets < y.size  # row-major mask: rows come out sorted by origin, then h
    row_origin = np.broadcast_to(origins[:, None], targets.shape)[realised]
    return _Columns(
        origin=row_origin,
        target=targets[realised],
        h=np.broadcast_to(steps[None, :], targets.shape)[realised],
        actual=y[targets[realised]],
        forecast=forecasts[realised],
        naive=y[row_origin],
        lower=lower[realised],
        upper=upper[realised],
    )


def _horizon_metrics(columns: _Columns, h: int) -> HorizonMetrics:
    """Point metrics over all folds; coverage and width over non-burn-in rows only."""
    rows = columns.h == h
    actual, forecast, naive = columns.actual[rows], columns.forecast[rows], columns.naive[rows]
    lower, upper = columns.lower[rows], columns.upper[rows]
    covered = ~np.isnan(lower)
    dm = metrics.diebold_mariano(forecast - actual, naive - actual, h=h)
    return HorizonMetrics(
        h=h,
        n=int(rows.sum()),
        mae=metrics.mae(actual, forecast),
        rmse=metrics.rmse(actual, forecast),
        mape=metrics.mape(actual, forecast),
        mase=metrics.mase(actual, forecast, naive),
        directional_accuracy=metrics.directional_accuracy(naive, actual, forecast),
        coverage=metrics.coverage(actual[covered], lower[covered], upper[covered]),
        interval_width=metrics.interval_width(lower[covered], upper[covered]),
        relative_interval_width=metrics.relative_interval_width(
            lower[covered], upper[covered], forecast[covered]
        ),
        n_intervals=int(covered.sum()),
        naive_mae=metrics.mae(actual, naive),
        dm_pvalue=None if dm is None else dm.pvalue,
    )
