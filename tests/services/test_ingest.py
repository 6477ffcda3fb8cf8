"""Ingest and data-status use cases, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, select

from btc_predictor.config import Settings
from btc_predictor.errors import AssetNotFoundError, DataSourceError, InvalidInputError
from btc_predictor.services.ingest import AssetSummaries, bootstrap, data_status, ingest
from btc_predictor.shapes.requests import IngestRequest
from btc_predictor.sources import make_source
from btc_predictor.sources.base import CandleSource, data_age, utc_day
from btc_predictor.sources.exchange import ExchangeSource
from btc_predictor.sources.yahoo import YahooSource
from btc_predictor.storage import repository as repo
from btc_predictor.storage.db import read_session
from btc_predictor.storage.tables import IngestRunRow
from tests.conftest import NOW
from tests.factories import FakeSource, make_candles
from tests.sources.http_stub import HttpStub
from tests.sources.test_exchange import KRAKEN
from tests.sources.test_exchange import client as exchange_client

CLOCK = datetime(2024, 2, 1, 9, tzinfo=UTC)  # 31 closed days in January 2024


def stored(engine: Engine, asset: str = "BTC-USD") -> list:
    with read_session(engine) as session:
        return repo.load_candles(session=session, asset=asset)


def factory_for(*sources: FakeSource):
    table = {s.name: s for s in sources}
    return lambda spec: table[spec]


def test_real_files_ingest_exactly_and_reingest_changes_nothing(
    settings: Settings, engine: Engine, shared_data: Path
) -> None:
    btc = ingest(
        settings,
        engine,
        IngestRequest(asset="BTC-USD", path=shared_data / "Bitstamp_BTCUSD_d.csv"),
        now=NOW,
    )
    assert (btc.inserted, btc.rejected, btc.fixed_volume, btc.gaps) == (4020, 0, 1180, [])
    assert (btc.first, btc.last) == (date(2014, 11, 28), date(2025, 11, 29))
    eth = ingest(
        settings,
        engine,
        IngestRequest(asset="ETH-USD", path=shared_data / "Bitstamp_ETHUSD_d.csv"),
        now=NOW,
    )
    assert (eth.inserted, eth.rejected, eth.fixed_volume) == (1437, 988, 111)
    assert (eth.first, eth.last) == (date(2017, 11, 9), date(2021, 10, 15))
    assert len(eth.rejected_examples) == 5 and "not a positive price" in eth.rejected_examples[0]
    again = ingest(
        settings,
        engine,
        IngestRequest(asset="BTC-USD", path=shared_data / "Bitstamp_BTCUSD_d.csv"),
        now=NOW,
    )
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 4020)
    zero_volume = [c for c in stored(engine) if c.volume == 0]
    assert len(zero_volume) == 8


def test_online_ingest_is_incremental(settings: Settings, engine: Engine) -> None:
    source = FakeSource("yahoo", make_candles(date(2024, 1, 1), 45))
    first = ingest(
        settings,
        engine,
        IngestRequest(asset="BTC-USD"),
        now=CLOCK,
        source_factory=factory_for(source),
    )
    assert (first.source, first.inserted, first.last) == ("yahoo", 31, date(2024, 1, 31))
    second = ingest(
        settings,
        engine,
        IngestRequest(asset="BTC-USD"),
        now=CLOCK + timedelta(days=3),
        source_factory=factory_for(source),
    )
    assert second.inserted == 3
    assert source.calls == [(None, date(2024, 2, 1)), (date(2024, 2, 1), date(2024, 2, 4))]
    up_to_date = ingest(
        settings,
        engine,
        IngestRequest(asset="BTC-USD"),
        now=CLOCK + timedelta(days=3),
        source_factory=factory_for(source),
    )
    assert up_to_date.fetched == 0 and len(source.calls) == 2
    assert "up to date" in up_to_date.notes[0]


def test_chain_falls_back_and_reports_who_served(settings: Settings, engine: Engine) -> None:
    settings = settings.model_copy(update={"sources": ["yahoo", "exchange:bitstamp"]})
    down = FakeSource("yahoo", fail="HTTP 503 after 4 retries")
    backup = FakeSource("exchange:bitstamp", make_candles(date(2024, 1, 1), 31))
    report = ingest(
        settings,
        engine,
        IngestRequest(asset="BTC-USD"),
        now=CLOCK,
        source_factory=factory_for(down, backup),
    )
    assert report.source == "exchange:bitstamp" and report.inserted == 31
    assert report.failed_sources == {"yahoo": "HTTP 503 after 4 retries"}
    assert report.source == "exchange:bitstamp"


def test_all_sources_failing_stores_nothing_and_records_the_run(
    settings: Settings, engine: Engine
) -> None:
    settings = settings.model_copy(update={"sources": ["yahoo", "exchange:kraken"]})
    sources = factory_for(
        FakeSource("yahoo", fail="timeout"), FakeSource("exchange:kraken", fail="down")
    )
    with pytest.raises(
        DataSourceError,
        match=r"BTC-USD: no source could serve it \(yahoo: timeout; exchange:kraken: down\)",
    ):
        ingest(settings, engine, IngestRequest(asset="BTC-USD"), now=CLOCK, source_factory=sources)
    assert stored(engine) == []
    with read_session(engine) as session:
        runs = session.scalars(select(IngestRunRow)).all()
    assert [(r.status, r.inserted) for r in runs] == [("failed", 0)]


def test_other_sources_only_append_after_the_source_of_record(
    settings: Settings, engine: Engine
) -> None:
    csv = FakeSource("csv", make_candles(date(2024, 1, 1), 20))
    ingest(
        settings,
        engine,
        IngestRequest(asset="BTC-USD", source="csv", path=Path("x.csv")),
        now=CLOCK,
        source_factory=factory_for(csv),
    )
    online = [
        replace(c, close=c.close + 1, high=c.high + 1) for c in make_candles(date(2024, 1, 1), 31)
    ]
    yahoo = FakeSource("yahoo", online)
    report = ingest(
        settings,
        engine,
        IngestRequest(asset="BTC-USD", source="yahoo", since=date(2024, 1, 1)),
        now=CLOCK,
        source_factory=factory_for(yahoo),
    )
    assert (report.inserted, report.updated) == (11, 0)
    assert "not the source of record" in report.notes[-1]
    rows = stored(engine)
    assert [c.close for c in rows[:20]] == [c.close for c in csv.candles]
    forced = ingest(
        settings,
        engine,
        IngestRequest(asset="BTC-USD", source="yahoo", since=date(2024, 1, 1), force=True),
        now=CLOCK,
        source_factory=factory_for(yahoo),
    )
    assert forced.updated == 20
    assert [c.close for c in stored(engine)] == [c.close for c in online]


def test_non_owner_without_since_appends_only_after_last_day(
    settings: Settings, engine: Engine
) -> None:
    days = make_candles(date(2024, 1, 1), 31)
    csv = FakeSource("csv", days[:10] + days[15:25])  # a gap on 11..15 January
    ingest(
        settings,
        engine,
        IngestRequest(asset="BTC-USD", source="csv", path=Path("x.csv")),
        now=CLOCK,
        source_factory=factory_for(csv),
    )
    yahoo = FakeSource("yahoo", days)
    report = ingest(
        settings,
        engine,
        IngestRequest(asset="BTC-USD", source="yahoo"),
        now=CLOCK,
        source_factory=factory_for(yahoo),
    )
    assert yahoo.calls == [(date(2024, 1, 26), date(2024, 2, 1))]
    assert report.inserted == 6 and report.gaps == [(date(2024, 1, 11), date(2024, 1, 15))]
    backfill = ingest(
        settings,
        engine,
        IngestRequest(asset="BTC-USD", source="yahoo", since=date(2024, 1, 1)),
        now=CLOCK,
        source_factory=factory_for(yahoo),
    )
    assert backfill.inserted == 5 and backfill.gaps == []


def test_rejected_rows_are_reported_and_never_stored(settings: Settings, engine: Engine) -> None:
    candles = make_candles(date(2024, 1, 1), 31)
    candles[4] = replace(candles[4], high=candles[4].close - 5)
    source = FakeSource("yahoo", candles)
    report = ingest(
        settings,
        engine,
        IngestRequest(asset="BTC-USD"),
        now=CLOCK,
        source_factory=factory_for(source),
    )
    assert report.rejected == 1 and report.inserted == 30
    assert report.rejected_examples == ["2024-01-05: high 99.0 is below open/close"]
    assert report.gaps == [(date(2024, 1, 5), date(2024, 1, 5))]


def test_a_malformed_asset_is_refused_by_the_request_shape() -> None:
    with pytest.raises(ValidationError, match="`BTCUSD` is not of the form BASE-QUOTE"):
        IngestRequest(asset="BTCUSD")


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (IngestRequest(asset="BTC-USD", source="binance"), "unknown source `binance`"),
        (IngestRequest(asset="BTC-USD", source="csv"), "--source csv needs --path FILE"),
        (
            IngestRequest(asset="BTC-USD", source="yahoo", path=Path("f.csv")),
            "--path is only for --source csv",
        ),
    ],
)
def test_bad_requests_are_rejected_before_any_work(
    sqlite_settings: Settings, request_: IngestRequest, message: str
) -> None:
    from btc_predictor.storage.db import create_db_engine, upgrade

    engine = create_db_engine(sqlite_settings)
    upgrade(engine)
    with pytest.raises(InvalidInputError, match=message.replace("-", r"\-")):
        ingest(sqlite_settings, engine, request_, now=CLOCK)
    assert stored(engine) == []


def test_data_status_reports_rows_range_gaps_sources_and_age(
    settings: Settings, engine: Engine
) -> None:
    days = make_candles(date(2024, 1, 1), 31)
    source = FakeSource("yahoo", days[:3] + days[5:])
    ingest(
        settings,
        engine,
        IngestRequest(asset="BTC-USD"),
        now=CLOCK,
        source_factory=factory_for(source),
    )
    [btc] = data_status(settings, engine, asset="btc-usd", now=CLOCK)
    assert btc.model_dump(mode="json") == {
        "asset": "BTC-USD",
        "rows": 29,
        "first": "2024-01-01",
        "last": "2024-01-31",
        "gaps": [["2024-01-04", "2024-01-05"]],
        "sources": ["yahoo"],
        "rows_per_source": {"yahoo": 29},
        "source_of_record": "yahoo",
        "latest_age_seconds": 9 * 3600.0,
        "stale": False,
    }
    tracked = settings.model_copy(update={"assets": ["BTC-USD", "ETH-USD"]})
    listing = data_status(tracked, engine, asset=None, now=CLOCK + timedelta(days=3))
    assert [(s.asset, s.rows, s.stale) for s in listing] == [
        ("BTC-USD", 29, True),
        ("ETH-USD", 0, None),
    ]
    with pytest.raises(AssetNotFoundError, match="known: BTC-USD"):
        data_status(settings, engine, asset="DOGE-USD", now=CLOCK)


def test_asset_summaries_are_kept_until_the_data_changes(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per request one aggregate row per asset: stored days are read only after a change
    (and only when some are missing, to list the gaps)."""
    days = make_candles(date(2024, 1, 1), 31)
    request = IngestRequest(asset="BTC-USD")
    gappy = FakeSource("yahoo", days[:3] + days[5:20])
    ingest(settings, engine, request, now=CLOCK, source_factory=factory_for(gappy))
    reads: list[str] = []
    every_day = repo.candle_days
    monkeypatch.setattr(
        repo, "candle_days", lambda **kw: reads.append(kw["asset"]) or every_day(**kw)
    )
    kept = AssetSummaries()
    for hour in range(5):
        later = CLOCK + timedelta(hours=hour)
        [btc] = data_status(settings, engine, asset=None, now=later, summaries=kept)
        assert btc.latest_age_seconds == data_age(utc_day(date(2024, 1, 20)), later)
    assert (btc.rows, btc.gaps, reads) == (18, [(date(2024, 1, 4), date(2024, 1, 5))], ["BTC-USD"])
    # New data: the next request sees it (no poll in between), and no gap left
    # to list means no stored day is read (rows == days spanned).
    filled = FakeSource("yahoo", days)
    ingest(
        settings,
        engine,
        IngestRequest(asset="BTC-USD", since=date(2024, 1, 1)),
        now=CLOCK,
        source_factory=factory_for(filled),
    )
    reads.clear()  # the ingest's own gap report
    [btc] = data_status(settings, engine, asset="BTC-USD", now=CLOCK, summaries=kept)
    assert (btc.rows, btc.last, btc.gaps, reads) == (31, date(2024, 1, 31), [], [])
    assert btc == data_status(settings, engine, asset="BTC-USD", now=CLOCK)[0]


def test_bootstrap_ingests_only_an_empty_database(
    settings: Settings, engine: Engine, shared_data: Path
) -> None:
    settings = settings.model_copy(
        update={
            "assets": ["BTC-USD", "ETH-USD"],
            "bootstrap_csv": shared_data / "Bitstamp_BTCUSD_d.csv",
        }
    )
    offline = FakeSource("yahoo", fail="no network")

    def sources(spec: str) -> CandleSource:
        return (
            offline if spec == "yahoo" else make_source(spec, settings, path=settings.bootstrap_csv)
        )

    result = bootstrap(settings, engine, now=NOW, source_factory=sources)
    assert [r.inserted for r in result.reports] == [4020]
    assert list(result.failures) == ["ETH-USD"]
    assert bootstrap(settings, engine, now=NOW, source_factory=sources).skipped


def test_real_adapters_exchange_down_falls_back_to_yahoo(
    settings: Settings, engine: Engine, http_stub
) -> None:
    """kraken refuses connections; the chain moves on to Yahoo's chart API (both on loopback)."""
    import socket

    from curl_cffi.requests import Session

    from btc_predictor.sources.exchange import ExchangeSource
    from btc_predictor.sources.yahoo import YahooSource
    from tests.sources.test_exchange import client
    from tests.sources.test_yahoo import fixture

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    http_stub.route(
        "/v8/finance/chart/BTC-USD",
        lambda query, path: (200, fixture("yahoo_chart_btc_usd.json"), {}),
    )
    clock = datetime(2024, 1, 6, 12, tzinfo=UTC)
    sleeps: list[float] = []
    with Session() as session:
        sources = {
            "exchange:kraken": ExchangeSource(
                "kraken",
                client=client("kraken", dead),
                timeout=1.0,
                retries=2,
                sleep=sleeps.append,
                clock=lambda: clock,
            ),
            "yahoo": YahooSource(
                session=session, base_url=http_stub.url, timeout=2.0, retries=0, clock=lambda: clock
            ),
        }
        chain = settings.model_copy(update={"sources": ["exchange:kraken", "yahoo"]})
        report = ingest(
            chain,
            engine,
            IngestRequest(asset="BTC-USD"),
            now=clock,
            source_factory=sources.__getitem__,
        )
    assert report.source == "yahoo" and report.inserted > 0
    assert list(report.failed_sources) == ["exchange:kraken"] and sleeps == [1.0, 2.0]
    assert len(http_stub.seen("/v8/finance/chart/BTC-USD")) == 1
    assert stored(engine)[-1].ts.date() == date(2024, 1, 5)  # the live 6 January candle is dropped


# One bad field per day, 2024-01-03 .. 2024-01-08: every spelling of a non-finite number the
# formats allow (CSV text, JSON tokens, ccxt's numeric strings), and NaN for comparison.
NON_FINITE = {
    3: ("open", "inf"),
    4: ("high", "Infinity"),
    5: ("low", "-inf"),
    6: ("close", "1e400"),
    7: ("volume", "9" * 400),
    8: ("close", "nan"),
}
REJECTED_NON_FINITE = [
    "2024-01-03: open inf is not a finite number",
    "2024-01-04: high inf is not a finite number",
    "2024-01-05: low -inf is not a finite number",
    "2024-01-06: close inf is not a finite number",
    "2024-01-07: volume inf is not a finite number",
]
FIELDS = ("open", "high", "low", "close", "volume")


def stamp(day: date) -> int:
    """Unix seconds of ``day`` at 00:00 UTC."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def january_rows(last: int = 10) -> list[tuple[date, dict[str, str]]]:
    """Sound OHLCV text per day of January 2024, with the NON_FINITE fields swapped in."""
    rows = []
    for day in range(1, last + 1):
        values = dict(zip(FIELDS, ("100", "110", "90", "105", "5"), strict=True))
        if day in NON_FINITE:
            field_name, text = NON_FINITE[day]
            values[field_name] = text
        rows.append((date(2024, 1, day), values))
    return rows


def _csv_cdd(tmp_path: Path, http_stub: HttpStub) -> CandleSource:
    header = "unix,date,symbol,open,high,low,close,Volume BTC,Volume USD"
    lines = [
        f"{stamp(d)},{d},BTC/USD,{v['open']},{v['high']},{v['low']},{v['close']},{v['volume']},500"
        for d, v in reversed(january_rows(11))  # newest first; the 11th is the download day
    ]
    path = tmp_path / "cdd.csv"
    path.write_text("\n".join(["https://www.CryptoDataDownload.com", header, *lines]))
    return make_source("csv", Settings(), path=path, clock=lambda: CLOCK)


def _csv_yahoo(tmp_path: Path, http_stub: HttpStub) -> CandleSource:
    lines = [
        f"{d},{v['open']},{v['high']},{v['low']},{v['close']},{v['close']},{v['volume']}"
        for d, v in january_rows()
    ]
    path = tmp_path / "yahoo.csv"
    path.write_text("\n".join(["Date,Open,High,Low,Close,Adj Close,Volume", *lines]))
    return make_source("csv", Settings(), path=path, clock=lambda: CLOCK)


def _yahoo(tmp_path: Path, http_stub: HttpStub) -> CandleSource:
    rows = january_rows()
    # The JSON text holds the raw tokens: Python's json (so Yahoo's client) reads NaN,
    # Infinity, 1e400 and a 400-digit integer without complaint.
    tokens = {"inf": "Infinity", "-inf": "-Infinity", "nan": "NaN"}
    columns = [f'"{n}":[{",".join(tokens.get(v[n], v[n]) for _, v in rows)}]' for n in FIELDS]
    chart = {"timestamp": [stamp(d) for d, _ in rows], "indicators": {"quote": ["QUOTE"]}}
    body = json.dumps({"chart": {"result": [chart], "error": None}})
    body = body.replace('"QUOTE"', "{" + ",".join(columns) + "}")
    http_stub.route("/v8/finance/chart/BTC-USD", lambda query, path: (200, body, {}))
    return YahooSource(base_url=http_stub.url, timeout=2.0, retries=0, clock=lambda: CLOCK)


def _kraken(tmp_path: Path, http_stub: HttpStub) -> CandleSource:
    # Kraken sends numbers as strings; ccxt reads "inf", "Infinity" and "1e400" as floats.
    rows = [
        [stamp(d), v["open"], v["high"], v["low"], v["close"], "0", v["volume"], 9]
        for d, v in january_rows()
    ]
    answer = {"error": [], "result": {"XXBTZUSD": rows, "last": rows[-1][0]}}
    http_stub.route(KRAKEN, lambda query, path: (200, answer, {}))
    return ExchangeSource(
        "kraken",
        client=exchange_client("kraken", http_stub.url),
        timeout=2.0,
        retries=0,
        clock=lambda: CLOCK,
    )


@pytest.mark.parametrize(
    "build", [_csv_cdd, _csv_yahoo, _yahoo, _kraken], ids=lambda f: f.__name__[1:]
)
def test_every_source_rejects_non_finite_values_like_nan(
    sqlite_settings: Settings,
    tmp_path: Path,
    http_stub: HttpStub,
    build: Callable[[Path, HttpStub], CandleSource],
) -> None:
    from btc_predictor.storage.db import create_db_engine, upgrade

    source = build(tmp_path, http_stub)
    engine = create_db_engine(sqlite_settings)
    upgrade(engine)
    report = ingest(
        sqlite_settings,
        engine,
        IngestRequest(asset="BTC-USD", source=source.name),
        now=CLOCK,
        source_factory=lambda _spec: source,
    )
    assert (report.rejected, report.inserted) == (6, 4)
    assert report.rejected_examples == REJECTED_NON_FINITE
    assert [c.ts.day for c in stored(engine)] == [1, 2, 9, 10]


def test_a_future_newest_row_of_a_cdd_file_is_rejected_and_reported(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    """The download day is the newest row not in the future; the future row is a bad row."""
    header = "unix,date,symbol,open,high,low,close,Volume BTC,Volume USD"
    days = [date(2024, 2, 5), date(2024, 2, 1), date(2024, 1, 31), date(2024, 1, 30)]
    lines = [f"{stamp(d)},{d},BTC/USD,100,110,90,105,5,525" for d in days]  # newest first
    path = tmp_path / "Bitstamp_BTCUSD_d.csv"
    path.write_text("\n".join(["https://www.CryptoDataDownload.com", header, *lines]))
    report = ingest(settings, engine, IngestRequest(asset="BTC-USD", path=path), now=CLOCK)
    assert (report.fetched, report.rejected, report.inserted) == (3, 1, 2)
    assert report.rejected_examples == ["2024-02-05: timestamp is in the future"]
    assert "(2024-02-01): it is the download day" in report.notes[0]
    assert [c.ts.date() for c in stored(engine)] == [date(2024, 1, 30), date(2024, 1, 31)]
