"""Adaptive vs static price intervals through the walk-forward backtest (issue 16, item 5).

Usage::

    python bench/risk_intervals.py [--models naive,lstm] [--risk-model har] [--out bench/RISK.md]

Run by hand (a quality benchmark, not a timing one). Bitstamp BTC-USD and ETH-USD daily candles
through ``CsvSource``; the product's own walk-forward backtest (``forecasting.backtest``),
refit every 30 days, horizons 1..7, with ``intervals="static"`` and ``"adaptive"`` (σ̂ from
``--risk-model`` refit in the same folds) at 80/90/95%. The backtest starts on
``WARM_UP_START`` so that both methods have intervals from the first scored day; every number
is computed on targets from 2020-01-01 to the file's last day, on the rows where both methods
have an interval (the same days side by side). VaR and ``p_up`` come from the 90% runs (they do
not depend on the level). The tables go between this script's markers in ``--out`` (appended
the first time), so ``bench/risk_quality.py``'s part of RISK.md is left alone; the
hand-written reading (``--reading``) follows the tables.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TypeVar, cast

import numpy as np
import numpy.typing as npt

from btc_predictor.forecasting import metrics
from btc_predictor.forecasting.backtest import backtest
from btc_predictor.forecasting.backtest_report import BacktestResult, realised_volatility
from btc_predictor.forecasting.base import FloatArray
from btc_predictor.forecasting.executors import Executor, SerialExecutor
from btc_predictor.forecasting.risk import OHLC
from btc_predictor.sources.base import parse_asset
from btc_predictor.sources.csv import CsvSource

DATA = Path("/work/shared/data")
FILES = {"BTC-USD": "Bitstamp_BTCUSD_d.csv", "ETH-USD": "Bitstamp_ETHUSD_d.csv"}
FIRST = date(2020, 1, 1)
# 184 origins before FIRST: the adaptive replay needs 99 + h realised scores per horizon.
WARM_UP_START = date(2019, 7, 1)
LEVELS = (80, 90, 95)
HORIZONS = (1, 7)
Mask = npt.NDArray[np.bool_]
T = TypeVar("T")
R = TypeVar("R")


class ReusedFolds:
    """Runs each price fold once: the six runs of an asset (two methods, three levels) share
    one model's forecasts, so only the intervals are recomputed (an lstm fit is ~1 s)."""

    def __init__(self, inner: Executor) -> None:
        self._inner = inner
        self._done: dict[tuple[object, ...], object] = {}

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        """Results in input order; folds seen before are not run again."""
        missing = [item for item in items if fold_key(item) not in self._done]
        for item, result in zip(missing, self._inner.map(fn, missing), strict=True):
            self._done[fold_key(item)] = result
        for item in items:
            yield cast("R", self._done[fold_key(item)])


def fold_key(fold: object) -> tuple[object, ...]:
    """What makes a price fold's forecasts: model, seed, training end, history length."""
    names = ("model", "seed", "train_end", "max_horizon", "history")
    model, seed, train_end, max_horizon, history = (getattr(fold, k) for k in names)
    return model, seed, train_end, max_horizon, len(history)


@dataclass(frozen=True)
class Candles:
    """One asset's days and candles, oldest first."""

    days: list[date]
    ohlc: OHLC


def load(asset: str) -> Candles:
    """Daily candles from the first day after any zero-price day (ETH starts with 988)."""
    fetched = CsvSource(DATA / FILES[asset]).fetch(
        parse_asset(asset), None, date(2100, 1, 1) - timedelta(days=1)
    )
    rows = fetched.candles
    bad = [i for i, c in enumerate(rows) if min(c.open, c.low, c.close) <= 0]
    rows = rows[bad[-1] + 1 :] if bad else rows
    days = [c.ts.date() for c in rows]
    ohlc = OHLC.from_arrays(
        [c.open for c in rows],
        [c.high for c in rows],
        [c.low for c in rows],
        [c.close for c in rows],
        [(d - date(1970, 1, 1)).days for d in days],
    )
    return Candles(days, ohlc)


def run(
    candles: Candles,
    model: str,
    risk_model: str,
    method: str,
    level: int,
    folds: Executor,
    warm_up: date = WARM_UP_START,
) -> BacktestResult:
    """One walk-forward backtest of the whole span."""
    return backtest(
        candles.ohlc.close,
        model=model,
        start=candles.days.index(warm_up),
        refit_every=30,
        max_horizon=max(HORIZONS),
        level=level,
        executor=folds,
        intervals=method,  # type: ignore[arg-type]
        candles=candles.ohlc if method == "adaptive" else None,
        risk_model=risk_model,
    )


def common_rows(a: BacktestResult, b: BacktestResult, h: int, first_target: int) -> Mask:
    """Rows of horizon ``h`` with a target from ``first_target`` on and an interval in both."""
    rows: Mask = (a.series_h == h) & (a.series_target >= first_target)
    return rows & np.isfinite(a.series_lower) & np.isfinite(b.series_lower)


def interval_cells(r: BacktestResult, rows: Mask, level: int, vol: FloatArray) -> list[str]:
    """coverage, worst 90, low/mid/high tercile coverage, Winkler %, width % (as text)."""
    a, lo, hi, o = (
        r.series_actual[rows],
        r.series_lower[rows],
        r.series_upper[rows],
        r.series_naive[rows],
    )
    terc = metrics.coverage_by_vol_tercile(a, lo, hi, vol[r.series_target[rows]])
    return [
        fmt(metrics.coverage(a, lo, hi)),
        fmt(metrics.worst_rolling_coverage(a, lo, hi, 90)),
        "/".join(fmt(terc[k]) for k in ("low", "mid", "high")),
        fmt(metrics.winkler(100 * a / o, 100 * lo / o, 100 * hi / o, level), ".2f"),
        fmt(float(np.mean(100 * (hi - lo) / o)), ".2f"),
    ]


def var_cells(r: BacktestResult, rows: Mask) -> list[str]:
    """VaR 95 and 99 at h=1: violation rate, Kupiec p, Christoffersen p."""
    loss = (1 - r.series_actual[rows] / r.series_naive[rows]) * 100
    cells = []
    for var, p in ((r.series_var_95[rows], 0.05), (r.series_var_99[rows], 0.01)):
        hits = loss > var
        pof, ind = metrics.kupiec_pof(hits, p), metrics.christoffersen_independence(hits)
        cells += [
            fmt(float(hits.mean())),
            fmt(None if pof is None else pof.pvalue, ".2f"),
            fmt(None if ind is None else ind.pvalue, ".2f"),
        ]
    return cells


def p_up_cells(r: BacktestResult, rows: Mask) -> list[str]:
    """Brier, skill against 0.5, calibration error and the share of up days."""
    p, up = r.series_p_up[rows], (r.series_actual[rows] > r.series_naive[rows]).astype(float)
    return [
        fmt(metrics.brier(p, up), ".4f"),
        fmt(metrics.brier_skill(p, up), "+.4f"),
        fmt(metrics.calibration_error(p, up), ".4f"),
        fmt(float(up.mean())),
        f"{float(p.min()):.3f}–{float(p.max()):.3f}",
    ]


def fmt(value: float | None, spec: str = ".3f") -> str:
    """A number for the tables; '–' when undefined."""
    return "–" if value is None or math.isnan(value) else format(value, spec)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def choice_line(r: BacktestResult) -> str:
    """How often the adaptive run served static bands, per reported horizon."""
    n = len(r.folds)
    counts = [
        f"h={h}: {sum(h in f.static_horizons for f in r.folds)} of {n} folds" for h in HORIZONS
    ]
    return (
        "Adaptive runs served static bands (chosen per fold on the days realised by its start, "
        f"where they scored significantly better than σ̂-scaled ones) at {'; '.join(counts)}."
    )


def asset_section(
    asset: str, model: str, risk_model: str, warm_up: date = WARM_UP_START
) -> list[str]:
    """Every table of one asset."""
    candles = load(asset)
    first = candles.days.index(FIRST)
    vol = realised_volatility(candles.ohlc.close)
    folds = ReusedFolds(SerialExecutor())
    runs = {
        (m, lv): run(candles, model, risk_model, m, lv, folds, warm_up)
        for m in ("static", "adaptive")
        for lv in LEVELS
    }
    out = [f"### {asset}: targets {FIRST} .. {candles.days[-1]}", ""]
    rows = []
    for level in LEVELS:
        for h in HORIZONS:
            both = common_rows(runs["static", level], runs["adaptive", level], h, first)
            for m in ("static", "adaptive"):
                cells = interval_cells(runs[m, level], both, level, vol)
                rows.append([f"{level}%", str(h), m, str(int(both.sum())), *cells])
    header = [
        "level",
        "h",
        "method",
        "n",
        "coverage",
        "worst 90d",
        "low/mid/high vol",
        "Winkler %",
        "width %",
    ]
    out += [*table(header, rows), "", choice_line(runs["adaptive", 90]), ""]
    var_rows, p_rows = [], []
    for m in ("static", "adaptive"):
        r = runs[m, 90]
        h1 = common_rows(runs["static", 90], runs["adaptive", 90], 1, first)
        var_rows.append([m, *var_cells(r, h1)])
        for h in HORIZONS:
            both = common_rows(runs["static", 90], runs["adaptive", 90], h, first)
            p_rows.append([m, str(h), *p_up_cells(r, both)])
    var_header = [
        "method",
        "VaR95 rate",
        "Kupiec p",
        "Christ. p",
        "VaR99 rate",
        "Kupiec p",
        "Christ. p",
    ]
    out += ["VaR at h=1 (violation: loss above VaR):", "", *table(var_header, var_rows), ""]
    p_header = ["method", "h", "Brier", "skill", "calibration error", "up share", "p_up range"]
    out += ["`p_up`:", "", *table(p_header, p_rows), ""]
    return out


READING = Path("bench/results/risk_intervals_reading.md")  # hand-written, embedded as is
BEGIN, END = "<!-- risk_intervals.py: begin -->", "<!-- risk_intervals.py: end -->"


def with_section(text: str, section: str) -> str:
    """``text`` with this script's section replaced between its markers, or appended."""
    block = f"{BEGIN}\n{section.strip()}\n{END}\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        return head + block + rest.split(END, 1)[1].lstrip("\n")
    return (text.rstrip("\n") + "\n\n" if text else "") + block


def main() -> None:
    """Run both assets and write the markdown section."""
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="naive,lstm", help="comma-separated price models")
    p.add_argument("--risk-model", default="har")
    p.add_argument("--out", type=Path, default=Path("bench/RISK.md"))
    p.add_argument("--reading", type=Path, default=READING, help="commentary embedded after")
    p.add_argument(
        "--warm-up",
        type=date.fromisoformat,
        default=WARM_UP_START,
        help="first origin (scores still start on 2020-01-01): more realised days before the "
        "first scored one give each fold's static/adaptive choice more evidence",
    )
    args = p.parse_args()
    lines = []
    for model in args.models.split(","):
        lines += [
            f"## Price intervals in the walk-forward backtest: {model}, σ̂ from {args.risk_model}",
            "",
            f"`python bench/risk_intervals.py --models {model} --risk-model {args.risk_model}`",
            "",
        ]
        for asset in FILES:
            section = asset_section(asset, model, args.risk_model, args.warm_up)
            print("\n".join(section), flush=True)
            lines += section
    if args.reading.exists():
        lines += ["", args.reading.read_text().strip()]
    text = args.out.read_text() if args.out.exists() else ""
    args.out.write_text(with_section(text, "\n".join(lines)))


if __name__ == "__main__":
    main()
