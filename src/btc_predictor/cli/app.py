"""The ``btc-predictor`` commands: thin over ``services``; requests are ``shapes`` built from
the flags, results are printed as JSON (``--json``) or by ``views``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from btc_predictor.cli import views
from btc_predictor.cli.common import (
    AssetOpt,
    EpochsOpt,
    HorizonOpt,
    JsonFlag,
    LevelOpt,
    ModelOpt,
    SeedOpt,
    StartOpt,
    VersionArg,
    build,
    checked,
    command,
    engine,
    epochs_progress,
    err,
    out,
    print_json,
    progress,
    safe_url,
    settings,
    state,
    writable_file,
    writable_folder,
)
from btc_predictor.shapes.common import (
    DEFAULT_ASSET,
    DEFAULT_HORIZON,
    DEFAULT_LEVEL,
    DEFAULT_REFIT_EVERY,
    ModelFamily,
    ModelName,
    VersionId,
)
from btc_predictor.sources.base import utc_now

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="btc-predictor: honest crypto price forecasting (ingest, train, forecast, serve).",
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
data_app = typer.Typer(no_args_is_help=True, help="Stored market data.")
models_app = typer.Typer(no_args_is_help=True, help="Trained model versions.")
app.add_typer(db_app, name="db")
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """btc-predictor command line."""
    state.debug = debug


@command(db_app, "upgrade")
def db_upgrade() -> None:
    """Create or migrate the database schema to the newest revision."""
    from btc_predictor.storage.db import create_db_engine, upgrade

    config = settings()
    revision = upgrade(create_db_engine(config))
    out.print(f"database at revision {revision}: {safe_url(config)}")


@command(app)
def ingest(
    asset: AssetOpt = DEFAULT_ASSET,
    source: Annotated[
        str | None, typer.Option(help="yahoo | exchange:<id> | csv (default: BTCP_SOURCES chain).")
    ] = None,
    path: Annotated[Path | None, typer.Option(help="CSV file (implies --source csv).")] = None,
    since: Annotated[str | None, typer.Option(help="Fetch from this day (YYYY-MM-DD).")] = None,
    force: Annotated[bool, typer.Option(help="Let a non-owning source overwrite days.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Fetch daily candles into the database (incremental, validated, idempotent)."""
    from btc_predictor.services.ingest import ingest as run_ingest
    from btc_predictor.shapes.requests import IngestRequest

    request = build(IngestRequest, asset=asset, source=source, path=path, since=since, force=force)
    config = settings()
    report = run_ingest(config, engine(config), request, now=utc_now())
    print_json(report) if as_json else views.show_ingest(report)


@command(data_app, "status")
def data_status(
    asset: Annotated[str | None, typer.Option(help="One asset (default: all).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """What is stored per asset: rows, range, gaps, sources and data age."""
    from btc_predictor.services.ingest import data_status as status

    config = settings()
    rows = status(config, engine(config), asset=asset, now=utc_now())
    if as_json:
        print_json(rows[0] if asset else rows)
    else:
        views.show_status(rows)


@command(data_app, "bootstrap")
def data_bootstrap() -> None:
    """Ingest the tracked assets if the database is empty (BTCP_BOOTSTRAP_CSV, else online)."""
    from btc_predictor.services.ingest import bootstrap

    config = settings()
    result = bootstrap(config, engine(config), now=utc_now())
    if result.skipped:
        out.print("database already holds market data: nothing to bootstrap")
    for report in result.reports:
        views.show_ingest(report)
    for asset, reason in result.failures.items():
        err.print(f"warning: could not ingest {asset}: {reason}", markup=False)
        err.print(
            "  offline? set BTCP_BOOTSTRAP_CSV=/path/to/file.csv (CryptoDataDownload or "
            f"Yahoo format), or later run `btc-predictor ingest --asset {asset}`",
            markup=False,
        )


@command(app)
def train(
    asset: AssetOpt = DEFAULT_ASSET,
    model: Annotated[
        str | None,
        typer.Option(
            help="Price or risk model (default: BTCP_DEFAULT_RISK_MODEL, then BTCP_DEFAULT_MODEL)."
        ),
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="First training day (default BTCP_TRAIN_START).")
    ] = None,
    seed: SeedOpt = 0,
    epochs: EpochsOpt = None,
    promote: Annotated[str, typer.Option(help="auto | always | never.")] = "auto",
    as_json: JsonFlag = False,
) -> None:
    """Train a model: 80/20 holdout metrics against naive, then a final fit that is stored.

    Without --model: BTCP_DEFAULT_RISK_MODEL, then BTCP_DEFAULT_MODEL (JSON: the price
    summary with the risk one as `risk`)."""
    from btc_predictor.services.training import train as run_train
    from btc_predictor.shapes.requests import TrainRequest

    request = build(
        TrainRequest,
        asset=asset,
        model=model,
        start=start,
        seed=seed,
        epochs=epochs,
        promote=promote,
    )
    config = settings()
    with progress("training (holdout, then final fit) epochs") as update:
        report = run_train(
            config, engine(config), request, now=utc_now(), progress=epochs_progress(update)
        )
    print_json(report) if as_json else views.show_train(report)


@command(app)
def predict(
    asset: AssetOpt = DEFAULT_ASSET,
    horizon: HorizonOpt = DEFAULT_HORIZON,
    level: LevelOpt = DEFAULT_LEVEL,
    model: Annotated[
        str | None, typer.Option(help="Newest version of this kind instead of the active one.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Forecast from stored data with the active model (ONNX Runtime; no torch)."""
    from btc_predictor.services.forecast import predict as run_predict
    from btc_predictor.shapes.requests import ForecastRequest

    request = build(ForecastRequest, asset=asset, horizon=horizon, level=level, model=model)
    config = settings()
    report = run_predict(config, engine(config), request, now=utc_now())
    print_json(report) if as_json else views.show_forecast(report)


@command(app)
def risk(
    asset: AssetOpt = DEFAULT_ASSET,
    horizon: HorizonOpt = DEFAULT_HORIZON,
    level: LevelOpt = DEFAULT_LEVEL,
    model: Annotated[
        str | None,
        typer.Option(help="Newest version of this risk kind instead of the active risk model."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Forecast daily volatility and range (with its interval) and VaR from stored data."""
    from btc_predictor.services.risk import risk as run_risk
    from btc_predictor.shapes.requests import RiskRequest

    request = build(RiskRequest, asset=asset, horizon=horizon, level=level, model=model)
    config = settings()
    report = run_risk(config, engine(config), request, now=utc_now())
    print_json(report) if as_json else views.show_risk(report)


@command(app)
def backtest(
    asset: AssetOpt = DEFAULT_ASSET,
    model: ModelOpt = None,
    days: Annotated[
        int | None, typer.Option(help="Evaluate the last N days (default 365).")
    ] = None,
    start: StartOpt = None,
    refit_every: Annotated[
        int, typer.Option(help="Refit the model every K days.")
    ] = DEFAULT_REFIT_EVERY,
    horizon: HorizonOpt = DEFAULT_HORIZON,
    level: LevelOpt = DEFAULT_LEVEL,
    seed: SeedOpt = 0,
    epochs: EpochsOpt = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG report here.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Walk-forward backtest with refits; every horizon against naive, with coverage and DM.

    A risk model (--model har|ewma-vol|garch|naive-range) is scored on the daily range against
    naive-range, with QLIKE next to garch refitted in the same folds."""
    from btc_predictor.services.backtest import run_backtest
    from btc_predictor.shapes.requests import BacktestRequest
    from btc_predictor.shapes.risk_results import RiskBacktestReport

    request = build(
        BacktestRequest,
        asset=asset,
        model=model,
        days=days,
        start=start,
        refit_every=refit_every,
        horizon=horizon,
        level=level,
        seed=seed,
        epochs=epochs,
    )
    if plot is not None:
        writable_file(plot, "--plot")
    config = settings()
    with progress("backtest folds") as update:
        report = run_backtest(config, engine(config), request, progress=update)
    if isinstance(report, RiskBacktestReport):
        if plot is not None:
            views.plot_risk_backtest(report, plot)
        print_json(report) if as_json else views.show_risk_backtest(report, plot)
        return
    if plot is not None:
        views.plot_backtest(report, plot)
    print_json(report) if as_json else views.show_backtest(report, plot)


@command(models_app, "list")
def models_list(
    asset: Annotated[str | None, typer.Option(help="Only this asset.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model kind.")] = None,
    family: Annotated[str | None, typer.Option(help="Only this family: price | risk.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Model versions, newest first (each with its family: price or risk)."""
    from btc_predictor.services.versions import list_models

    if model is not None:
        checked(ModelName, model, "--model")
    if family is not None:
        checked(ModelFamily, family, "--family")
    rows = list_models(engine(settings()), asset=asset, model=model, family=family)
    print_json(rows) if as_json else views.show_models(rows)


@command(models_app, "bootstrap")
def models_bootstrap() -> None:
    """Train the default risk and price models for tracked assets with data but no active
    version of that family (risk first)."""
    from btc_predictor.services.training import bootstrap_models

    config = settings()
    what = f"{config.default_risk_model}, then {config.default_model}"
    with progress(f"training {what} (holdout, then final fit)") as update:
        results = bootstrap_models(
            config, engine(config), now=utc_now(), progress=epochs_progress(update)
        )
    for asset, outcomes in results.items():
        for result in outcomes:
            if isinstance(result, str):
                out.print(f"{asset}: {result}", markup=False)
            else:
                views.show_train(result)


@command(models_app, "show")
def models_show(version: VersionArg) -> None:
    """One version in full (JSON), with its promotions."""
    from btc_predictor.services.versions import show_model

    print_json(show_model(engine(settings()), checked(VersionId, version, "version")))


@command(models_app, "promote")
def models_promote(version: VersionArg, as_json: JsonFlag = False) -> None:
    """Make a version the active one of its asset and family."""
    from btc_predictor.services.versions import promote_model

    version = checked(VersionId, version, "version")
    row = promote_model(engine(settings()), version, now=utc_now(), reason="promoted by hand (cli)")
    print_json(row) if as_json else out.print(
        f"{row.asset}: version {row.id} ({row.model}) is active"
    )


@command(models_app, "rollback")
def models_rollback(
    asset: AssetOpt = DEFAULT_ASSET,
    family: Annotated[str, typer.Option(help="Which active version: price | risk.")] = "price",
    as_json: JsonFlag = False,
) -> None:
    """Reactivate the previously promoted version of one family (the other is untouched)."""
    from btc_predictor.services.versions import rollback_model
    from btc_predictor.shapes.requests import RollbackRequest

    request = build(RollbackRequest, family=family)
    row = rollback_model(engine(settings()), asset, now=utc_now(), family=request.family)
    print_json(row) if as_json else out.print(
        f"{row.asset}: rolled back to {row.family} version {row.id} ({row.model})"
    )


@command(models_app, "export")
def models_export(
    version: VersionArg, directory: Annotated[Path, typer.Argument(help="Output folder.")]
) -> None:
    """Write model.onnx, weights.safetensors and meta.json of a version to a folder."""
    from btc_predictor.services.versions import export_model

    version = checked(VersionId, version, "version")
    writable_folder(directory, "output folder")
    for path in export_model(engine(settings()), version, directory):
        out.print(str(path), markup=False)


@command(app)
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default BTCP_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default BTCP_PORT).")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="uvicorn worker processes.")] = 1,
) -> None:
    """Serve the API (and, with BTCP_EMBEDDED_WORKER=true, one job-worker subprocess)."""
    from btc_predictor.api.serve import run_server

    config = settings()
    run_server(config, host=host or config.host, port=port or config.port, workers=workers)


@command(app)
def worker() -> None:
    """Run queued jobs and the schedules; serves /metrics and /health/live on BTCP_WORKER_PORT."""
    from btc_predictor.jobs.worker import run_worker

    run_worker(settings())


def main() -> None:
    """Console-script entry point."""
    app()
