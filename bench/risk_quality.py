"""Risk-model benchmark: walk-forward range and volatility forecasts on BTC-USD and ETH-USD.

Usage::

    python bench/risk_quality.py [--models all|name,...] [--report PATH] [--json PATH]

Run by hand, not in CI. For each asset (Bitstamp daily CSVs, loaded by the product's CSV
source; ETH's file has zero-price rows until 2017-11-08, so its usable history starts the day
after the last unusable row) and each registered risk model: a walk-forward from 2020-01-01 to
the last stored day, refit every 30 days on all earlier days, horizons 1..7, 90% conformal range
intervals, with ``garch`` refitted in the same folds as the QLIKE comparison. Then one timed fit
of every model on the full BTC history. Only the product's own code is used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from btc_predictor.forecasting.registry import create_risk_model, risk_model_names
from btc_predictor.forecasting.risk import OHLC
from btc_predictor.forecasting.risk.backtest import risk_backtest
from btc_predictor.sources.base import parse_asset
from btc_predictor.sources.csv import CsvSource

DATA = Path("/work/shared/data")
ASSETS = {"BTC-USD": DATA / "Bitstamp_BTCUSD_d.csv", "ETH-USD": DATA / "Bitstamp_ETHUSD_d.csv"}
WF_START, REFIT, MAX_HORIZON, LEVEL = date(2020, 1, 1), 30, 7, 90
REPORTED_H = (1, 7)
DEFAULT = "har"
# Issue 15's targets for the default risk model.
TARGET_MASE_H1, TARGET_DM_P, TARGET_MASE_H7 = 0.85, 0.01, 0.90
TARGET_QLIKE_GAIN_BTC, TARGET_FIT_S = 0.08, 2.0
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
DEFAULT_REPORT, DEFAULT_JSON = Path("bench/RISK.md"), Path("bench/results/risk_quality.json")


@dataclass(frozen=True)
class Candles:
    """An asset's usable candles and where they came from."""

    asset: str
    ohlc: OHLC
    dates: list[str]
    path: str
    sha256: str


def load_candles(asset: str, path: Path) -> Candles:
    """Every candle after the file's last unusable (non-positive price) row, with day numbers."""
    candles = CsvSource(path).fetch(parse_asset(asset), None, date.today() + timedelta(days=1))
    rows = candles.candles
    bad = [i for i, c in enumerate(rows) if min(c.open, c.high, c.low, c.close) <= 0]
    rows = rows[bad[-1] + 1 :] if bad else rows
    days = [c.ts.date() for c in rows]
    ohlc = OHLC.from_arrays(
        [c.open for c in rows],
        [c.high for c in rows],
        [c.low for c in rows],
        [c.close for c in rows],
        [d.toordinal() - EPOCH_ORDINAL for d in days],  # consecutive: OHLC checks it
    )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Candles(asset, ohlc, [d.isoformat() for d in days], str(path), digest)


def walk_forward(candles: Candles, model: str) -> dict[str, Any]:
    """One model's walk-forward from WF_START: metrics at REPORTED_H, plus its run time."""
    start = candles.dates.index(WF_START.isoformat())
    began = time.perf_counter()
    result = risk_backtest(
        candles.ohlc,
        model=model,
        start=start,
        refit_every=REFIT,
        max_horizon=MAX_HORIZON,
        level=LEVEL,
    )
    seconds = time.perf_counter() - began
    return {
        "model": model,
        "start": candles.dates[result.start],
        "end": candles.dates[result.end],
        "folds": len(result.folds),
        "seconds_with_garch": round(seconds, 2),
        "horizons": {str(h): asdict(result.horizon(h)) for h in REPORTED_H},
    }


def time_fits(candles: Candles, models: list[str]) -> dict[str, float]:
    """Seconds of one fit of each model on all of ``candles`` (max_horizon 30, as served)."""
    timings = {}
    for model in models:
        create_risk_model(model, max_horizon=30).fit(candles.ohlc.head(400))  # warm imports
        began = time.perf_counter()
        create_risk_model(model, max_horizon=30).fit(candles.ohlc)
        timings[model] = round(time.perf_counter() - began, 3)
    return timings


def qlike_gain(scores: dict[str, Any]) -> float | None:
    """1 − QLIKE(model)/QLIKE(garch): positive = better than garch."""
    q, g = scores.get("qlike"), scores.get("qlike_garch")
    return None if q is None or not g else 1.0 - q / g


def _fmt(value: float | None, spec: str = ".3f") -> str:
    """A number for a table cell ("–" for undefined)."""
    return "–" if value is None else format(value, spec)


def asset_table(runs: list[dict[str, Any]]) -> list[str]:
    """Markdown rows: one per model, h=1 and h=7 side by side."""
    lines = [
        "| model | h1 range MASE | h1 DM p vs naive | h1 QLIKE | h1 QLIKE vs garch | "
        "h1 DM p vs garch (QLIKE) | h1 coverage 90% | h1 Winkler | h7 range MASE | "
        "h7 DM p | h7 QLIKE vs garch |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        h1, h7 = run["horizons"]["1"], run["horizons"]["7"]
        g1, g7 = qlike_gain(h1), qlike_gain(h7)
        lines.append(
            f"| {run['model']} | {_fmt(h1['mase'], '.4f')} | {_fmt(h1['dm_pvalue'], '.2g')} | "
            f"{_fmt(h1['qlike'], '.4f')} | {_fmt(None if g1 is None else 100 * g1, '+.1f')}% | "
            f"{_fmt(h1['dm_pvalue_garch'], '.2g')} | {_fmt(h1['coverage'])} | "
            f"{_fmt(h1['winkler'], '.2f')} | {_fmt(h7['mase'], '.4f')} | "
            f"{_fmt(h7['dm_pvalue'], '.2g')} | {_fmt(None if g7 is None else 100 * g7, '+.1f')}% |"
        )
    return lines


def target_lines(report: dict[str, Any]) -> list[str]:
    """The issue's targets for the default model, each with its measured value and verdict."""
    lines = []
    for asset, block in report["assets"].items():
        run = next((r for r in block["runs"] if r["model"] == DEFAULT), None)
        if run is None:
            continue
        h1, h7 = run["horizons"]["1"], run["horizons"]["7"]
        checks: list[tuple[str, float | None, bool | None]] = [
            (f"h=1 range MASE ≤ {TARGET_MASE_H1}", h1["mase"], h1["mase"] <= TARGET_MASE_H1),
            (f"h=1 DM p < {TARGET_DM_P}", h1["dm_pvalue"], h1["dm_pvalue"] < TARGET_DM_P),
            (f"h=7 range MASE ≤ {TARGET_MASE_H7}", h7["mase"], h7["mase"] <= TARGET_MASE_H7),
        ]
        gain = qlike_gain(h1)
        if asset == "BTC-USD":
            met = gain is not None and gain >= TARGET_QLIKE_GAIN_BTC
            checks.append((f"h=1 QLIKE ≥ {TARGET_QLIKE_GAIN_BTC:.0%} better than garch", gain, met))
        else:
            checks.append(("h=1 QLIKE gain vs garch (reported, no target)", gain, None))
        for label, value, passed in checks:
            verdict = "reported" if passed is None else "met" if passed else "**missed**"
            lines.append(f"- {asset} `{DEFAULT}` {label}: {_fmt(value, '.4g')} — {verdict}")
    for model, seconds in report["fit_seconds"].items():
        verdict = "met" if model != DEFAULT or seconds <= TARGET_FIT_S else "**missed**"
        note = f" (target ≤ {TARGET_FIT_S:.0f} s: {verdict})" if model == DEFAULT else ""
        lines.append(f"- one fit of `{model}` on the full BTC history: {seconds:.3f} s{note}")
    return lines


def render(report: dict[str, Any]) -> str:
    """bench/RISK.md from a report dict (see ``main``)."""
    lines = [
        "# Risk models: walk-forward range and volatility forecasts",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Measured {report['measured_at']} on {report['machine']}; load average "
        f"{report['load1']} at the start. The 2 cores were shared with other work, so the "
        "timings are upper bounds (the integrator re-runs timing alone).",
        "",
        f"Protocol: walk-forward from {WF_START.isoformat()} to the last stored day, refit every "
        f"{REFIT} days on all earlier days (expanding window), horizons 1..{MAX_HORIZON}, "
        f"{LEVEL}% log-space conformal range intervals calibrated on earlier folds' residuals "
        "(the most recent 365 per horizon; the first folds are burn-in and excluded from "
        "coverage/Winkler). range MASE and DM are against `naive-range` (today's range) on the "
        "same days; QLIKE is of the variance forecast against the target day's Parkinson "
        "variance, and `garch` is refitted in the same folds for the comparison.",
        "",
    ]
    for asset, block in report["assets"].items():
        lines += [
            f"## {asset}",
            "",
            f"{block['first_day']} .. {block['last_day']} ({block['days']} usable days; "
            f"file `{block['path']}`, sha256 `{block['sha256'][:16]}…`); scored "
            f"{block['runs'][0]['start']} .. {block['runs'][0]['end']}, "
            f"{block['runs'][0]['folds']} folds.",
            "",
            *asset_table(block["runs"]),
            "",
        ]
    lines += ["## Targets (issue 15) and fit times", "", *target_lines(report), ""]
    if report.get("notes"):
        lines += ["## Reading", "", report["notes"], ""]
    return "\n".join(lines)


NOTES = (
    "The default `har` is a HAR regression on weekday-adjusted log Parkinson variance with a "
    "leverage term; its docstring (forecasting/risk/har.py) lists the variants measured and "
    "why this one was chosen, including a check on BTC 2017–2019, a period this report never "
    "scores. The weekday profile matters most: crypto ranges are much lower on weekends "
    "(BTC 2020–2025: Saturday's mean log variance is 1.0 below the week's), which neither "
    "`garch` nor `ewma-vol` model. `garch` (close-to-close GARCH(1,1)-t) beats `ewma-vol` in "
    "QLIKE but not in range MASE. Zero-range days (8 in BTC's 2014–2015 candles) are kept as "
    "data: `har` floors each day's variance at 1% of its training median; with only the global "
    "1e-8 floor those 8 days cost it 0.11 in BTC h=1 QLIKE. Where it is weaker: `har`'s QLIKE "
    "lead over `garch` is significant on BTC at h=1 (DM p above) but not on ETH's shorter "
    "scored window (p≈0.08), and on BTC at h=7 it shrinks to a few percent."
)


def other_sections(text: str) -> str:
    """The sections other scripts keep between their markers in ``text``, to carry over."""
    found = re.finditer(r"<!-- (\S+): begin -->.*?<!-- \1: end -->\n?", text, flags=re.S)
    return "".join("\n" + m.group(0) for m in found)


def main(argv: list[str] | None = None) -> int:
    """Run every (asset, model) walk-forward and the fit timings, write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="all")
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    models = risk_model_names() if args.models == "all" else args.models.split(",")
    report: dict[str, Any] = {
        "command": "python " + shlex.join(["bench/risk_quality.py", *(argv or sys.argv[1:])]),
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "load1": round(os.getloadavg()[0], 2),
        "assets": {},
        "notes": NOTES,
    }
    loaded = {asset: load_candles(asset, path) for asset, path in ASSETS.items()}
    for asset, candles in loaded.items():
        runs = []
        for model in models:
            runs.append(walk_forward(candles, model))
            print(asset, model, json.dumps(runs[-1]["horizons"]["1"]), flush=True)
        report["assets"][asset] = {
            "first_day": candles.dates[0],
            "last_day": candles.dates[-1],
            "days": len(candles.ohlc),
            "path": candles.path,
            "sha256": candles.sha256,
            "runs": runs,
        }
    report["fit_seconds"] = time_fits(loaded["BTC-USD"], models)
    print("fit seconds", report["fit_seconds"], flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    old = args.report.read_text() if args.report.exists() else ""
    args.report.write_text(render(report) + other_sections(old))
    print(f"wrote {args.report} and {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
