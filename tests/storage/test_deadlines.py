"""Client-side database deadlines (issue 12) against a real PostgreSQL behind the stall proxy:
a stalled link fails within the budget, leaves no connection or watch behind, and recovers;
migrations are exempt; health probes have their own 2 s connection."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from btc_predictor.config import Settings
from btc_predictor.errors import UnavailableError
from btc_predictor.storage import deadlines
from btc_predictor.storage.db import (
    HEALTH_SECONDS,
    create_api_engine,
    create_health_engine,
    is_unavailable,
    upgrade,
)
from btc_predictor.storage.deadlines import WATCHDOG
from tests.conftest import PG_ADMIN_URL, _reset_postgres
from tests.faults.conftest import through
from tests.faults.proxy import StallProxy

pytestmark = pytest.mark.postgres
BUDGET = 2.0


@pytest.fixture
def stall() -> Iterator[StallProxy]:
    """A stall proxy in front of the PostgreSQL server."""
    url = make_url(PG_ADMIN_URL)
    proxy = StallProxy((url.host or "127.0.0.1", url.port or 5432)).start()
    yield proxy
    proxy.close()


@pytest.fixture
def api_engine(pg_database_url: str, stall: StallProxy, tmp_path: Any) -> Iterator[Engine]:
    """The API's engine on the test database, through the proxy, with a 2 s budget."""
    _reset_postgres(pg_database_url)
    settings = Settings(
        data_dir=tmp_path,
        database_url=through(pg_database_url, stall),
        db_connect_timeout="2s",
        db_pool_timeout="2s",
        db_statement_timeout=f"{BUDGET:g}s",
    )
    engine = create_api_engine(settings)
    yield engine
    engine.dispose()


def attempt(engine: Engine, sql: str = "SELECT 1", limit: float = 20.0) -> tuple[Any, float]:
    """Run ``sql`` in a thread: (its result or exception, seconds); fails if it hangs."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            with engine.connect() as connection:
                outcome.append(connection.execute(text(sql)).scalar())
        except Exception as exc:
            outcome.append(exc)

    started = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(limit)
    assert outcome, f"`{sql}` still blocked after {limit:.0f} s"
    return outcome[0], time.monotonic() - started


def down(error: object) -> bool:
    """Whether ``error`` is the database being unavailable (a 503, not a bug)."""
    return isinstance(error, UnavailableError) or (
        isinstance(error, Exception) and is_unavailable(error)
    )


def test_a_stall_fails_within_the_budget_and_leaves_nothing_behind(
    api_engine: Engine, stall: StallProxy
) -> None:
    assert attempt(api_engine)[0] == 1  # a pooled connection exists: the stall hits its ping
    stall.pause()
    results = [attempt(api_engine) for _ in range(2)]
    stall.resume()
    for error, seconds in results:
        assert down(error), error
        assert seconds <= BUDGET + 1.0, seconds
    assert attempt(api_engine)[0] == 1
    assert WATCHDOG.watching() == 0
    assert api_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def test_a_query_stalled_midway_is_cut_at_the_deadline(
    api_engine: Engine, stall: StallProxy
) -> None:
    timer = threading.Timer(0.3, stall.pause)  # after the ping, while the query runs
    timer.start()
    error, seconds = attempt(api_engine, "SELECT pg_sleep(0.6)")
    stall.resume()
    assert down(error), error
    assert BUDGET - 0.2 <= seconds <= BUDGET + 1.0, seconds
    assert attempt(api_engine)[0] == 1 and WATCHDOG.watching() == 0


def test_migrations_are_exempt_from_the_deadline(api_engine: Engine, stall: StallProxy) -> None:
    assert attempt(api_engine)[0] == 1
    stall.pause()
    threading.Timer(BUDGET + 1.0, stall.resume).start()  # a stall longer than the budget
    started = time.monotonic()
    assert upgrade(api_engine)
    assert time.monotonic() - started > BUDGET
    # ...and what runs without a budget has no server-side timeout either, once lifted.
    with deadlines.budget(None), api_engine.begin() as connection:
        connection.execute(text("SET LOCAL statement_timeout = 0"))
        connection.execute(text("SELECT pg_sleep(:s)"), {"s": BUDGET + 0.5})


def test_health_probes_have_a_connection_of_their_own_and_2_s(
    api_engine: Engine, stall: StallProxy, tmp_path: Any
) -> None:
    settings = Settings(data_dir=tmp_path, database_url=str(api_engine.url))
    probe = create_health_engine(api_engine, settings)
    try:
        held = [api_engine.connect() for _ in range(15)]  # the API's pool is exhausted
        assert attempt(probe)[0] == 1
        for connection in held:
            connection.close()
        stall.pause()
        error, seconds = attempt(probe)
        stall.resume()
        assert isinstance(error, Exception) and seconds <= HEALTH_SECONDS + 0.5, (error, seconds)
        assert attempt(probe)[0] == 1
    finally:
        probe.dispose()


def test_the_statement_timeout_keeps_the_urls_own_options(
    pg_database_url: str, tmp_path: Any
) -> None:
    url = pg_database_url + "?options=-c%20application_name%3Dmine"
    engine = create_api_engine(Settings(data_dir=tmp_path, database_url=url))
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SHOW statement_timeout")).scalar() == "10s"
            assert connection.execute(text("SHOW application_name")).scalar() == "mine"
    finally:
        engine.dispose()
