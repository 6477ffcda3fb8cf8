"""The fault harness: a real PostgreSQL database, a stall proxy in front of it, and a real
``serve`` process talking to the database through the proxy."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from btc_predictor.config import Settings
from btc_predictor.services.ingest import ingest
from btc_predictor.services.training import train
from btc_predictor.shapes.requests import IngestRequest, TrainRequest
from btc_predictor.storage.db import create_db_engine, upgrade
from tests.api.conftest import API_KEY
from tests.api.live import serving
from tests.conftest import PG_ADMIN_URL, _reset_postgres
from tests.factories import FakeSource, make_candles
from tests.faults.proxy import StallProxy

# Small deadlines, so a stall shows within seconds (the defaults are 3 s / 5 s / 10 s).
STATEMENT_SECONDS = 3.0
DEADLINES = {
    "BTCP_DB_CONNECT_TIMEOUT": "2s",
    "BTCP_DB_POOL_TIMEOUT": "2s",
    "BTCP_DB_STATEMENT_TIMEOUT": f"{STATEMENT_SECONDS:g}s",
    "BTCP_STATE_POLL": "0.5s",
}


@pytest.fixture
def pg_url(pg_database_url: str) -> str:
    """The session's PostgreSQL database, emptied."""
    _reset_postgres(pg_database_url)
    return pg_database_url


@pytest.fixture
def proxy() -> Iterator[StallProxy]:
    """A stall proxy in front of the PostgreSQL server."""
    admin = make_url(PG_ADMIN_URL)
    stall = StallProxy((admin.host or "127.0.0.1", admin.port or 5432)).start()
    try:
        yield stall
    finally:
        stall.close()


def through(url: str, proxy: StallProxy) -> str:
    """``url`` with its host and port replaced by the proxy's."""
    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(False)


def seed(url: str, data_dir: Path, *, last_day: date | None = None, days: int = 700) -> int:
    """Migrate, store ``days`` synthetic candles ending ``last_day`` (default: yesterday, so
    the data is fresh by the real clock a served process uses) and promote a drift model."""
    now = datetime.now(UTC)
    end = last_day or now.date() - timedelta(days=1)
    settings = Settings(data_dir=data_dir, database_url=url, sources=["yahoo"], api_key=API_KEY)
    engine = create_db_engine(settings)
    try:
        upgrade(engine)
        source = FakeSource("yahoo", make_candles(end - timedelta(days=days - 1), days))
        request = IngestRequest(asset="BTC-USD")
        ingest(settings, engine, request, now=now, source_factory=lambda _: source)
        result = train(settings, engine, TrainRequest(model="drift", promote="always"), now=now)
        return int(result.version)
    finally:
        engine.dispose()


@contextlib.contextmanager
def run_serve(url: str, tmp: Path, **env: str) -> Iterator[str]:
    """``serve`` (no embedded worker) on ``url`` with the small deadlines; yields its URL."""
    settings = {
        "BTCP_DATABASE_URL": url,
        "BTCP_EMBEDDED_WORKER": "false",
        "BTCP_ASSETS": "BTC-USD",
        **DEADLINES,
        **env,
    }
    with serving(tmp / "data", tmp / "serve.log", **settings) as base:
        yield base


def admin_sql(url: str, sql: str, **params: Any) -> list[Any]:
    """Run ``sql`` on ``url`` directly (never through the proxy); the rows, if any."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            result = connection.execute(text(sql), params)
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def counted(metrics: str, endpoint: str, status: int) -> float:
    """``bitcoin_lstm_requests_total`` for one GET endpoint and status in a /metrics text."""
    pattern = (
        r"^bitcoin_lstm_requests_total\{(?=[^}]*endpoint=\"" + re.escape(endpoint) + r"\")"
        r"(?=[^}]*method=\"GET\")(?=[^}]*status=\"" + str(status) + r"\")[^}]*\}\s+(\S+)$"
    )
    return sum(float(m) for m in re.findall(pattern, metrics, flags=re.MULTILINE))


def timed_get(url: str, timeout: float = 40.0) -> tuple[requests.Response | None, float]:
    """GET ``url``: the answer (None if none came within ``timeout``) and the seconds it took."""
    import time

    started = time.monotonic()
    try:
        answer = requests.get(url, timeout=timeout)
    except requests.RequestException:
        return None, time.monotonic() - started
    return answer, time.monotonic() - started
