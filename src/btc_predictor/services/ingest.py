"""Ingest use cases: fetch through the source chain, validate, store; report what is stored."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine

from btc_predictor.config import Settings
from btc_predictor.errors import AssetNotFoundError, DataSourceError, InvalidInputError, NoDataError
from btc_predictor.services import intervals
from btc_predictor.shapes.requests import IngestRequest
from btc_predictor.shapes.results import AssetStatus, IngestReport
from btc_predictor.sources import check_source_spec, make_source
from btc_predictor.sources.base import (
    DAY,
    INTERVAL,
    Asset,
    Candle,
    CandleSource,
    FetchResult,
    data_age,
    parse_asset,
    today_utc,
    utc_day,
)
from btc_predictor.sources.validate import MAX_EXAMPLES, find_gaps, validate_candles
from btc_predictor.storage import repository as repo
from btc_predictor.storage.db import read_session, write_session
from btc_predictor.storage.tables import IngestRunRow
from btc_predictor.telemetry import INGEST_ROWS_TOTAL, SOURCE_ERRORS_TOTAL

log = logging.getLogger(__name__)
SourceFactory = Callable[[str], CandleSource]


def ingest(
    settings: Settings,
    engine: Engine,
    request: IngestRequest,
    *,
    now: datetime,
    source_factory: SourceFactory | None = None,
) -> IngestReport:
    """Fetch candles through the source chain, validate, and store them in one transaction."""
    asset = parse_asset(request.asset)
    specs = _source_specs(settings, request)
    factory = source_factory or (
        lambda spec: make_source(spec, settings, path=request.path, clock=lambda: now)
    )
    with read_session(engine) as session:
        owner = repo.source_of_record(session=session, asset=asset.symbol)
        spans = repo.asset_spans(session=session, asset=asset.symbol)
    last = spans[0].last.date() if spans else None
    report = IngestReport(asset=asset.symbol)
    for spec in specs:
        try:
            fetched = _fetch(factory(spec), asset, request, last, now)
        except DataSourceError as exc:
            log.warning("source %s failed for %s: %s", spec, asset, exc.reason)
            report.failed_sources[spec] = exc.reason
            SOURCE_ERRORS_TOTAL.labels(spec).inc()
            continue
        stored = _store(engine, request, report, fetched, owner, last, now)
        # Its own transaction, after the candles committed: a model problem is only logged.
        intervals.record_and_score(engine, asset.symbol, now=now)
        return stored
    _record_failure(engine, specs, report, now)
    failures = "; ".join(f"{k}: {v}" for k, v in report.failed_sources.items())
    raise DataSourceError(asset.symbol, f"no source could serve it ({failures})")


def _source_specs(settings: Settings, request: IngestRequest) -> list[str]:
    """The chain to try: the named source, ``csv`` for a path, else the configured chain."""
    if request.source:
        spec = check_source_spec(request.source)
        if request.path is not None and spec != "csv":
            raise InvalidInputError(f"--path is only for --source csv, not `{request.source}`")
        return [spec]
    if request.path is not None:
        return ["csv"]
    specs = [check_source_spec(s) for s in settings.sources]
    if "csv" in specs:
        raise InvalidInputError("BTCP_SOURCES cannot contain csv (it needs --path)")
    return specs


def _fetch(
    source: CandleSource, asset: Asset, request: IngestRequest, last: date | None, now: datetime
) -> FetchResult:
    """Ask the source only for what is missing (online) or for the whole file (csv)."""
    today = today_utc(now)
    start = request.since
    if start is None and source.name != "csv" and last is not None and not request.force:
        start = last + DAY
    if start is not None and start >= today:
        return FetchResult(source.name, [], notes=[f"{asset} is up to date (last day {last})"])
    return source.fetch(asset, start, today)


def _store(
    engine: Engine,
    request: IngestRequest,
    report: IngestReport,
    fetched: FetchResult,
    owner: str | None,
    last: date | None,
    now: datetime,
) -> IngestReport:
    """Validate, apply the source-of-record rule and upsert; records the run."""
    report.source, report.fetched = fetched.source, len(fetched.candles)
    report.fixed_volume, report.notes = fetched.fixed_volume, [*fetched.notes]
    checked = validate_candles(fetched.candles, now)
    report.rejected = len(checked.rejected)
    report.rejected_examples = checked.rejected[:MAX_EXAMPLES]
    candles, mode = _apply_ownership(report, checked.valid, owner, last, request)
    if candles:
        report.first, report.last = candles[0].ts.date(), candles[-1].ts.date()
    with write_session(engine) as session:
        counts = repo.upsert_candles(
            session=session,
            asset=report.asset,
            candles=candles,
            source=fetched.source,
            mode=mode,
            now=now,
        )
        report.inserted, report.updated = counts.inserted, counts.updated
        report.unchanged = counts.unchanged
        report.gaps = find_gaps(repo.candle_days(session=session, asset=report.asset))
        report.run_id = repo.record_ingest_run(
            session=session, run=_run_row(report, _requested(request), "ok", now)
        )
    _count_rows(report)
    return report


def _count_rows(report: IngestReport) -> None:
    """Add a committed ingest's rows to ``bitcoin_lstm_ingest_rows_total``."""
    source = report.source or "unknown"
    for result in ("inserted", "updated", "unchanged", "rejected"):
        rows = getattr(report, result)
        if rows:
            INGEST_ROWS_TOTAL.labels(report.asset, source, result).inc(rows)


def _apply_ownership(
    report: IngestReport,
    candles: list[Any],
    owner: str | None,
    last: date | None,
    request: IngestRequest,
) -> tuple[list[Any], repo.UpsertMode]:
    """Only the source of record (or ``--force``) may rewrite stored days."""
    source = report.source
    if owner is None or owner == source or request.force:
        return candles, "overwrite"
    if request.since is not None:
        report.notes.append(
            f"{source} is not the source of record for {report.asset} ({owner}): "
            f"only missing days since {request.since} were filled (use --force to overwrite)"
        )
        return candles, "insert_missing"
    cutoff = utc_day(last) if last else None
    kept = [c for c in candles if cutoff is None or c.ts > cutoff]
    report.notes.append(
        f"{source} is not the source of record for {report.asset} ({owner}): "
        f"only days after {last} were appended"
    )
    return kept, "insert_missing"


def _requested(request: IngestRequest) -> str:
    """A short description of the request for the ingest_runs table."""
    parts = [request.source or ("csv" if request.path else "chain")]
    if request.path:
        parts.append(str(request.path))
    if request.since:
        parts.append(f"since={request.since}")
    if request.force:
        parts.append("force")
    return " ".join(parts)[:200]


def _run_row(report: IngestReport, requested: str, status: str, now: datetime) -> IngestRunRow:
    """An ingest_runs row from a report."""
    return IngestRunRow(
        asset=report.asset,
        interval=INTERVAL,
        requested=requested,
        source=report.source,
        status=status,
        started_at=now,
        finished_at=now,
        fetched=report.fetched,
        inserted=report.inserted,
        updated=report.updated,
        rejected=report.rejected,
        fixed_volume=report.fixed_volume,
        report=report.model_dump(mode="json"),
        error="; ".join(f"{k}: {v}" for k, v in report.failed_sources.items()) or None,
    )


def _record_failure(engine: Engine, specs: list[str], report: IngestReport, now: datetime) -> None:
    """Keep a trace of a chain that failed entirely (candles are untouched)."""
    with write_session(engine) as session:
        repo.record_ingest_run(
            session=session, run=_run_row(report, ",".join(specs), "failed", now)
        )


def data_status(
    settings: Settings,
    engine: Engine,
    *,
    asset: str | None,
    now: datetime,
    summaries: AssetSummaries | None = None,
) -> list[AssetStatus]:
    """Stored data per asset (tracked assets with nothing stored show zero rows).

    Reads every asset's data mark (one aggregate query) and reuses ``summaries`` while an
    asset's mark holds. The API serves ``kept_status`` instead: no query per request.
    """
    wanted = parse_asset(asset).symbol if asset else None
    with read_session(engine) as session:
        marks = repo.data_marks(session=session)
        stored = _stored(session, summaries or AssetSummaries(), marks)
    return _status(settings, stored, wanted, now)


def kept_status(
    settings: Settings,
    engine: Engine,
    summaries: AssetSummaries,
    marks: Mapping[str, int],
    *,
    asset: str | None,
    now: datetime,
) -> list[AssetStatus]:
    """``data_status`` at data marks already read (the API's state poll's): no query while
    ``summaries`` holds every asset's summary at its mark (only a moved mark is summarised)."""
    wanted = parse_asset(asset).symbol if asset else None
    return _status(settings, summaries.kept(engine, marks), wanted, now)


class AssetSummaries:
    """Per-asset summaries (rows, range, gaps, sources) kept until the asset's data changes.

    Keyed by the asset's data mark, the newest successful ingest run: every candle write is
    one, so a kept summary is never older than the stored data it describes. The API keeps
    one per process; the first request after its state poll saw a mark move summarises.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._summarising = threading.Lock()  # one summary computation at a time
        self._kept: dict[str, tuple[int, AssetStatus]] = {}

    def get(self, asset: str, mark: int) -> AssetStatus | None:
        """The summary kept for ``asset`` at ``mark``, if any."""
        kept = self._kept.get(asset)
        return kept[1] if kept is not None and kept[0] == mark else None

    def put(self, asset: str, mark: int, summary: AssetStatus) -> None:
        """Keep ``summary`` as ``asset``'s at ``mark``."""
        with self._lock:
            self._kept[asset] = (mark, summary)

    def stored(self, marks: Mapping[str, int]) -> dict[str, AssetStatus] | None:
        """The kept summaries at ``marks`` of assets with stored rows (None: one isn't kept)."""
        found = {}
        for name, mark in marks.items():
            summary = self.get(name, mark)
            if summary is None:
                return None
            if summary.rows:
                found[name] = summary
        return found

    def kept(self, engine: Engine, marks: Mapping[str, int]) -> dict[str, AssetStatus]:
        """``stored`` at ``marks``, summarising the assets whose mark moved first (one caller
        does, in one read session; concurrent callers wait for it rather than repeat it)."""
        found = self.stored(marks)
        if found is not None:
            return found
        with self._summarising:
            found = self.stored(marks)
            if found is None:
                with read_session(engine) as session:
                    found = _stored(session, self, marks)
        return found


def _stored(
    session: Any, summaries: AssetSummaries, marks: Mapping[str, int]
) -> dict[str, AssetStatus]:
    """Summaries (no age yet) of every asset with stored candles, computed on data change."""
    found = {}
    for name, mark in marks.items():
        summary = summaries.get(name, mark)
        if summary is None:
            summary = _summary(session, name)
            summaries.put(name, mark, summary)
        if summary.rows:
            found[name] = summary
    return found


def _status(
    settings: Settings, stored: Mapping[str, AssetStatus], wanted: str | None, now: datetime
) -> list[AssetStatus]:
    """Stored data of ``wanted`` (None: every tracked or stored asset), aged at ``now``."""
    if wanted and wanted not in stored and wanted not in settings.assets:
        raise AssetNotFoundError(_unknown_asset(wanted, settings, list(stored)))
    names = [wanted] if wanted else sorted(set(stored) | set(settings.assets))
    return [_aged(settings, stored.get(name) or _empty(name), now) for name in names]


def _unknown_asset(asset: str, settings: Settings, stored: list[str]) -> str:
    """The message for an asset that is neither tracked nor stored."""
    valid = sorted(set(settings.assets) | set(stored))
    return (
        f"asset {asset} is neither tracked nor stored (known: {', '.join(valid) or 'none'}); "
        f"ingest it with `btc-predictor ingest --asset {asset}`"
    )


def _empty(name: str) -> AssetStatus:
    """The status of an asset with nothing stored."""
    return AssetStatus(
        asset=name,
        rows=0,
        first=None,
        last=None,
        gaps=[],
        sources=[],
        rows_per_source={},
        source_of_record=None,
        latest_age_seconds=None,
        stale=None,
    )


def _summary(session: Any, name: str) -> AssetStatus:
    """What is stored for one asset, from SQL aggregates (its days are read only when some
    are missing, to list the gaps)."""
    spans = repo.asset_spans(session=session, asset=name)
    if not spans:
        return _empty(name)
    span = spans[0]
    # Days are 00:00 UTC and unique, so rows == days spanned means no day is missing.
    whole = span.last - span.first == DAY * (span.rows - 1)
    return AssetStatus(
        asset=name,
        rows=span.rows,
        first=span.first.date(),
        last=span.last.date(),
        gaps=[] if whole else find_gaps(repo.candle_days(session=session, asset=name)),
        sources=sorted(span.sources, key=lambda s: -span.sources[s]),
        rows_per_source=span.sources,
        source_of_record=repo.source_of_record(session=session, asset=name),
        latest_age_seconds=None,
        stale=None,
    )


def _aged(settings: Settings, summary: AssetStatus, now: datetime) -> AssetStatus:
    """A summary with its data age taken at ``now``."""
    if summary.last is None:
        return summary
    age = data_age(utc_day(summary.last), now)
    return summary.model_copy(update={"latest_age_seconds": age, "stale": settings.is_stale(age)})


def stored_candles(
    engine: Engine, asset: str, *, start: date | None, end: date | None, limit: int
) -> list[Candle]:
    """Stored daily candles of ``asset``, ``start <= day < end``, the newest ``limit``."""
    with read_session(engine) as session:
        return repo.load_candles(
            session=session,
            asset=asset,
            start=utc_day(start) if start else None,
            end=utc_day(end) if end else None,
            limit=limit,
        )


def newest_candles(engine: Engine) -> dict[str, Candle]:
    """The newest stored candle of every asset."""
    with read_session(engine) as session:
        return repo.newest_candles(session=session)


def require_known_asset(settings: Settings, engine: Engine, asset: str) -> None:
    """AssetNotFoundError (404, listing the known ones) unless ``asset`` is tracked or stored."""
    with read_session(engine) as session:
        stored = [s.asset for s in repo.asset_spans(session=session)]
    if asset not in stored and asset not in settings.assets:
        raise AssetNotFoundError(_unknown_asset(asset, settings, stored))


def require_candles(settings: Settings, engine: Engine, asset: str) -> None:
    """404 for an unknown asset; NoDataError (409) for a tracked one with nothing stored."""
    require_known_asset(settings, engine, asset)
    if not has_candles(engine, asset):
        raise NoDataError(f"no data for {asset}: run `btc-predictor ingest --asset {asset}`")


def has_candles(engine: Engine, asset: str | None = None) -> bool:
    """Whether any candle of ``asset`` (default: of any asset) is stored."""
    with read_session(engine) as session:
        return bool(repo.asset_spans(session=session, asset=asset))


@dataclass(slots=True)
class BootstrapResult:
    """What the first-run ingest did per tracked asset (reports, or why it failed)."""

    skipped: bool
    reports: list[IngestReport] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)


def bootstrap(
    settings: Settings,
    engine: Engine,
    *,
    now: datetime,
    source_factory: SourceFactory | None = None,
) -> BootstrapResult:
    """On an empty database, ingest each tracked asset (the first from BOOTSTRAP_CSV if set)."""
    if has_candles(engine):
        return BootstrapResult(skipped=True)
    result = BootstrapResult(skipped=False)
    for index, asset in enumerate(settings.assets):
        path = settings.bootstrap_csv if index == 0 else None
        request = IngestRequest(asset=asset, source="csv" if path else None, path=path)
        try:
            result.reports.append(
                ingest(settings, engine, request, now=now, source_factory=source_factory)
            )
        except DataSourceError as exc:
            result.failures[asset] = exc.reason
    return result
