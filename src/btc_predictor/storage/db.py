"""Engine, sessions and migrations, all built from injected Settings (nothing at import time)."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session

from btc_predictor.config import Settings, blocking_file
from btc_predictor.errors import InvalidInputError, UnavailableError
from btc_predictor.storage import deadlines

# Any constant works; it only has to be the same in every process that migrates.
_MIGRATION_LOCK_ID = 0x6274637072656401
_WRITE = "btcp_write"


def create_db_engine(settings: Settings) -> Engine:
    """An engine for the configured database (SQLite in WAL mode, or PostgreSQL).

    PostgreSQL connections get the connect timeout, TCP keepalives and pool timeout of the
    settings but no statement deadline: the worker's and the CLI's long writes are exempt.
    """
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url.render_as_string(hide_password=False))
    if url.get_backend_name() == "postgresql":
        return create_engine(
            _psycopg(url),
            pool_pre_ping=True,
            pool_timeout=settings.db_pool_timeout.total_seconds(),
            connect_args=_pg_connect_args(settings),
            json_serializer=_strict_json,
        )
    raise InvalidInputError(
        f"BTCP_DATABASE_URL `{url.render_as_string()}` is not SQLite or PostgreSQL"
    )


def _psycopg(url: URL) -> URL:
    """The URL with psycopg (3) as its driver."""
    if url.get_driver_name() in ("", "psycopg2"):
        return url.set(drivername="postgresql+psycopg")
    return url


# --- deadlines (issue 12) ---------------------------------------------------------------------
# The /health probes' budget (DESIGN §7: "the database does not answer within 2 s").
HEALTH_SECONDS = 2.0


def _pg_connect_args(
    settings: Settings, *, url: URL | None = None, statement: float | None = None
) -> dict[str, Any]:
    """libpq parameters: connect timeout, keepalives, TCP user timeout (and a statement
    timeout, server side, when ``statement`` is given, kept beside the URL's own options)."""
    connect = max(
        deadlines.MIN_CONNECT_SECONDS, math.ceil(settings.db_connect_timeout.total_seconds())
    )
    limit = settings.db_statement_timeout.total_seconds()
    args: dict[str, Any] = {
        "connect_timeout": connect,
        # A dead peer (host gone, cable pulled) is noticed: keepalive probes, and unacknowledged
        # data dropped after the statement timeout. A *stalled* peer still acknowledges both,
        # which is why API engines also carry the client-side deadline (storage/deadlines.py).
        "keepalives": 1,
        "keepalives_idle": max(1, math.ceil(limit)),
        "keepalives_interval": connect,
        "keepalives_count": 3,
        "tcp_user_timeout": int(limit * 1000),
    }
    if statement is not None:
        own = url.query.get("options") if url is not None else None
        kept = [own] if isinstance(own, str) else list(own or ())
        args["options"] = " ".join([*kept, f"-c statement_timeout={int(statement * 1000)}"])
    return args


def create_api_engine(settings: Settings) -> Engine:
    """The API's engine: on PostgreSQL every checkout (pool wait, connect, ping, queries) has
    ``BTCP_DB_STATEMENT_TIMEOUT``, enforced client side, and queries the same server side."""
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() != "postgresql":
        return create_db_engine(settings)
    limit = settings.db_statement_timeout.total_seconds()
    engine = create_engine(
        _psycopg(url),
        poolclass=deadlines.BudgetQueuePool,
        # Waiting for a pooled connection is part of the budget, so never longer than it.
        pool_timeout=min(settings.db_pool_timeout.total_seconds(), limit),
        connect_args=_pg_connect_args(settings, url=url, statement=limit),
        json_serializer=_strict_json,
    )
    deadlines.install(engine, limit)  # its checkout ping replaces pool_pre_ping
    return engine


def create_health_engine(engine: Engine, settings: Settings) -> Engine:
    """For /health probes: on PostgreSQL a connection of its own per probe (no pool to wait
    for) under the 2 s budget; SQLite has no link to stall, so its engine is ``engine``."""
    if engine.dialect.name != "postgresql":
        return engine
    probe = create_engine(
        engine.url,
        poolclass=deadlines.BudgetNullPool,
        connect_args={
            **_pg_connect_args(settings, url=engine.url, statement=HEALTH_SECONDS),
            "connect_timeout": deadlines.MIN_CONNECT_SECONDS,
        },
        json_serializer=_strict_json,
    )
    deadlines.install(probe, HEALTH_SECONDS)
    return probe


# Driver-level failures that mean "the database cannot be used right now" (not a bug):
# refused, reset, stalled (our deadline), pool exhausted, server-side timeout or shutdown.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    PoolTimeoutError,
    DisconnectionError,
)


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` is the database being unreachable or too slow (503, not a bug)."""
    if isinstance(exc, _UNAVAILABLE):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _strict_json(value: Any) -> str:
    """JSON columns hold strict JSON on every backend (PostgreSQL refuses NaN; SQLite would not)."""
    return json.dumps(value, allow_nan=False)


def _sqlite_engine(url: str) -> Engine:
    """SQLite with WAL (readers never wait for the writer) and IMMEDIATE write transactions."""
    database = make_url(url).database
    if database and database != ":memory:":
        _make_folder(Path(database).parent)
    engine = create_engine(url, connect_args={"timeout": 30}, json_serializer=_strict_json)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below emit BEGIN itself (pysqlite's own is too late).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A writer takes the write lock up front: a deferred transaction that reads and then
        # writes can fail with SQLITE_BUSY instead of waiting when another writer got there first.
        mode = "IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _make_folder(folder: Path) -> None:
    """Create the SQLite file's folder, or say why it cannot be (bad input, not a crash)."""
    blocker = blocking_file(folder)
    if blocker is not None:
        raise InvalidInputError(f"cannot create {folder} for the database: {blocker} is a file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(
            f"cannot create {folder} for the database: {exc.strerror}"
        ) from None


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL (persistent), retrying while another connection holds a lock."""
    import sqlite3
    import time

    deadline = time.monotonic() + 30
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            # Changing the journal mode does not wait on the busy handler; retry by hand.
            # (In-memory databases answer "memory" and stay so: one attempt is enough.)
            cursor.execute("PRAGMA journal_mode=WAL").fetchone()
            return
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A session whose transaction holds the SQLite write lock from its start; commits on exit."""
    writer = engine.execution_options(**{_WRITE: True})
    with Session(writer, expire_on_commit=False) as session, session.begin():
        yield session


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """A read-only unit of work."""
    with Session(engine, expire_on_commit=False) as session:
        yield session


def upsert(
    session: Session,
    table: Any,
    rows: list[dict[str, Any]],
    *,
    keys: Sequence[str],
    update: Sequence[str] = (),
) -> int:
    """INSERT … ON CONFLICT (``keys``): overwrite the ``update`` columns, or skip the row.

    Racing writers both succeed, on SQLite and PostgreSQL alike. Returns the rows written.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table).values(rows)
    if update:
        excluded = statement.excluded
        statement = statement.on_conflict_do_update(
            index_elements=list(keys), set_={name: getattr(excluded, name) for name in update}
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=list(keys))
    # psycopg forgets the count once SQLAlchemy closes the cursor (-1) unless it is kept.
    result = session.execute(statement, execution_options={"preserve_rowcount": True})
    return int(getattr(result, "rowcount", 0) or 0)  # an INSERT's CursorResult


def migrations_dir() -> Path:
    """Where the Alembic scripts are: inside the wheel, or at the source tree's root."""
    packaged = Path(str(resources.files("btc_predictor"))) / "_migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "migrations"


def _alembic_config(connection: Connection) -> Any:
    """An Alembic config bound to an open connection."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine) -> str:
    """Migrate to head (serialised across processes on PostgreSQL); returns the revision."""
    from alembic import command

    try:
        # The write option makes SQLite take its lock first, so concurrent starts queue up too.
        # Migrations are exempt from the API's deadlines (client side and server side).
        with (
            deadlines.budget(None),
            engine.execution_options(**{_WRITE: True}).begin() as connection,
        ):
            if connection.dialect.name == "postgresql":
                connection.execute(text("SET LOCAL statement_timeout = 0"))
                connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _lock_id()})
            command.upgrade(_alembic_config(connection), "head")
            return current_revision(connection) or "base"
    except OperationalError as exc:
        raise UnavailableError(f"database unreachable: {_short(exc)}") from exc


def _lock_id() -> int:
    """The advisory lock key as a signed 64-bit integer."""
    return _MIGRATION_LOCK_ID - (1 << 64) if _MIGRATION_LOCK_ID >= 1 << 63 else _MIGRATION_LOCK_ID


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at (None when never migrated)."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


@functools.cache
def head_revision() -> str | None:
    """The newest revision shipped with this version of btc-predictor."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    return ScriptDirectory.from_config(config).get_current_head()


def is_at_head(engine: Engine) -> bool:
    """True when the database answers and is migrated to the shipped head."""
    with engine.connect() as connection:
        return current_revision(connection) == head_revision()


def _short(exc: Exception) -> str:
    """The first line of a driver error, without SQLAlchemy's background link."""
    return str(exc).splitlines()[0][:300]
