"""Human-readable renderings of CLI results (rich tables); ``--json`` bypasses them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
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


def _table(
    columns: Iterable[str], rows: Iterable[Iterable[str]], title: str | None = None
) -> Table:
    """A table of ``rows`` under ``columns`` (every view's: price and risk alike)."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


def show_status(rows: list[AssetStatus]) -> None:
    """A human table of stored data."""
    columns = ("asset", "rows", "first", "last", "gaps", "sources", "age")
    out.print(_table(columns, (_status_row(row) for row in rows), "stored market data"))
    if not any(row.rows for row in rows):
        out.print("no data yet: run `btc-predictor ingest --asset BTC-USD`")


def _status_row(row: AssetStatus) -> tuple[str, ...]:
    """One asset's cells in the stored-data table."""
    age = row.latest_age_seconds
    age_text = "-" if age is None else human_age(age) + (" (stale)" if row.stale else "")
    return (
        row.asset,
        str(row.rows),
        str(row.first or "-"),
        str(row.last or "-"),
        str(len(row.gaps)),
        ", ".join(row.sources) or "-",
        age_text,
    )


def fmt(value: float | None, spec: str = ",.2f") -> str:
    """A number for humans, or '-' when undefined."""
    return "-" if value is None else format(value, spec)


def show_train(report: TrainResult) -> None:
    """A human training report (the risk model's first, when one command trained both)."""
    from btc_predictor.shapes.results import RiskMetrics

    if report.risk is not None:
        show_train(report.risk)
    if isinstance(report.metrics, RiskMetrics):
        rows = _risk_train_rows(report, report.metrics)
        _show_train_table(report, ("holdout (last 20%), h=1", "naive-range"), rows, "risk; ")
        return
    metrics, naive = report.metrics, report.baseline.naive
    rows = [
        *((k.upper(), fmt(getattr(metrics, k)), fmt(getattr(naive, k))) for k in _POINT_KEYS),
        ("MASE (vs naive)", fmt(metrics.mase, ".4f"), "1.0000"),
        ("direction", fmt(metrics.directional_accuracy, ".1%"), "-"),
        ("DM p-value vs naive", fmt(metrics.dm_pvalue, ".3f"), "-"),
    ]
    _show_train_table(report, ("holdout (last 20%)", "naive"), rows)


_POINT_KEYS = ("mae", "rmse", "mape", "r2")


def _risk_train_rows(report: TrainResult, metrics: RiskMetrics) -> list[tuple[str, str, str]]:
    """A risk model's training rows: range errors against naive-range, QLIKE, coverage."""
    return [
        ("range MAE (pct points)", fmt(metrics.range_mae), fmt(report.baseline.naive.mae)),
        ("range MASE", fmt(metrics.mase, ".4f"), "1.0000"),
        ("QLIKE", fmt(metrics.qlike, ".4f"), "-"),
        ("DM p-value vs naive-range", fmt(metrics.dm_pvalue, ".3f"), "-"),
        ("interval coverage", fmt(metrics.coverage, ".1%"), "-"),
    ]


def _show_train_table(
    report: TrainResult,
    columns: tuple[str, str],
    rows: list[tuple[str, str, str]],
    family_note: str = "",
) -> None:
    """A training report: (holdout, model, baseline) columns, then the promotion reason."""
    holdout, baseline = columns
    title = (
        f"{report.model} v{report.version} on {report.asset} ({family_note}"
        f"{report.train_start} .. {report.train_end}, "
        f"{report.data_points_used} days, {report.training_duration:.1f} s)"
    )
    out.print(_table((holdout, report.model, baseline), rows, title))
    out.print(report.promotion_reason, markup=False)


def show_forecast(report: Forecast) -> None:
    """A human forecast table."""
    _show_headline(report)
    sigma = f", σ̂ from risk v{report.risk_model_version}" if report.risk_model_version else ""
    note = f" ({report.interval_note})" if report.interval_note else ""
    out.print(f"{report.interval_method} intervals{sigma}{note}", markup=False)
    columns = ("h", "date", "forecast", f"{report.level}% interval", "naive")
    rows = [
        (
            str(p.horizon),
            p.target_date.isoformat(),
            f"{p.value:,.2f}",
            f"{p.lower:,.2f} .. {p.upper:,.2f}",
            f"{p.naive:,.2f}",
        )
        for p in report.points
    ]
    out.print(_table(columns, rows))
    risk = [
        (str(p.horizon), fmt(p.var_95), fmt(p.var_99), fmt(p.p_up, ".3f")) for p in report.points
    ]
    var_title = "risk (VaR: the loss in % of the last close)"
    out.print(_table(("h", "VaR 95%", "VaR 99%", "P(up)"), risk, var_title))


def show_risk(report: Risk) -> None:
    """A human risk table: σ, expected range (in % and in price) with its interval, VaR."""
    _show_headline(report)
    columns = ("h", "date", "σ", "range %", f"{report.level}% interval", "range", "naive %")
    rows = [
        (
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
        for p in report.points
    ]
    out.print(_table((*columns, "VaR 95", "VaR 99"), rows))


def _show_headline(report: Forecast | Risk) -> None:
    """The last close, its day (flagged when stale) and the version that forecast from it."""
    stale = " [red](stale)[/]" if report.stale else ""
    out.print(
        f"{report.asset} last close {report.last_close:,.2f} on {report.last_date}"
        f"{stale} · {report.model} v{report.model_version}"
    )


def show_backtest(report: BacktestReport, plot: Path | None) -> None:
    """A human backtest summary per horizon."""
    title = (
        f"{report.model} on {report.asset} {report.start} .. {report.end}"
        f" ({report.folds} folds, {report.burn_in_folds} burn-in;"
        f" {report.interval_method} {report.level}% intervals)"
    )
    columns = ("h", "n", "MAE", "naive MAE", "MASE", "direction", "coverage", "DM p")
    rows = [
        (
            str(h.h),
            str(h.n),
            fmt(h.mae),
            fmt(h.naive_mae),
            fmt(h.mase, ".4f"),
            fmt(h.directional_accuracy, ".1%"),
            fmt(h.coverage, ".1%"),
            fmt(h.dm_pvalue, ".3f"),
        )
        for h in report.horizons
    ]
    out.print(_table(columns, rows, title))
    _show_interval_quality(report)
    _show_plot_path(plot)


def _show_plot_path(plot: Path | None) -> None:
    """Where a backtest's plot was written (nothing without ``--plot``)."""
    if plot is not None:
        out.print(f"plot written to {plot}", markup=False)


def _show_interval_quality(report: BacktestReport) -> None:
    """Interval quality per horizon, then the h=1 VaR and p_up line."""
    title = "intervals: coverage by realised-volatility tercile, Winkler in %"
    columns = ("h", "coverage", "worst 90d", "low vol", "mid vol", "high vol", "Winkler")
    rows = [
        (
            str(h.h),
            fmt(h.coverage, ".1%"),
            fmt(h.worst_90d_coverage, ".1%"),
            *(fmt(getattr(h.coverage_by_vol_tercile, k, None), ".1%") for k in _TERCILES),
            fmt(h.winkler),
        )
        for h in report.horizons
    ]
    out.print(_table(columns, rows, title))
    if report.horizons:
        out.print(_risk_line(report.horizons[0]), markup=False)


_TERCILES = ("low", "mid", "high")


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
    title = (
        f"{report.model} (risk) on {report.asset} {report.start} .. {report.end}"
        f" ({report.folds} folds, {report.burn_in_folds} burn-in)"
    )
    columns = ("h", "n", "range MAE", "naive MAE", "MASE", "DM p", "QLIKE/garch", "coverage")
    rows = [
        (
            str(h.h),
            str(h.n),
            fmt(h.range_mae, ".3f"),
            fmt(h.naive_range_mae, ".3f"),
            fmt(h.mase, ".4f"),
            fmt(h.dm_pvalue, ".3f"),
            f"{fmt(h.qlike, '.3f')}/{fmt(h.qlike_garch, '.3f')}",
            fmt(h.coverage, ".1%"),
        )
        for h in report.horizons
    ]
    out.print(_table(columns, rows, title))
    _show_plot_path(plot)


def plot_risk_backtest(report: RiskBacktestReport, path: Path) -> Path:
    """Realised vs forecast daily range (h=1) with the interval band and naive-range, plus
    range MAE by horizon against naive-range."""
    style = _PlotStyle(
        band=f"{report.level}% interval",
        actual=("realised", 0.8),
        naive=("naive-range", 0.6),
        title=f"{report.asset} risk walk-forward {report.start} .. {report.end}",
        ylabel="daily range, % of previous close",
        errors=(f"{report.model} range MAE", "naive-range MAE"),
    )
    errors = [h.range_mae for h in report.horizons], [h.naive_range_mae for h in report.horizons]
    return _plot_walk_forward(report, style, errors, path)


def human_age(seconds: float) -> str:
    """A compact human age."""
    return f"{seconds / 86400:.1f} d" if seconds >= 172800 else f"{seconds / 3600:.1f} h"


def show_models(rows: list[ModelVersion]) -> None:
    """A human table of model versions, newest first."""
    columns = ("id", "asset", "family", "model", "trained on", "MASE", "active")
    cells = [
        (
            str(r.id),
            r.asset,
            r.family,
            r.model,
            f"{r.train_start} .. {r.train_end}",
            fmt(r.holdout_mase, ".4f"),
            "yes" if r.active else ("pruned" if r.pruned else ""),
        )
        for r in rows
    ]
    out.print(_table(columns, cells, "model versions"))
    if not rows:
        out.print("no models yet: run `btc-predictor train --asset BTC-USD`")


def plot_backtest(report: BacktestReport, path: Path) -> Path:
    """Actual vs forecast (h=1) with the interval band and naive, plus error by horizon."""
    style = _PlotStyle(
        band=f"{report.level}% interval ({report.interval_method})",
        actual=("actual", 1.0),
        naive=("naive", 0.8),
        title=f"{report.asset} walk-forward backtest {report.start} .. {report.end}",
        ylabel=None,
        errors=(f"{report.model} MAE", "naive MAE"),
    )
    errors = [h.mae for h in report.horizons], [h.naive_mae for h in report.horizons]
    return _plot_walk_forward(report, style, errors, path)


@dataclass(frozen=True, slots=True)
class _PlotStyle:
    """What the price and risk walk-forward plots label differently (lines: label, width)."""

    band: str
    actual: tuple[str, float]
    naive: tuple[str, float]
    title: str
    ylabel: str | None
    errors: tuple[str, str]  # the model's and naive's error by horizon


def _plot_walk_forward(
    report: BacktestReport | RiskBacktestReport,
    style: _PlotStyle,
    errors: tuple[list[float | None], list[float | None]],
    path: Path,
) -> Path:
    """Actual vs forecast (h=1) with the interval band and naive, over ``errors`` by horizon."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot's import
    import matplotlib.pyplot as plt

    rows = [r for r in report.series if r.h == 1]
    dates = [r.target_date for r in rows]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8), height_ratios=[3, 2])
    nan = float("nan")  # burn-in folds have no interval: leave a gap in the band
    lower = [nan if r.lower is None else r.lower for r in rows]
    upper = [nan if r.upper is None else r.upper for r in rows]
    top.fill_between(dates, lower, upper, alpha=0.25, label=style.band)
    (actual, width), (naive, naive_width) = style.actual, style.naive
    top.plot(dates, [r.actual for r in rows], color="black", linewidth=width, label=actual)
    top.plot(dates, [r.forecast for r in rows], linewidth=1, label=f"{report.model} (h=1)")
    top.plot(dates, [r.naive for r in rows], linewidth=naive_width, linestyle="--", label=naive)
    if style.ylabel is not None:
        top.set_ylabel(style.ylabel)
    top.set_title(style.title)
    top.legend()
    steps = [h.h for h in report.horizons]
    bottom.plot(steps, errors[0], marker="o", label=style.errors[0])
    bottom.plot(steps, errors[1], marker="x", linestyle="--", label=style.errors[1])
    bottom.set_xticks(steps)
    bottom.set_xlabel("horizon (days)")
    bottom.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
