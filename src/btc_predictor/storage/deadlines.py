"""Client-side database deadlines (PostgreSQL): a stalled link must not hang anything.

A paused network path keeps TCP alive (the far kernel still acknowledges data and keepalive
probes), so neither libpq's keepalives nor a server-side ``statement_timeout`` ever fire.
Instead every connection checkout of a budgeted engine is a unit of work with a budget that
starts when the pool is asked for a connection and covers the pool wait, the connect (its
``connect_timeout`` is clamped to what is left), the liveness ping, every query and the reset
on return. When the budget runs out a watchdog thread shuts the connection's socket down: the
blocked thread gets a driver error at once, SQLAlchemy discards the connection, and nothing
stays wedged, neither a thread nor a pooled connection. No extra thread hop per request: the
watchdog only bookkeeps at checkout and checkin (an ``os.dup`` and a lock).
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import NullPool, PoolProxiedConnection, QueuePool

from btc_predictor.errors import UnavailableError

# libpq (and psycopg, which enforces it itself) never waits less than 2 s to connect.
MIN_CONNECT_SECONDS = 2
# (seconds,) overrides the engine's budget in this context; (None,) lifts it (migrations).
_OVERRIDE: ContextVar[tuple[float | None] | None] = ContextVar("btcp_db_budget", default=None)
# When the current thread asked its pool for a connection (set just before the checkout).
_STAMP = threading.local()


@contextlib.contextmanager
def budget(seconds: float | None) -> Iterator[None]:
    """Database work inside gets ``seconds`` per connection checkout (None: no deadline)."""
    token = _OVERRIDE.set((seconds,))
    try:
        yield
    finally:
        _OVERRIDE.reset(token)


class BudgetQueuePool(QueuePool):
    """A QueuePool that notes when each checkout began (the budget starts there)."""

    def connect(self) -> PoolProxiedConnection:
        """Stamp the start, then check out as usual."""
        _STAMP.start = time.monotonic()
        return super().connect()


class BudgetNullPool(NullPool):
    """A NullPool (one fresh connection per checkout) that stamps its checkouts."""

    def connect(self) -> PoolProxiedConnection:
        """Stamp the start, then connect as usual."""
        _STAMP.start = time.monotonic()
        return super().connect()


@dataclass(eq=False)
class _Watch:
    """One checked-out connection under a deadline: our duplicate of its socket."""

    fd: int
    deadline: float
    fired: bool = False


class Watchdog:
    """Shuts down the sockets of checkouts whose deadline passed (one daemon thread)."""

    def __init__(self) -> None:
        self._reset()
        # A forked child has no watchdog thread (and none of the parent's checkouts).
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        """No watches and no thread yet (the thread starts with the first watch)."""
        self._cond = threading.Condition()
        self._live: dict[Any, _Watch] = {}  # by pool connection record
        self._wake_at = math.inf
        self._thread: threading.Thread | None = None

    def watch(self, record: Any, fd: int, deadline: float) -> _Watch:
        """Watch the socket ``fd`` until :meth:`release`; it is shut down at ``deadline``."""
        # A duplicate: libpq may close (and the OS reuse) its own fd before we release.
        watch = _Watch(os.dup(fd), deadline)
        with self._cond:
            self._drop(record)
            self._live[record] = watch
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="db-deadlines", daemon=True)
                self._thread.start()
            if deadline < self._wake_at:
                self._cond.notify()
        return watch

    def release(self, record: Any) -> None:
        """Stop watching the connection of ``record`` (its checkout ended)."""
        with self._cond:
            self._drop(record)

    def watching(self) -> int:
        """How many checkouts are watched right now (tests: nothing may stay behind)."""
        with self._cond:
            return len(self._live)

    def _drop(self, record: Any) -> None:
        """Forget ``record``'s watch and close our duplicate (lock held)."""
        watch = self._live.pop(record, None)
        if watch is not None:
            os.close(watch.fd)

    def _run(self) -> None:
        """Fire due deadlines, then sleep until the next one (or a nearer new one)."""
        with self._cond:
            while True:
                now = time.monotonic()
                pending = [w for w in self._live.values() if not w.fired]
                for watch in pending:
                    if watch.deadline <= now:
                        watch.fired = True
                        _shut_down(watch.fd)
                upcoming = [w.deadline for w in pending if w.deadline > now]
                self._wake_at = min(upcoming, default=math.inf)
                self._cond.wait(None if not upcoming else self._wake_at - now)


def _shut_down(fd: int) -> None:
    """Shut the socket down for both directions: a blocked reader returns at once."""
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed by the peer: nothing is blocked on it
        pass


WATCHDOG = Watchdog()


def install(engine: Engine, default: float) -> None:
    """Put every checkout of ``engine`` (a Budget*Pool one) under a ``default`` s budget."""

    @event.listens_for(engine, "do_connect")
    def _clamp_connect(_d: Any, _rec: Any, _args: Any, params: dict[str, Any]) -> None:
        left = _remaining(default)
        if left is None:
            return
        # libpq's shortest connect is 2 s: with under 1 s left it would overrun by over 1 s.
        if left < MIN_CONNECT_SECONDS - 1:
            raise UnavailableError(_too_slow(_budget(default) or 0))
        wanted = int(params.get("connect_timeout") or MIN_CONNECT_SECONDS)
        params["connect_timeout"] = max(MIN_CONNECT_SECONDS, min(wanted, math.floor(left)))

    @event.listens_for(engine, "connect")
    def _fresh(_dbapi: Any, record: Any) -> None:
        record.info["btcp_fresh"] = True  # just connected: no ping needed

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi: Any, record: Any, _proxy: Any) -> None:
        seconds = _budget(default)
        if seconds is None:
            return
        watch = WATCHDOG.watch(record, dbapi.fileno(), _start() + seconds)
        if record.info.pop("btcp_fresh", False):
            return
        _ping(engine, dbapi, watch, seconds)

    for name in ("checkin", "close", "invalidate", "detach"):
        event.listen(engine, name, _releaser(name))


def _releaser(name: str) -> Any:
    """A pool-event listener that ends the watch of the event's connection record."""

    def release(*args: Any) -> None:
        # checkin/close/invalidate/detach all pass (dbapi_connection, record, ...).
        WATCHDOG.release(args[1])

    release.__name__ = f"release_on_{name}"
    return release


def _ping(engine: Engine, dbapi: Any, watch: _Watch, seconds: float) -> None:
    """The pre-ping, under the deadline: stale connections are replaced, a stall is an error."""
    try:
        engine.dialect.do_ping(dbapi)
    except Exception as exc:
        if watch.fired:
            raise UnavailableError(_too_slow(seconds)) from None
        # A connection the server dropped: the pool reconnects (within what is left).
        raise DisconnectionError(str(exc).splitlines()[0][:200]) from None


def _budget(default: float) -> float | None:
    """The budget of this context's checkouts (an override, else the engine's)."""
    override = _OVERRIDE.get()
    return default if override is None else override[0]


def _start() -> float:
    """When the current checkout began (now, if the pool did not stamp it)."""
    return float(getattr(_STAMP, "start", None) or time.monotonic())


def _remaining(default: float) -> float | None:
    """Seconds left of the current checkout's budget (None: unbounded)."""
    seconds = _budget(default)
    return None if seconds is None else _start() + seconds - time.monotonic()


def _too_slow(seconds: float) -> str:
    """The error text of a blown deadline (it names no host)."""
    return f"the database did not answer within {seconds:g} s"
