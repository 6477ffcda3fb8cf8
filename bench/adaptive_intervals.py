"""Evidence for the adaptive-interval method and step (``forecasting/adaptive.py``).

Usage::

    python bench/adaptive_intervals.py [--first 2020-01-01]

Run by hand. Bitstamp BTC-USD and ETH-USD daily closes through ``CsvSource``; naive forecasts
(the models tie naive, NOTES-RISK.md), σ̂ = EWMA(λ) of daily log returns realised by each
origin, scaled by √h; scores accumulate from the first close, coverage is scored on targets
from ``--first``. Prints coverage, worst rolling-90-day coverage, coverage per tercile of the
30-day realised volatility through the target day, and mean width in % of the origin close.
A stand-in for σ̂ until the risk models land; the issue's benchmark (bench/risk_intervals.py)
reruns this with ``BTCP_DEFAULT_RISK_MODEL`` refit every 30 days.
"""

from __future__ import annotations

import argparse
import math
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt

from btc_predictor.forecasting import adaptive, metrics
from btc_predictor.forecasting.base import FloatArray
from btc_predictor.sources.base import parse_asset
from btc_predictor.sources.csv import CsvSource

DATA = Path("/work/shared/data")
FILES = {"BTC-USD": "Bitstamp_BTCUSD_d.csv", "ETH-USD": "Bitstamp_ETHUSD_d.csv"}
# (label, method, step); "static" reads the plain split-conformal bounds of the same run
VARIANTS: list[tuple[str, adaptive.Method, float | None]] = [
    ("static", "normalised", None),
    ("normalised", "normalised", None),
    ("aci", "aci", 0.005),
    ("aci", "aci", 0.01),
    ("aci", "aci", 0.02),
    ("tracker", "tracker", 0.02),
    ("tracker", "tracker", 0.05),
    ("tracker", "tracker", 0.1),
]


def load(asset: str) -> tuple[list[date], FloatArray]:
    """Daily closes of one asset, oldest first, from the first positive close after any zero.

    The ETH file starts with 988 zero-price days (2015-02-25..) and ends on 2021-10-15.
    """
    fetched = CsvSource(DATA / FILES[asset]).fetch(
        parse_asset(asset), None, date(2100, 1, 1) - timedelta(days=1)
    )
    closes = np.array([c.close for c in fetched.candles])
    start = int(np.flatnonzero(closes <= 0)[-1]) + 1 if np.any(closes <= 0) else 0
    return [c.ts.date() for c in fetched.candles][start:], closes[start:]


def ewma_sigma(log_returns: FloatArray, lam: float) -> FloatArray:
    """σ̂ of the next day's log return known after return ``i``, started from the first 30."""
    out, var = np.empty(log_returns.size), float(np.var(log_returns[:30]))
    for i, r in enumerate(log_returns):
        var = lam * var + (1.0 - lam) * r * r
        out[i] = math.sqrt(var)
    return out


def realised_vol(log_returns: FloatArray, window: int = 30) -> FloatArray:
    """Root mean square of the last ``window`` log returns through each day (NaN before)."""
    c = np.concatenate([[0.0], np.cumsum(log_returns**2)])
    out = np.full(log_returns.size, np.nan)
    out[window - 1 :] = np.sqrt((c[window:] - c[:-window]) / window)
    return out


def run(asset: str, first: date, h: int, level: int, lam: float) -> None:
    """Print one table: every variant on one (asset, h, level)."""
    days, closes = load(asset)
    r = np.diff(np.log(closes))  # r[i] = log(close[i+1]/close[i])
    origin, actual = closes[:-h], closes[h:]
    sigma = np.concatenate([[np.nan], ewma_sigma(r, lam)])[:-h] * math.sqrt(h)
    sigma[0] = sigma[1]
    vol = np.concatenate([[np.nan], realised_vol(r)])[h:]  # through the target day
    scored = np.array([d >= first for d in days[h:]])
    print(f"\n{asset} h={h} level={level} EWMA {lam}: targets {first}..{days[-1]}")
    for label, method, step in VARIANTS:
        wf = adaptive.walk_forward(
            origin, origin, actual, sigma, h, level, method=method, step=step
        )
        static = label == "static"
        lo, hi = (wf.static_lower, wf.static_upper) if static else (wf.lower, wf.upper)
        m = scored & np.isfinite(lo)
        terc = metrics.coverage_by_vol_tercile(actual[m], lo[m], hi[m], vol[m])
        var = "" if static or h != 1 else _var_columns(wf, origin[m], actual[m], m)
        print(
            f"  {label:>10} {step or '':>5}  cov {metrics.coverage(actual[m], lo[m], hi[m]):.3f}"
            f"  worst90 {metrics.worst_rolling_coverage(actual[m], lo[m], hi[m]):.3f}"
            f"  terciles {terc['low']:.3f} {terc['mid']:.3f} {terc['high']:.3f}"
            f"  width% {100 * np.mean((hi[m] - lo[m]) / origin[m]):.2f}{var}"
        )


def _var_columns(
    wf: adaptive.WalkForward, origin: FloatArray, actual: FloatArray, rows: npt.NDArray[np.bool_]
) -> str:
    """VaR 95/99 violation rate, Kupiec and Christoffersen p-values on the scored rows."""
    loss = (1.0 - actual / origin) * 100.0
    parts = []
    for name, var, p in (("95", wf.var_95[rows], 0.05), ("99", wf.var_99[rows], 0.01)):
        hits = loss > var
        pof, ind = metrics.kupiec_pof(hits, p), metrics.christoffersen_independence(hits)
        parts.append(
            f"  VaR{name} {hits.mean():.3f} pof {pof.pvalue if pof else math.nan:.2f}"
            f" ind {ind.pvalue if ind else math.nan:.2f}"
        )
    return "".join(parts)


def main() -> None:
    """Parse arguments and print every table."""
    p = argparse.ArgumentParser()
    p.add_argument("--first", type=date.fromisoformat, default=date(2020, 1, 1))
    p.add_argument("--lam", type=float, default=0.94)
    p.add_argument("--levels", default="90", help="comma-separated integer percents")
    args = p.parse_args()
    for asset in FILES:
        for h in (1, 7):
            for level in (int(x) for x in args.levels.split(",")):
                run(asset, args.first, h, level, args.lam)


if __name__ == "__main__":
    main()
