"""Ledger rows of served forecasts (price and risk), queued on the request path and written
in batches by one background writer, off the request path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

from sqlalchemy import Engine

from btc_predictor.services import ledger

log = logging.getLogger(__name__)


class LedgerQueue:
    """Ledger rows of served forecasts, written in batches by one background writer."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._rows: list[dict[str, Any]] = []
        self._writer: asyncio.Task[None] | None = None

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Queue rows (no I/O)."""
        with self._lock:
            self._rows.extend(rows)

    def kick(self) -> asyncio.Task[None] | None:
        """The background writer, started on the running event loop when none is writing;
        None outside an event loop (the caller then flushes itself)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        with self._lock:
            # A writer cancelled with its event loop (a shutdown) never cleared itself.
            if self._writer is None or self._writer.done() or self._writer.get_loop() is not loop:
                self._writer = loop.create_task(self._drain())
            return self._writer

    def flush(self) -> None:
        """Write every queued row now (blocking)."""
        while rows := self._take():
            self._write(rows)

    async def settle(self) -> None:
        """At shutdown: let a running writer finish its batch, then write what is left. (A
        writer still in its thread when the engine is disposed loses its batch and leaks its
        connection: seen on PostgreSQL when the last answer was a cached one.)"""
        writer = self._writer
        if (
            writer is not None
            and not writer.done()
            and writer.get_loop() is asyncio.get_running_loop()
        ):
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(writer)
        await asyncio.to_thread(self.flush)

    async def _drain(self) -> None:
        """Write batches off the event loop until the queue is empty."""
        while True:
            with self._lock:
                rows, self._rows = self._rows, []
                if not rows:
                    self._writer = None
                    return
            await asyncio.to_thread(self._write, rows)

    def _take(self) -> list[dict[str, Any]]:
        """Everything queued, leaving the queue empty."""
        with self._lock:
            rows, self._rows = self._rows, []
            return rows

    def _write(self, rows: list[dict[str, Any]]) -> None:
        """One batch in one transaction (repeats are skipped by the table's key)."""
        try:
            self._record(rows)
        except Exception:  # the ledger must never cost the user their forecast
            log.exception("could not record %d forecast points in the ledger", len(rows))

    def _record(self, rows: list[dict[str, Any]]) -> None:
        """Write one batch (looked up per call, so tests can hold the writer)."""
        ledger.record_rows(self.engine, rows)


class RiskLedgerQueue(LedgerQueue):
    """Risk ledger rows of served risk forecasts, written like the forecast ledger's."""

    def _record(self, rows: list[dict[str, Any]]) -> None:
        """Write one batch into ``risk_predictions``."""
        ledger.record_risk_rows(self.engine, rows)
