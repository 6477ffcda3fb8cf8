"""What every command shares: the error mapping (exit codes), typed options, request building,
settings and engine, JSON output and progress bars.

Exit codes: 0 ok, 1 unexpected error, 2 bad input or unusable data (one line on stderr,
no traceback unless ``--debug``).
"""

from __future__ import annotations

import functools
import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar, cast

import typer
from pydantic import BaseModel, TypeAdapter, ValidationError
from rich.console import Console

from btc_predictor.config import Settings, blocking_file
from btc_predictor.errors import BtcpError, InvalidInputError
from btc_predictor.shapes.common import Shape, first_problem

if TYPE_CHECKING:  # the CLI starts fast: SQLAlchemy loads only for commands that use it
    from sqlalchemy import Engine

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound=Shape)
T = TypeVar("T")


@dataclass(slots=True)
class _State:
    debug: bool = False


state = _State()

# Options more than one command takes. Bounds and defaults live in the request shapes
# (btc_predictor.shapes), which check every value; these only document the flags.
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
AssetOpt = Annotated[str, typer.Option(help="Asset symbol, BASE-QUOTE.")]
ModelOpt = Annotated[str | None, typer.Option(help="Model kind (default BTCP_DEFAULT_MODEL).")]
SeedOpt = Annotated[int, typer.Option(help="Random seed (results are reproducible).")]
EpochsOpt = Annotated[int | None, typer.Option(help="Cap on training epochs (per fit).")]
StartOpt = Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD.")]
HorizonOpt = Annotated[int, typer.Option(help="Days ahead, 1..BTCP_MAX_HORIZON.")]
LevelOpt = Annotated[int, typer.Option(help="Interval level in percent (50..99).")]
VersionArg = Annotated[int, typer.Argument(help="Model version id.")]


def command(group: typer.Typer, name: str | None = None) -> Callable[[Callable[P, R]], Any]:
    """Register a command that runs under the error mapping (exit 2 with one line, or 1)."""

    def register(fn: Callable[P, R]) -> Any:
        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            with errors():
                return fn(*args, **kwargs)

        return group.command(name)(guarded)

    return register


@contextmanager
def errors() -> Iterator[None]:
    """Map domain errors to exit 2 and anything else to exit 1, one line each."""
    try:
        yield
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as exc:
        if state.debug:
            raise
        message, code = describe(exc)
        err.print(message, markup=False, highlight=False)
        raise typer.Exit(code) from None


def describe(exc: Exception) -> tuple[str, int]:
    """The line to print for an exception, and the exit code."""
    if isinstance(exc, BtcpError):
        return f"error: {exc.message}", 2
    if isinstance(exc, ValidationError):  # requests are built by `build`: this is Settings
        where, problem = first_problem(exc)
        return f"error: invalid setting BTCP_{where.upper()}: {problem}", 2
    return f"unexpected error: {type(exc).__name__}: {exc} (rerun with --debug for details)", 1


def build(shape: type[S], **flags: Any) -> S:
    """A request shape from command-line flags; a bad value names its flag."""
    try:
        return shape.model_validate({k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        where, problem = first_problem(exc)
        flag = f"--{where.replace('_', '-')}" if where else "the request"
        raise InvalidInputError(f"{flag}: {problem}") from None


def checked(kind: Any, value: T, name: str) -> T:
    """``value`` checked against a shapes type (its bounds, its names); errors name ``name``."""
    try:
        return cast(T, TypeAdapter(kind).validate_python(value))
    except ValidationError as exc:
        raise InvalidInputError(f"{name}: {first_problem(exc)[1]}") from None


def writable_folder(folder: Path, name: str) -> Path:
    """``folder`` if it exists or can be created, and can be written in; else bad input."""
    problem = _folder_problem(folder)
    if problem is not None:
        raise InvalidInputError(f"{name} {folder}: {problem}")
    return folder


def writable_file(path: Path, name: str) -> Path:
    """``path`` if a file can be written there (its folder as in ``writable_folder``)."""
    problem = "is a folder, not a file" if path.is_dir() else _folder_problem(path.parent)
    if problem is not None:
        raise InvalidInputError(f"{name} {path}: {problem}")
    return path


def _folder_problem(folder: Path) -> str | None:
    """Why nothing can be written in ``folder`` (made if missing), or None.

    Checked before any work, so a long backtest never ends on a path that cannot be written.
    """
    blocker = blocking_file(folder)
    if blocker is not None:
        return f"{blocker} is a file, not a folder"
    existing = next((p for p in (folder, *folder.parents) if p.exists()), folder)
    try:  # a real write: permissions, read-only mounts and pseudo file systems alike
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        return f"cannot write in {existing} ({exc.strerror})"
    return None


def settings() -> Settings:
    """Settings from the environment, with logging configured."""
    from btc_predictor.logs import configure_logging

    loaded = Settings()
    configure_logging(loaded)
    return loaded


def engine(config: Settings, *, migrate: bool = True) -> Engine:
    """The database engine, migrated to head first (ingest/serve upgrade automatically)."""
    from btc_predictor.storage.db import create_db_engine, upgrade

    created = create_db_engine(config)
    if migrate:
        upgrade(created)
    return created


def print_json(payload: Any) -> None:
    """Exactly one strict JSON document on stdout (result shapes are dumped as their JSON)."""
    # NaN and Infinity are not JSON: a non-finite number here is a bug, never output.
    sys.stdout.write(json.dumps(_plain(payload), allow_nan=False) + "\n")


def _plain(payload: Any) -> Any:
    """Result shapes (alone or in a list) as JSON-ready values."""
    if isinstance(payload, BaseModel):
        return payload.model_dump(mode="json")
    if isinstance(payload, list):
        return [_plain(item) for item in payload]
    return payload


@contextmanager
def progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr when it is a terminal; a no-op otherwise."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def epochs_progress(update: Callable[[int, int], None]) -> Callable[[int, int, Any], None]:
    """A training ProgressFn (done, total, loss) drawn on a progress bar."""
    return lambda done, total, _loss: update(done, total)


def safe_url(config: Settings) -> str:
    """The database URL without its password."""
    from sqlalchemy.engine import make_url

    return make_url(config.resolved_database_url).render_as_string(hide_password=True)
