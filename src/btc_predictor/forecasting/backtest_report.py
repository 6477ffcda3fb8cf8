"""A walk-forward backtest's report: series rows, metrics per horizon, and the JSON shape.

Works on integer day indices; :meth:`BacktestResult.to_json` maps them to dates. Coverage and
interval width leave out rows without an interval (burn-in folds); the point metrics do not.
Interval metrics (issue 16): Winkler score in % of the origin close, the worst coverage over
90 consecutive origins, coverage per tercile of the 30-day realised volatility of daily log
returns through the target day; at h=1 only (longer horizons overlap, so their misses are
dependent) the VaR 95/99 backtest (violation rate, Kupiec, Christoffersen) and ``p_up``'s
Brier score, skill against 0.5 and calibration error (outcome: target close > origin close).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from btc_predictor.forecasting import metrics
from btc_predictor.forecasting.base import FloatArray
from btc_predictor.forecasting.training import IntArray

if TYPE_CHECKING:  # backtest_intervals imports the risk backtest, which imports FoldInfo here
    from btc_predictor.forecasting.backtest_intervals import IntervalTable


@dataclass(frozen=True)
class FoldInfo:
    """A fold's boundaries (indices) and whether it was interval burn-in."""

    index: int
    train_end: int  # last training close is train_end − 1
    first_origin: int
    last_origin: int
    burn_in: bool
    # Horizons whose bands were static in this fold (adaptive price backtests only).
    static_horizons: tuple[int, ...] = ()

    def to_json(self, dates: Sequence[str]) -> dict[str, Any]:
        """The fold's boundaries as dates."""
        return {
            "index": self.index,
            "train_end": dates[self.train_end - 1],
            "first_origin": dates[self.first_origin],
            "last_origin": dates[self.last_origin],
            "burn_in": self.burn_in,
            "static_horizons": list(self.static_horizons),
        }


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
    winkler: float | None = None
    worst_90d_coverage: float | None = None
    coverage_by_vol_tercile: dict[str, float | None] = field(default_factory=dict)
    var: dict[str, dict[str, float | None]] | None = None  # h=1 only
    brier: float | None = None  # p_up, h=1 only (also brier_skill, calibration_error)
    brier_skill: float | None = None
    calibration_error: float | None = None


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
    series_var_95: FloatArray = field(repr=False)
    series_var_99: FloatArray = field(repr=False)
    series_p_up: FloatArray = field(repr=False)
    interval_method: str = "static"
    risk_model: str | None = None  # σ̂'s source (adaptive only)

    def to_json(self, dates: Sequence[str], *, asset: str) -> dict[str, Any]:
        """The API/CLI shape, with ``dates[i]`` the ISO date of close ``i``."""
        return {
            "asset": asset,
            "model": self.model,
            "level": self.level,
            "interval_method": self.interval_method,
            "risk_model": self.risk_model,
            "refit_every": self.refit_every,
            "start": dates[self.start],
            "end": dates[self.end],
            "folds": len(self.folds),
            "burn_in_folds": sum(f.burn_in for f in self.folds),
            "fold_details": [f.to_json(dates) for f in self.folds],
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
            self.series_p_up.tolist(),
            self.series_var_95.tolist(),
            self.series_var_99.tolist(),
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
                "p_up": _or_none(p),
                "var_95": _or_none(v95),
                "var_99": _or_none(v99),
            }
            for o, t, h, a, f, lo, hi, nv, p, v95, v99 in rows
        ]


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
    table: IntervalTable,
    *,
    interval_method: str = "static",
    risk_model: str | None = None,
) -> BacktestResult:
    """Flatten the realised (origin, h) cells into series rows and score each horizon."""
    columns = _columns(y, origins, forecasts, table)
    if table.static_horizons is not None:
        folds = [
            replace(f, static_horizons=chosen)
            for f, chosen in zip(folds, table.static_horizons, strict=True)
        ]
    return BacktestResult(
        model=model,
        level=level,
        refit_every=refit_every,
        start=int(origins[0]) + 1,
        end=y.size - 1,
        folds=folds,
        horizons=[_horizon_metrics(columns, h, level) for h in range(1, forecasts.shape[1] + 1)],
        series_origin=columns.origin,
        series_target=columns.target,
        series_h=columns.h,
        series_actual=columns.actual,
        series_forecast=columns.forecast,
        series_lower=columns.lower,
        series_upper=columns.upper,
        series_naive=columns.naive,
        series_var_95=columns.var_95,
        series_var_99=columns.var_99,
        series_p_up=columns.p_up,
        interval_method=interval_method,
        risk_model=risk_model,
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
    var_95: FloatArray
    var_99: FloatArray
    p_up: FloatArray
    vol: FloatArray  # realised volatility through the target day (NaN: under 30 returns)


def realised_volatility(y: FloatArray, window: int = 30) -> FloatArray:
    """Per day t: root mean square of the ``window`` daily log returns ending at t (else NaN)."""
    r2 = np.diff(np.log(y)) ** 2  # r2[t-1] = log(y[t]/y[t-1])²
    out = np.full(y.size, np.nan)
    if r2.size >= window:
        c = np.concatenate([[0.0], np.cumsum(r2)])
        out[window:] = np.sqrt((c[window:] - c[:-window]) / window)
    return out


def _columns(
    y: FloatArray, origins: IntArray, forecasts: FloatArray, table: IntervalTable
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
        lower=table.lower[realised],
        upper=table.upper[realised],
        var_95=table.var_95[realised],
        var_99=table.var_99[realised],
        p_up=table.p_up[realised],
        vol=realised_volatility(y)[targets[realised]],
    )


def _horizon_metrics(columns: _Columns, h: int, level: int) -> HorizonMetrics:
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
        **_interval_metrics(columns, rows & ~np.isnan(columns.lower), level),
        **(_h1_metrics(columns, rows) if h == 1 else {}),
    )


def _interval_metrics(columns: _Columns, rows: npt.NDArray[np.bool_], level: int) -> dict[str, Any]:
    """Winkler (% of the origin close), worst 90-origin coverage, coverage per vol tercile."""
    a, lo, hi, nv = (getattr(columns, k)[rows] for k in ("actual", "lower", "upper", "naive"))
    known = np.isfinite(columns.vol[rows])
    return {
        "winkler": metrics.winkler(100 * a / nv, 100 * lo / nv, 100 * hi / nv, level),
        "worst_90d_coverage": metrics.worst_rolling_coverage(a, lo, hi, 90),
        "coverage_by_vol_tercile": metrics.coverage_by_vol_tercile(
            a[known], lo[known], hi[known], columns.vol[rows][known]
        ),
    }


def _h1_metrics(columns: _Columns, rows: npt.NDArray[np.bool_]) -> dict[str, Any]:
    """VaR 95/99 backtest and p_up's Brier, skill and calibration error on the h=1 rows."""
    loss = (1.0 - columns.actual / columns.naive) * 100.0
    var = {
        name: _var_backtest(loss[rows], values[rows], p)
        for name, values, p in (("95", columns.var_95, 0.05), ("99", columns.var_99, 0.01))
    }
    has_p = rows & ~np.isnan(columns.p_up)
    p_up, up = columns.p_up[has_p], (columns.actual[has_p] > columns.naive[has_p]).astype(float)
    return {
        "var": var,
        "brier": metrics.brier(p_up, up),
        "brier_skill": metrics.brier_skill(p_up, up),
        "calibration_error": metrics.calibration_error(p_up, up),
    }


def _var_backtest(loss: FloatArray, var: FloatArray, p: float) -> dict[str, float | None]:
    """Violation rate (loss above VaR), Kupiec and Christoffersen p-values; None without VaR."""
    known = ~np.isnan(var)
    hits = loss[known] > var[known]
    pof, ind = metrics.kupiec_pof(hits, p), metrics.christoffersen_independence(hits)
    return {
        "rate": float(hits.mean()) if hits.size else None,
        "kupiec_p": None if pof is None else pof.pvalue,
        "christoffersen_p": None if ind is None else ind.pvalue,
    }
