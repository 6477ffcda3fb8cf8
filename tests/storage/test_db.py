"""Engine construction, migrations, and SQLite's WAL behaviour."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from btc_predictor.config import Settings
from btc_predictor.errors import InvalidInputError, UnavailableError
from btc_predictor.storage.db import (
    create_db_engine,
    head_revision,
    is_at_head,
    read_session,
    upgrade,
    write_session,
)


def test_upgrade_is_repeatable_and_reaches_head(settings: Settings) -> None:
    engine = create_db_engine(settings)
    assert upgrade(engine) == head_revision()
    assert upgrade(engine) == head_revision()
    assert is_at_head(engine)
    engine.dispose()


def test_concurrent_upgrades_serialise(settings: Settings) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        engine = create_db_engine(settings)
        try:
            upgrade(engine)
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_sqlite_uses_wal_and_readers_do_not_wait_for_a_writer(sqlite_settings: Settings) -> None:
    engine = create_db_engine(sqlite_settings)
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    with write_session(engine) as writer:
        writer.execute(
            text(
                "INSERT INTO ingest_runs (asset, interval, requested, status, started_at, finished_at, fetched, inserted, updated, rejected, fixed_volume, report) VALUES ('X-USD', '1d', 'r', 'ok', '2024-01-01', '2024-01-01', 0, 0, 0, 0, 0, '{}')"
            )
        )
        # The writer holds the lock and has not committed; a reader answers at once.
        with read_session(engine) as reader:
            assert reader.execute(text("SELECT count(*) FROM ingest_runs")).scalar() == 0
    engine.dispose()


def test_unmigrated_database_is_not_at_head(sqlite_settings: Settings) -> None:
    engine = create_db_engine(sqlite_settings)
    assert not is_at_head(engine)
    engine.dispose()


def test_unsupported_and_unreachable_databases(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not SQLite or PostgreSQL"):
        create_db_engine(Settings(database_url="mysql://x@localhost/db"))
    engine: Engine = create_db_engine(Settings(database_url="postgresql://nobody@127.0.0.1:1/none"))
    with pytest.raises(UnavailableError, match="database unreachable"):
        upgrade(engine)


def test_an_sqlite_path_that_cannot_be_created_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(InvalidInputError, match=r"for the database: .*/file is a file"):
        create_db_engine(Settings(database_url=f"sqlite:///{tmp_path}/file/sub/btc.db"))
    with pytest.raises(InvalidInputError, match="cannot create /proc/nope for the database"):
        create_db_engine(Settings(database_url="sqlite:////proc/nope/btc.db"))
