"""Shared fixtures: settings on SQLite or a per-session PostgreSQL database, a loopback HTTP
stub, and a guard that fails any test reaching past 127.0.0.1."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from btc_predictor.config import Settings
from btc_predictor.services.ingest import ingest
from btc_predictor.services.training import train
from btc_predictor.shapes.requests import IngestRequest, TrainRequest
from btc_predictor.storage.db import create_db_engine, upgrade
from btc_predictor.storage.tables import Base
from tests.sources.http_stub import HttpStub

STRICT = os.environ.get("BTCP_TEST_STRICT") == "1"
PG_ADMIN_URL = os.environ.get(
    "BTCP_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BTCP_TEST_DATA_DIR", REPO.parent / "shared" / "data"))
# The shared files end on 2025-11-30; tests use a clock shortly after that, not the machine's.
NOW = datetime(2025, 12, 1, 6, 0, tzinfo=UTC)


def unavailable(reason: str) -> None:
    """Skip with a visible reason, or fail under BTCP_TEST_STRICT=1 (CI)."""
    if STRICT:
        pytest.fail(f"required test service unavailable (BTCP_TEST_STRICT=1): {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real CSV files in ../shared/data."""
    if not (SHARED_DATA / "Bitstamp_BTCUSD_d.csv").is_file():
        unavailable(f"real data not found in {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """A PostgreSQL database created for this test session and dropped after it."""
    name = f"btcp_{secrets.token_hex(6)}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        unavailable(f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {str(exc).splitlines()[0]}")
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _reset_postgres(url: str) -> None:
    """Drop every table so each test starts from an empty, unmigrated database."""
    engine = create_engine(url)
    with engine.begin() as conn:
        Base.metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Settings on a fresh database of each backend (SQLite file / PostgreSQL)."""
    url = None
    if request.param == "postgres":
        url = request.getfixturevalue("pg_database_url")
        _reset_postgres(url)
    yield Settings(data_dir=tmp_path / "data", database_url=url, sources=["yahoo"])


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    """Settings on a fresh SQLite file only (for tests that are not about storage)."""
    return Settings(data_dir=tmp_path / "data", sources=["yahoo"])


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    """A migrated engine for ``settings``."""
    eng = create_db_engine(settings)
    upgrade(eng)
    yield eng
    eng.dispose()


_LOOPBACK = ("127.0.0.1", "::1", "localhost")


@pytest.fixture
def http_stub() -> Iterator[HttpStub]:
    """A started stub server on 127.0.0.1; closed after the test."""
    stub = HttpStub().start()
    try:
        yield stub
    finally:
        stub.close()


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any Python-level socket connect that would leave 127.0.0.1."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> None:
        if isinstance(address, tuple) and address[0] not in _LOOPBACK:
            raise AssertionError(f"test tried to reach the network: {address}")
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def served(settings: Settings, engine: Engine) -> Settings:
    """700 days of synthetic data and an active naive model (retrains can be queued)."""
    from tests.factories import FakeSource, make_candles  # factories import this module

    source = FakeSource("yahoo", make_candles(date(2024, 1, 1), 700))
    ingest(
        settings, engine, IngestRequest(asset="BTC-USD"), now=NOW, source_factory=lambda _: source
    )
    train(settings, engine, TrainRequest(model="naive", promote="always"), now=NOW)
    return settings
