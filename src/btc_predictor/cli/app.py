"""The ``btc-predictor`` command line: thin commands over ``services``.

Exit codes: 0 ok, 1 unexpected error, 2 bad input or unusable data (one line on stderr,
no traceback unless ``--debug``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from btc_predictor.cli import views
from btc_predictor.config import Settings
from btc_predictor.errors import BtcpError, InvalidInputError

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

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")


@dataclass(slots=True)
class _State:
    debug: bool = False


_state = _State()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """btc-predictor command line."""
    _state.debug = debug


@contextmanager
def _errors() -> Iterator[None]:
    """Map domain errors to exit 2 and anything else to exit 1, one line each."""
    try:
        yield
    except BtcpError as exc:
        if _state.debug:
            raise
        err.print(f"error: {exc.message}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    except ValidationError as exc:
        if _state.debug:
            raise
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]).upper()
        err.print(f"error: invalid setting BTCP_{where}: {first['msg']}", markup=False)
        raise typer.Exit(2) from None
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as exc:
        if _state.debug:
            raise
        err.print(
            f"unexpected error: {type(exc).__name__}: {exc} (rerun with --debug for details)",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(1) from None


def _run(fn: Callable[[], T]) -> T:
    """Run a command body under the error mapping."""
    with _errors():
        return fn()


def _settings() -> Settings:
    """Settings from the environment, with logging configured."""
    from btc_predictor.logs import configure_logging

    settings = Settings()
    configure_logging(settings)
    return settings


def _engine(settings: Settings, *, migrate: bool = True) -> Any:
    """The database engine, migrated to head first (ingest/serve upgrade automatically)."""
    from btc_predictor.storage.db import create_db_engine, upgrade

    engine = create_db_engine(settings)
    if migrate:
        upgrade(engine)
    return engine


def _parse_day(text: str | None, flag: str) -> date | None:
    """A YYYY-MM-DD flag value, or a clear error."""
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(f"{flag} `{text}` is not a date (use YYYY-MM-DD)") from None


def _print_json(payload: Any) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(payload) + "\n")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database schema to the newest revision."""

    def body() -> None:
        from btc_predictor.storage.db import create_db_engine, upgrade

        settings = _settings()
        revision = upgrade(create_db_engine(settings))
        out.print(f"database at revision {revision}: {_safe_url(settings)}")

    _run(body)


def _safe_url(settings: Settings) -> str:
    """The database URL without its password."""
    from sqlalchemy.engine import make_url

    return make_url(settings.resolved_database_url).render_as_string(hide_password=True)


@app.command()
def ingest(
    asset: Annotated[str, typer.Option(help="Asset symbol, BASE-QUOTE.")] = "BTC-USD",
    source: Annotated[
        str | None, typer.Option(help="yahoo | exchange:<id> | csv (default: BTCP_SOURCES chain).")
    ] = None,
    path: Annotated[Path | None, typer.Option(help="CSV file (implies --source csv).")] = None,
    since: Annotated[str | None, typer.Option(help="Fetch from this day (YYYY-MM-DD).")] = None,
    force: Annotated[bool, typer.Option(help="Let a non-owning source overwrite days.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Fetch daily candles into the database (incremental, validated, idempotent)."""

    def body() -> None:
        from btc_predictor.services.ingest import IngestRequest
        from btc_predictor.services.ingest import ingest as run_ingest

        request = IngestRequest(asset, source, path, _parse_day(since, "--since"), force)
        settings = _settings()
        report = run_ingest(settings, _engine(settings), request, now=datetime.now(UTC))
        _print_json(report.to_json()) if as_json else views.show_ingest(report.to_json())

    _run(body)


@data_app.command("status")
def data_status(
    asset: Annotated[str | None, typer.Option(help="One asset (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What is stored per asset: rows, range, gaps, sources and data age."""

    def body() -> None:
        from btc_predictor.services.ingest import data_status as status

        settings = _settings()
        rows = status(settings, _engine(settings), asset=asset, now=datetime.now(UTC))
        payload = [row.to_json() for row in rows]
        if as_json:
            _print_json(payload[0] if asset else payload)
        else:
            views.show_status(payload)

    _run(body)


@data_app.command("bootstrap")
def data_bootstrap() -> None:
    """Ingest the tracked assets if the database is empty (BTCP_BOOTSTRAP_CSV, else online)."""

    def body() -> None:
        from btc_predictor.services.ingest import bootstrap

        settings = _settings()
        result = bootstrap(settings, _engine(settings), now=datetime.now(UTC))
        if result.skipped:
            out.print("database already holds market data: nothing to bootstrap")
        for report in result.reports:
            views.show_ingest(report.to_json())
        for asset, reason in result.failures.items():
            err.print(f"warning: could not ingest {asset}: {reason}", markup=False)
            err.print(
                "  offline? set BTCP_BOOTSTRAP_CSV=/path/to/file.csv (CryptoDataDownload or "
                f"Yahoo format), or later run `btc-predictor ingest --asset {asset}`",
                markup=False,
            )

    _run(body)


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr when it is a terminal; a no-op otherwise."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
AssetOpt = Annotated[str, typer.Option(help="Asset symbol, BASE-QUOTE.")]
SeedOpt = Annotated[int, typer.Option(help="Random seed (results are reproducible).")]


@app.command()
def train(
    asset: AssetOpt = "BTC-USD",
    model: Annotated[
        str | None, typer.Option(help="Model kind (default BTCP_DEFAULT_MODEL).")
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="First training day (default BTCP_TRAIN_START).")
    ] = None,
    seed: SeedOpt = 0,
    epochs: Annotated[int | None, typer.Option(min=1, help="Cap on epochs.")] = None,
    promote: Annotated[str, typer.Option(help="auto | always | never.")] = "auto",
    as_json: JsonFlag = False,
) -> None:
    """Train a model: 80/20 holdout metrics against naive, then a final fit that is stored."""

    def body() -> None:
        from btc_predictor.services.training import TrainRequest
        from btc_predictor.services.training import train as run_train

        settings = _settings()
        request = TrainRequest(asset, model, _parse_day(start, "--start"), seed, epochs, promote)
        engine = _engine(settings)
        with _progress("training (holdout, then final fit) epochs") as update:
            report = run_train(
                settings,
                engine,
                request,
                now=datetime.now(UTC),
                progress=lambda e, total, _loss: update(e, total),
            )
        _print_json(report) if as_json else views.show_train(report)

    _run(body)


@app.command()
def predict(
    asset: AssetOpt = "BTC-USD",
    horizon: Annotated[int, typer.Option(help="Days ahead (1..BTCP_MAX_HORIZON).")] = 7,
    level: Annotated[int, typer.Option(help="Interval level in percent (50..99).")] = 90,
    model: Annotated[
        str | None, typer.Option(help="Newest version of this kind instead of the active one.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Forecast from stored data with the active model (ONNX Runtime; no torch)."""

    def body() -> None:
        from btc_predictor.services.forecast import ForecastRequest
        from btc_predictor.services.forecast import predict as run_predict

        settings = _settings()
        report = run_predict(
            settings,
            _engine(settings),
            ForecastRequest(asset, horizon, level, model),
            now=datetime.now(UTC),
        )
        _print_json(report) if as_json else views.show_forecast(report)

    _run(body)


@app.command()
def backtest(
    asset: AssetOpt = "BTC-USD",
    model: Annotated[
        str | None, typer.Option(help="Model kind (default BTCP_DEFAULT_MODEL).")
    ] = None,
    days: Annotated[
        int | None, typer.Option(help="Evaluate the last N days (default 365).")
    ] = None,
    start: Annotated[str | None, typer.Option(help="Evaluate from this day instead.")] = None,
    refit_every: Annotated[int, typer.Option(help="Refit the model every K days.")] = 30,
    horizon: Annotated[int, typer.Option(help="Horizons 1..H.")] = 7,
    level: Annotated[int, typer.Option(help="Interval level in percent (50..99).")] = 90,
    seed: SeedOpt = 0,
    epochs: Annotated[int | None, typer.Option(min=1, help="Cap on epochs per refit.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG report here.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Walk-forward backtest with refits; every horizon against naive, with coverage and DM."""

    def body() -> None:
        from btc_predictor.services.backtest import BacktestRequest, plot_backtest, run_backtest

        settings = _settings()
        request = BacktestRequest(
            asset,
            model,
            days,
            _parse_day(start, "--start"),
            refit_every,
            horizon,
            level,
            seed,
            epochs,
        )
        with _progress("backtest folds") as update:
            report = run_backtest(settings, _engine(settings), request, progress=update)
        if plot is not None:
            plot_backtest(report, plot)
        _print_json(report) if as_json else views.show_backtest(report, plot)

    _run(body)


VersionArg = Annotated[int, typer.Argument(help="Model version id.")]


@models_app.command("list")
def models_list(
    asset: Annotated[str | None, typer.Option(help="Only this asset.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model kind.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Model versions, newest first."""

    def body() -> None:
        from btc_predictor.services.versions import list_models

        settings = _settings()
        rows = list_models(_engine(settings), asset=asset, model=model)
        if as_json:
            _print_json(rows)
            return
        table = Table(title="model versions")
        for column in ("id", "asset", "model", "trained on", "MASE", "active"):
            table.add_column(column)
        for r in rows:
            table.add_row(
                str(r["id"]),
                r["asset"],
                r["model"],
                f"{r['train_start']} .. {r['train_end']}",
                views.fmt(r["holdout_mase"], ".4f"),
                "yes" if r["active"] else ("pruned" if r["pruned"] else ""),
            )
        out.print(table)
        if not rows:
            out.print("no models yet: run `btc-predictor train --asset BTC-USD`")

    _run(body)


@models_app.command("bootstrap")
def models_bootstrap() -> None:
    """Train the default model for tracked assets that have data but no active version."""

    def body() -> None:
        from btc_predictor.services.training import bootstrap_models

        settings = _settings()
        with _progress(f"training {settings.default_model} (holdout, then final fit)") as update:
            results = bootstrap_models(
                settings,
                _engine(settings),
                now=datetime.now(UTC),
                progress=lambda e, total, _loss: update(e, total),
            )
        for asset, result in results.items():
            if isinstance(result, str):
                out.print(f"{asset}: {result}", markup=False)
            else:
                views.show_train(result)

    _run(body)


@models_app.command("show")
def models_show(version: VersionArg) -> None:
    """One version in full (JSON), with its promotions."""

    def body() -> None:
        from btc_predictor.services.versions import show_model

        _print_json(show_model(_engine(_settings()), version))

    _run(body)


@models_app.command("promote")
def models_promote(version: VersionArg, as_json: JsonFlag = False) -> None:
    """Make a version the active one of its asset."""

    def body() -> None:
        from btc_predictor.services.versions import promote_model

        row = promote_model(
            _engine(_settings()), version, now=datetime.now(UTC), reason="promoted by hand (cli)"
        )
        _print_json(row) if as_json else out.print(
            f"{row['asset']}: version {row['id']} ({row['model']}) is active"
        )

    _run(body)


@models_app.command("rollback")
def models_rollback(asset: AssetOpt = "BTC-USD", as_json: JsonFlag = False) -> None:
    """Reactivate the previously promoted version."""

    def body() -> None:
        from btc_predictor.services.versions import rollback_model

        row = rollback_model(_engine(_settings()), asset, now=datetime.now(UTC))
        _print_json(row) if as_json else out.print(
            f"{row['asset']}: rolled back to version {row['id']} ({row['model']})"
        )

    _run(body)


@models_app.command("export")
def models_export(
    version: VersionArg, directory: Annotated[Path, typer.Argument(help="Output folder.")]
) -> None:
    """Write model.onnx, weights.safetensors and meta.json of a version to a folder."""

    def body() -> None:
        from btc_predictor.services.versions import export_model

        for path in export_model(_engine(_settings()), version, directory):
            out.print(str(path), markup=False)

    _run(body)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default BTCP_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default BTCP_PORT).")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="uvicorn worker processes.")] = 1,
) -> None:
    """Serve the API (and, with BTCP_EMBEDDED_WORKER=true, one job-worker subprocess)."""

    def body() -> None:
        from btc_predictor.api.serve import run_server

        settings = _settings()
        run_server(
            settings, host=host or settings.host, port=port or settings.port, workers=workers
        )

    _run(body)


@app.command()
def worker() -> None:
    """Run queued jobs and the schedules; serves /metrics and /health/live on BTCP_WORKER_PORT."""

    def body() -> None:
        from btc_predictor.jobs.worker import run_worker

        run_worker(_settings())

    _run(body)


def main() -> None:
    """Console-script entry point."""
    app()
