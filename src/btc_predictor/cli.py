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
app.add_typer(db_app, name="db")
app.add_typer(data_app, name="data")

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
        from btc_predictor.services import IngestRequest
        from btc_predictor.services import ingest as run_ingest

        request = IngestRequest(asset, source, path, _parse_day(since, "--since"), force)
        settings = _settings()
        report = run_ingest(settings, _engine(settings), request, now=datetime.now(UTC))
        _print_json(report.to_json()) if as_json else _show_ingest(report.to_json())

    _run(body)


def _show_ingest(report: dict[str, Any]) -> None:
    """A human ingest report."""
    table = Table(title=f"ingest {report['asset']} from {report['source']}", show_header=False)
    for key in ("fetched", "inserted", "updated", "unchanged", "rejected", "fixed_volume"):
        table.add_row(key.replace("_", " "), str(report[key]))
    table.add_row("range", f"{report['first'] or '-'} .. {report['last'] or '-'}")
    table.add_row("gaps", ", ".join(f"{a}..{b}" for a, b in report["gaps"]) or "none")
    out.print(table)
    for example in report["rejected_examples"]:
        out.print(f"  rejected {example}", markup=False)
    for source, reason in report["failed_sources"].items():
        out.print(f"  [yellow]fell back:[/] {source} failed: {reason}", highlight=False)
    for note in report["notes"]:
        out.print(f"  note: {note}", markup=False)


@data_app.command("status")
def data_status(
    asset: Annotated[str | None, typer.Option(help="One asset (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What is stored per asset: rows, range, gaps, sources and data age."""

    def body() -> None:
        from btc_predictor.services import data_status as status

        settings = _settings()
        rows = status(settings, _engine(settings), asset=asset, now=datetime.now(UTC))
        payload = [row.to_json() for row in rows]
        if as_json:
            _print_json(payload[0] if asset else payload)
        else:
            _show_status(payload)

    _run(body)


@data_app.command("bootstrap")
def data_bootstrap() -> None:
    """Ingest the tracked assets if the database is empty (BTCP_BOOTSTRAP_CSV, else online)."""

    def body() -> None:
        from btc_predictor.services import bootstrap

        settings = _settings()
        result = bootstrap(settings, _engine(settings), now=datetime.now(UTC))
        if result.skipped:
            out.print("database already holds market data: nothing to bootstrap")
        for report in result.reports:
            _show_ingest(report.to_json())
        for asset, reason in result.failures.items():
            err.print(f"warning: could not ingest {asset}: {reason}", markup=False)
            err.print(
                "  offline? set BTCP_BOOTSTRAP_CSV=/path/to/file.csv (CryptoDataDownload or "
                f"Yahoo format), or later run `btc-predictor ingest --asset {asset}`",
                markup=False,
            )

    _run(body)


def _show_status(rows: list[dict[str, Any]]) -> None:
    """A human table of stored data."""
    table = Table(title="stored market data")
    for column in ("asset", "rows", "first", "last", "gaps", "sources", "age"):
        table.add_column(column)
    for row in rows:
        age = row["latest_age_seconds"]
        age_text = "-" if age is None else _age(age) + (" (stale)" if row["stale"] else "")
        table.add_row(
            row["asset"],
            str(row["rows"]),
            row["first"] or "-",
            row["last"] or "-",
            str(len(row["gaps"])),
            ", ".join(row["sources"]) or "-",
            age_text,
        )
    out.print(table)
    if not any(row["rows"] for row in rows):
        out.print("no data yet: run `btc-predictor ingest --asset BTC-USD`")


def _age(seconds: float) -> str:
    """A compact human age."""
    return f"{seconds / 86400:.1f} d" if seconds >= 172800 else f"{seconds / 3600:.1f} h"


def main() -> None:
    """Console-script entry point."""
    app()
