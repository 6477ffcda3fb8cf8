"""Human-readable renderings of CLI results (rich tables); ``--json`` bypasses them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # annotations only: `serve` need not build the result models
    from btc_predictor.shapes.results import (
        AssetStatus,
        BacktestHorizon,
        BacktestReport,
        Forecast,
        IngestReport,
        ModelVersion,
        RiskMetrics,
        TrainResult,
    )
    from btc_predictor.shapes.risk_results import Risk, RiskBacktestReport

out = Console(soft_wrap=True)


def show_ingest(report: IngestReport) -> None:
    """A human ingest report."""
    table = Table(title=f"ingest {report.asset} from {report.source}", show_header=False)
    for key in ("fetched", "inserted", "updated", "unchanged", "rejected", "fixed_volume"):
        table.add_row(key.replace("_", " "), str(getattr(report, key)))
    table.add_row("range", f"{report.first or '-'} .. {report.last or '-'}")
    table.add_row("gaps", ", ".join(f"{a}..{b}" for a, b in report.gaps) or "none")
    out.print(table)
    for example in report.rejected_examples:
        out.print(f"  rejected {example}", markup=False)
    for source, reason in report.failed_sources.items():
        out.print(f"  [yellow]fell back:[/] {source} failed: {reason}", highlight=False)
    for note in report.notes:
        out.print(f"  note: {note}", markup=False)


def show_status(rows: list[AssetStatus]) -> None:
    """A human table of stored data."""
    table = Table(title="stored market data")
    for column in ("asset", "rows", "first", "last", "gaps", "sources", "age"):
        table.add_column(column)
    for row in rows:
        age = row.latest_age_seconds
        age_text = "-" if age is None else human_age(age) + (" (stale)" if row.stale else "")
        table.add_row(
            row.asset,
            str(row.rows),
            str(row.first or "-"),
            str(row.last or "-"),
            str(len(row.gaps)),
            ", ".join(row.sources) or "-",
            age_text,
        )
    out.print(table)
    if not any(row.rows for row in rows):
        out.print("no data yet: run `btc-predictor ingest --asset BTC-USD`")


def fmt(value: float | None, spec: str = ",.2f") -> str:
    """A number for humans, or '-' when undefined."""
    return "-" if value is None else format(value, spec)


def show_train(report: TrainResult) -> None:
    """A human training report (the risk model's first, when one command trained both)."""
    from btc_predictor.shapes.results import RiskMetrics

    if report.risk is not None:
        show_train(report.risk)
    if isinstance(report.metrics, RiskMetrics):
        _show_risk_train(report, report.metrics)
        return
    metrics, naive = report.metrics, report.baseline.naive
    table = Table(
        title=f"{report.model} v{report.version} on {report.asset} "
        f"({report.train_start} .. {report.train_end}, "
        f"{report.data_points_used} days, {report.training_duration:.1f} s)"
    )
    for column in ("holdout (last 20%)", report.model, "naive"):
        table.add_column(column)
    for key in ("mae", "rmse", "mape", "r2"):
        table.add_row(key.upper(), fmt(getattr(metrics, key)), fmt(getattr(naive, key)))
    table.add_row("MASE (vs naive)", fmt(metrics.mase, ".4f"), "1.0000")
    table.add_row("direction", fmt(metrics.directional_accuracy, ".1%"), "-")
    table.add_row("DM p-value vs naive", fmt(metrics.dm_pvalue, ".3f"), "-")
    out.print(table)
    out.print(report.promotion_reason, markup=False)


def _show_risk_train(report: TrainResult, metrics: RiskMetrics) -> None:
    """A risk model's training report: range errors against naive-range, QLIKE, coverage."""
    table = Table(
        title=f"{report.model} v{report.version} on {report.asset} (risk; "
        f"{report.train_start} .. {report.train_end}, "
        f"{report.data_points_used} days, {report.training_duration:.1f} s)"
    )
    for column in ("holdout (last 20%), h=1", report.model, "naive-range"):
        table.add_column(column)
    table.add_row("range MAE (pct points)", fmt(metrics.range_mae), fmt(report.baseline.naive.mae))
    table.add_row("range MASE", fmt(metrics.mase, ".4f"), "1.0000")
    table.add_row("QLIKE", fmt(metrics.qlike, ".4f"), "-")
    table.add_row("DM p-value vs naive-range", fmt(metrics.dm_pvalue, ".3f"), "-")
    table.add_row("interval coverage", fmt(metrics.coverage, ".1%"), "-")
    out.print(table)
    out.print(report.promotion_reason, markup=False)


def show_forecast(report: Forecast) -> None:
    """A human forecast table."""
    stale = " [red](stale)[/]" if report.stale else ""
    out.print(
        f"{report.asset} last close {report.last_close:,.2f} on {report.last_date}"
        f"{stale} · {report.model} v{report.model_version}"
    )
    sigma = f", σ̂ from risk v{report.risk_model_version}" if report.risk_model_version else ""
    note = f" ({report.interval_note})" if report.interval_note else ""
    out.print(f"{report.interval_method} intervals{sigma}{note}", markup=False)
    table = Table()
    for column in ("h", "date", "forecast", f"{report.level}% interval", "naive"):
        table.add_column(column)
    risk = Table(title="risk (VaR: the loss in % of the last close)")
    for column in ("h", "VaR 95%", "VaR 99%", "P(up)"):
        risk.add_column(column)
    for p in report.points:
        table.add_row(
            str(p.horizon),
            p.target_date.isoformat(),
            f"{p.value:,.2f}",
            f"{p.lower:,.2f} .. {p.upper:,.2f}",
            f"{p.naive:,.2f}",
        )
        risk.add_row(str(p.horizon), fmt(p.var_95), fmt(p.var_99), fmt(p.p_up, ".3f"))
    out.print(table)
    out.print(risk)


def show_risk(report: Risk) -> None:
    """A human risk table: σ, expected range (in % and in price) with its interval, VaR."""
    stale = " [red](stale)[/]" if report.stale else ""
    out.print(
        f"{report.asset} last close {report.last_close:,.2f} on {report.last_date}"
        f"{stale} · {report.model} v{report.model_version}"
    )
    table = Table()
    columns = ("h", "date", "σ", "range %", f"{report.level}% interval", "range", "naive %")
    for column in (*columns, "VaR 95", "VaR 99"):
        table.add_column(column)
    for p in report.points:
        table.add_row(
            str(p.horizon),
            p.target_date.isoformat(),
            f"{p.volatility:.2%}",
            f"{p.range_pct:.2f}",
            f"{p.range_lower_pct:.2f} .. {p.range_upper_pct:.2f}",
            f"{p.range_price:,.2f}",
            f"{p.naive_range_pct:.2f}",
            "—" if p.var_95 is None else f"{p.var_95:.2f}%",
            "—" if p.var_99 is None else f"{p.var_99:.2f}%",
        )
    out.print(table)


def show_backtest(report: BacktestReport, plot: Path | None) -> None:
    """A human backtest summary per horizon."""
    table = Table(
        title=f"{report.model} on {report.asset} {report.start} .. {report.end}"
        f" ({report.folds} folds, {report.burn_in_folds} burn-in;"
        f" {report.interval_method} {report.level}% intervals)"
    )
    for column in ("h", "n", "MAE", "naive MAE", "MASE", "direction", "coverage", "DM p"):
        table.add_column(column)
    for h in report.horizons:
        table.add_row(
            str(h.h),
            str(h.n),
            fmt(h.mae),
            fmt(h.naive_mae),
            fmt(h.mase, ".4f"),
            fmt(h.directional_accuracy, ".1%"),
            fmt(h.coverage, ".1%"),
            fmt(h.dm_pvalue, ".3f"),
        )
    out.print(table)
    _show_interval_quality(report)
    if plot is not None:
        out.print(f"plot written to {plot}", markup=False)


def _show_interval_quality(report: BacktestReport) -> None:
    """Interval quality per horizon, then the h=1 VaR and p_up line."""
    table = Table(title="intervals: coverage by realised-volatility tercile, Winkler in %")
    for column in ("h", "coverage", "worst 90d", "low vol", "mid vol", "high vol", "Winkler"):
        table.add_column(column)
    for h in report.horizons:
        terciles = h.coverage_by_vol_tercile
        table.add_row(
            str(h.h),
            fmt(h.coverage, ".1%"),
            fmt(h.worst_90d_coverage, ".1%"),
            *(fmt(getattr(terciles, k, None), ".1%") for k in ("low", "mid", "high")),
            fmt(h.winkler),
        )
    out.print(table)
    if report.horizons:
        out.print(_risk_line(report.horizons[0]), markup=False)


def _risk_line(h1: BacktestHorizon) -> str:
    """h=1 VaR violation rates with their Kupiec p-values, and p_up's Brier score and skill."""
    parts = [
        f"VaR {name}: violations {fmt(v.rate, '.1%')} (Kupiec p {fmt(v.kupiec_p, '.2f')})"
        for name, v in (h1.var or {}).items()
    ]
    parts.append(f"p_up Brier {fmt(h1.brier, '.4f')} (skill {fmt(h1.brier_skill, '+.4f')})")
    return "h=1 " + "; ".join(parts)


def show_risk_backtest(report: RiskBacktestReport, plot: Path | None) -> None:
    """A human risk backtest summary per horizon (ranges in % of the previous close)."""
    table = Table(
        title=f"{report.model} (risk) on {report.asset} {report.start} .. {report.end}"
        f" ({report.folds} folds, {report.burn_in_folds} burn-in)"
    )
    for column in ("h", "n", "range MAE", "naive MAE", "MASE", "DM p", "QLIKE/garch", "coverage"):
        table.add_column(column)
    for h in report.horizons:
        table.add_row(
            str(h.h),
            str(h.n),
            fmt(h.range_mae, ".3f"),
            fmt(h.naive_range_mae, ".3f"),
            fmt(h.mase, ".4f"),
            fmt(h.dm_pvalue, ".3f"),
            f"{fmt(h.qlike, '.3f')}/{fmt(h.qlike_garch, '.3f')}",
            fmt(h.coverage, ".1%"),
        )
    out.print(table)
    if plot is not None:
        out.print(f"plot written to {plot}", markup=False)


def plot_risk_backtest(report: RiskBacktestReport, path: Path) -> Path:
    """Realised vs forecast daily range (h=1) with the interval band and naive-range, plus
    range MAE by horizon against naive-range."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot's import
    import matplotlib.pyplot as plt

    rows = [r for r in report.series if r.h == 1]
    dates = [r.target_date for r in rows]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8), height_ratios=[3, 2])
    nan = float("nan")  # burn-in folds have no interval: leave a gap in the band
    lower = [nan if r.lower is None else r.lower for r in rows]
    upper = [nan if r.upper is None else r.upper for r in rows]
    top.fill_between(dates, lower, upper, alpha=0.25, label=f"{report.level}% interval")
    top.plot(dates, [r.actual for r in rows], color="black", linewidth=0.8, label="realised")
    top.plot(dates, [r.forecast for r in rows], linewidth=1, label=f"{report.model} (h=1)")
    top.plot(dates, [r.naive for r in rows], linewidth=0.6, linestyle="--", label="naive-range")
    top.set_ylabel("daily range, % of previous close")
    top.set_title(f"{report.asset} risk walk-forward {report.start} .. {report.end}")
    top.legend()
    steps = [h.h for h in report.horizons]
    model_mae = [h.range_mae for h in report.horizons]
    bottom.plot(steps, model_mae, marker="o", label=f"{report.model} range MAE")
    naive_mae = [h.naive_range_mae for h in report.horizons]
    bottom.plot(steps, naive_mae, marker="x", linestyle="--", label="naive-range MAE")
    bottom.set_xticks(steps)
    bottom.set_xlabel("horizon (days)")
    bottom.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def human_age(seconds: float) -> str:
    """A compact human age."""
    return f"{seconds / 86400:.1f} d" if seconds >= 172800 else f"{seconds / 3600:.1f} h"


def show_models(rows: list[ModelVersion]) -> None:
    """A human table of model versions, newest first."""
    table = Table(title="model versions")
    for column in ("id", "asset", "family", "model", "trained on", "MASE", "active"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r.id),
            r.asset,
            r.family,
            r.model,
            f"{r.train_start} .. {r.train_end}",
            fmt(r.holdout_mase, ".4f"),
            "yes" if r.active else ("pruned" if r.pruned else ""),
        )
    out.print(table)
    if not rows:
        out.print("no models yet: run `btc-predictor train --asset BTC-USD`")


def plot_backtest(report: BacktestReport, path: Path) -> Path:
    """Actual vs forecast (h=1) with the interval band and naive, plus error by horizon."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot's import
    import matplotlib.pyplot as plt

    rows = [r for r in report.series if r.h == 1]
    dates = [r.target_date for r in rows]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8), height_ratios=[3, 2])
    nan = float("nan")  # burn-in folds have no interval: leave a gap in the band
    lower = [nan if r.lower is None else r.lower for r in rows]
    upper = [nan if r.upper is None else r.upper for r in rows]
    band = f"{report.level}% interval ({report.interval_method})"
    top.fill_between(dates, lower, upper, alpha=0.25, label=band)
    top.plot(dates, [r.actual for r in rows], color="black", linewidth=1, label="actual")
    top.plot(dates, [r.forecast for r in rows], linewidth=1, label=f"{report.model} (h=1)")
    top.plot(dates, [r.naive for r in rows], linewidth=0.8, linestyle="--", label="naive")
    top.set_title(f"{report.asset} walk-forward backtest {report.start} .. {report.end}")
    top.legend()
    steps = [h.h for h in report.horizons]
    bottom.plot(steps, [h.mae for h in report.horizons], marker="o", label=f"{report.model} MAE")
    naive_mae = [h.naive_mae for h in report.horizons]
    bottom.plot(steps, naive_mae, marker="x", linestyle="--", label="naive MAE")
    bottom.set_xticks(steps)
    bottom.set_xlabel("horizon (days)")
    bottom.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
