"""Engine, sessions and migrations, all built from injected Settings (nothing at import time)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from btc_predictor.config import Settings, blocking_file
from btc_predictor.errors import InvalidInputError, UnavailableError

# Any constant works; it only has to be the same in every process that migrates.
_MIGRATION_LOCK_ID = 0x6274637072656401
_WRITE = "btcp_write"


def create_db_engine(settings: Settings) -> Engine:
    """An engine for the configured database (SQLite in WAL mode, or PostgreSQL)."""
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url.render_as_string(hide_password=False))
    if url.get_backend_name() == "postgresql":
        if url.get_driver_name() in ("", "psycopg2"):
            url = url.set(drivername="postgresql+psycopg")
        return create_engine(url, pool_pre_ping=True, json_serializer=_strict_json)
    raise InvalidInputError(
        f"BTCP_DATABASE_URL `{url.render_as_string()}` is not SQLite or PostgreSQL"
    )


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
        with engine.execution_options(**{_WRITE: True}).begin() as connection:
            if connection.dialect.name == "postgresql":
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
