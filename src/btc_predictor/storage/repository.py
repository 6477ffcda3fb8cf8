"""Data access for candles and ingest runs. Keyword-only sessions; no business rules here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from btc_predictor.sources.base import INTERVAL, Candle, utc_day
from btc_predictor.storage.db import upsert
from btc_predictor.storage.tables import CandleRow, IngestRunRow

UpsertMode = Literal["overwrite", "insert_missing"]
_FIELDS = ("open", "high", "low", "close", "volume")
# Keeps each statement under SQLite's and psycopg's bound-parameter limits.
_CHUNK = 500
_KEY = ("asset", "interval", "ts")


@dataclass(frozen=True, slots=True)
class UpsertCounts:
    """How many candles were new, changed, or already stored as given."""

    inserted: int
    updated: int
    unchanged: int


@dataclass(frozen=True, slots=True)
class AssetSpan:
    """What is stored for one asset: rows, first/last day, rows per source."""

    asset: str
    rows: int
    first: datetime
    last: datetime
    sources: dict[str, int]


def upsert_candles(
    *,
    session: Session,
    asset: str,
    candles: Sequence[Candle],
    source: str,
    mode: UpsertMode,
    now: datetime,
) -> UpsertCounts:
    """Store candles idempotently; ``insert_missing`` never touches stored days."""
    if not candles:
        return UpsertCounts(0, 0, 0)
    stored = _stored_values(session, asset, candles[0].ts, candles[-1].ts)
    new = [c for c in candles if c.ts not in stored]
    changed = [c for c in candles if c.ts in stored and stored[c.ts] != _values(c)]
    if mode == "insert_missing":
        changed = []
    # ON CONFLICT, so two ingests racing on one asset both succeed. The counts are what the
    # statements wrote, not what the read above expected: a day a racing ingest stored first
    # is not inserted twice (its first writer keeps it), so metrics never count it twice.
    inserted = _write(session, [_row(asset, c, source, now) for c in new], update=())
    overwrite = (*_FIELDS, "source", "ingested_at")
    updated = _write(session, [_row(asset, c, source, now) for c in changed], update=overwrite)
    return UpsertCounts(inserted, updated, len(candles) - inserted - updated)


def _write(session: Session, rows: list[dict[str, Any]], *, update: Sequence[str]) -> int:
    """Upsert candle rows in chunks; how many were written."""
    chunks = range(0, len(rows), _CHUNK)
    return sum(
        upsert(session, CandleRow, rows[i : i + _CHUNK], keys=_KEY, update=update) for i in chunks
    )


def _values(candle: Candle) -> tuple[float, ...]:
    """The comparable payload of a candle."""
    return tuple(float(getattr(candle, name)) for name in _FIELDS)


def _row(asset: str, candle: Candle, source: str, now: datetime) -> dict[str, Any]:
    """A candles-table row dict."""
    return {
        "asset": asset,
        "interval": INTERVAL,
        "ts": candle.ts,
        "source": source,
        "ingested_at": now,
        **{name: float(getattr(candle, name)) for name in _FIELDS},
    }


def _stored_values(
    session: Session, asset: str, first: datetime, last: datetime
) -> dict[datetime, tuple[float, ...]]:
    """Stored payloads for ``asset`` between two days, keyed by ts."""
    query = select(CandleRow.ts, *(getattr(CandleRow, n) for n in _FIELDS)).where(
        CandleRow.asset == asset,
        CandleRow.interval == INTERVAL,
        CandleRow.ts >= first,
        CandleRow.ts <= last,
    )
    return {row[0]: tuple(float(v) for v in row[1:]) for row in session.execute(query)}


def load_candles(
    *,
    session: Session,
    asset: str,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int | None = None,
) -> list[Candle]:
    """Stored candles ascending, ``start <= ts < end``; ``limit`` keeps the newest ones."""
    query = select(CandleRow).where(CandleRow.asset == asset, CandleRow.interval == INTERVAL)
    if start is not None:
        query = query.where(CandleRow.ts >= start)
    if end is not None:
        query = query.where(CandleRow.ts < end)
    query = query.order_by(CandleRow.ts.desc())
    if limit is not None:
        query = query.limit(limit)
    rows = session.scalars(query).all()
    return [Candle(r.ts, r.open, r.high, r.low, r.close, r.volume) for r in reversed(rows)]


def first_inverted_candle(
    *, session: Session, asset: str, start: datetime | None = None
) -> Candle | None:
    """The earliest stored candle from ``start`` whose high is below its low, if any."""
    query = select(CandleRow).where(
        CandleRow.asset == asset, CandleRow.interval == INTERVAL, CandleRow.high < CandleRow.low
    )
    if start is not None:
        query = query.where(CandleRow.ts >= start)
    row = session.scalars(query.order_by(CandleRow.ts).limit(1)).first()
    return (
        None if row is None else Candle(row.ts, row.open, row.high, row.low, row.close, row.volume)
    )


def closes_on(*, session: Session, asset: str, days: Iterable[date]) -> dict[date, float]:
    """Stored closes of ``asset`` on the given days (days without a candle are left out)."""
    stamps = [utc_day(d) for d in days]
    if not stamps:
        return {}
    query = select(CandleRow.ts, CandleRow.close).where(
        CandleRow.asset == asset, CandleRow.ts.in_(stamps)
    )
    return {ts.date(): close for ts, close in session.execute(query)}


def candles_on(*, session: Session, asset: str, days: Iterable[date]) -> dict[date, Candle]:
    """Stored candles of ``asset`` on the given days (days without a candle are left out)."""
    stamps = [utc_day(d) for d in days]
    if not stamps:
        return {}
    query = select(CandleRow).where(
        CandleRow.asset == asset, CandleRow.interval == INTERVAL, CandleRow.ts.in_(stamps)
    )
    return {
        r.ts.date(): Candle(r.ts, r.open, r.high, r.low, r.close, r.volume)
        for r in session.scalars(query)
    }


def newest_candles(*, session: Session) -> dict[str, Candle]:
    """The newest stored candle of every asset, by asset name."""
    newest = (
        select(CandleRow.asset, func.max(CandleRow.ts).label("ts"))
        .where(CandleRow.interval == INTERVAL)
        .group_by(CandleRow.asset)
        .subquery()
    )
    query = (
        select(CandleRow)
        .join(newest, (CandleRow.asset == newest.c.asset) & (CandleRow.ts == newest.c.ts))
        .where(CandleRow.interval == INTERVAL)
        .order_by(CandleRow.asset)
    )
    return {
        r.asset: Candle(r.ts, r.open, r.high, r.low, r.close, r.volume)
        for r in session.scalars(query)
    }


def candle_days(*, session: Session, asset: str) -> list[datetime]:
    """Every stored day of ``asset``, ascending (for gap reports)."""
    query = select(CandleRow.ts).where(CandleRow.asset == asset, CandleRow.interval == INTERVAL)
    return list(session.scalars(query.order_by(CandleRow.ts)))


def asset_spans(*, session: Session, asset: str | None = None) -> list[AssetSpan]:
    """Per stored asset: rows, first and last day, rows per source."""
    query = (
        select(
            CandleRow.asset,
            CandleRow.source,
            func.count(),
            func.min(CandleRow.ts),
            func.max(CandleRow.ts),
        )
        .where(CandleRow.interval == INTERVAL)
        .group_by(CandleRow.asset, CandleRow.source)
    )
    if asset is not None:
        query = query.where(CandleRow.asset == asset)
    spans: dict[str, AssetSpan] = {}
    for name, source, count, first, last in session.execute(query):
        spans[name] = _merge_span(
            spans.get(name), AssetSpan(name, count, first, last, {source: count})
        )
    return [spans[name] for name in sorted(spans)]


def _merge_span(old: AssetSpan | None, new: AssetSpan) -> AssetSpan:
    """Combine the per-source aggregates of one asset."""
    if old is None:
        return new
    return AssetSpan(
        new.asset,
        old.rows + new.rows,
        min(old.first, new.first),
        max(old.last, new.last),
        {**old.sources, **new.sources},
    )


def source_of_record(*, session: Session, asset: str) -> str | None:
    """The source that first stored ``asset`` (it owns the history), or None."""
    query = (
        select(CandleRow.source)
        .where(CandleRow.asset == asset, CandleRow.interval == INTERVAL)
        .order_by(CandleRow.ingested_at, CandleRow.ts)
        .limit(1)
    )
    return session.scalars(query).first()


def record_ingest_run(*, session: Session, run: IngestRunRow) -> int:
    """Persist an ingest run and return its id."""
    session.add(run)
    session.flush()
    return run.id


# --- data marks: what changes whenever an ingest stores data (issue 14's cache keys) ---


def data_marks(*, session: Session) -> dict[str, int]:
    """Per asset, the id of the newest ingest run that succeeded (every candle write is one)."""
    query = (
        select(IngestRunRow.asset, func.max(IngestRunRow.id))
        .where(IngestRunRow.status == "ok")
        .group_by(IngestRunRow.asset)
    )
    return {asset: int(mark) for asset, mark in session.execute(query)}


def data_mark(*, session: Session, asset: str) -> int | None:
    """The id of the newest successful ingest run of ``asset`` (None: never ingested)."""
    query = select(func.max(IngestRunRow.id)).where(
        IngestRunRow.asset == asset, IngestRunRow.status == "ok"
    )
    mark: int | None = session.scalar(query)
    return mark


@dataclass(frozen=True, slots=True)
class LastRun:
    """The newest ingest run of an asset: how it ended, when, and what it asked for."""

    status: str
    finished_at: datetime
    requested: str


def last_ingest_runs(*, session: Session, assets: Sequence[str]) -> dict[str, LastRun]:
    """The newest ingest run of each of ``assets`` that ever had one."""
    newest = (
        select(func.max(IngestRunRow.id))
        .where(IngestRunRow.asset.in_(list(assets)))
        .group_by(IngestRunRow.asset)
    )
    query = select(IngestRunRow).where(IngestRunRow.id.in_(newest))
    return {
        row.asset: LastRun(row.status, row.finished_at, row.requested)
        for row in session.scalars(query)
    }
