"""ccxt exchange source against a loopback stub speaking each exchange's real REST format."""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import ccxt
import pytest

from btc_predictor.errors import DataSourceError, InvalidInputError
from btc_predictor.sources.base import parse_asset
from btc_predictor.sources.exchange import ExchangeSource
from tests.sources.http_stub import HttpStub, Reply

BTC = parse_asset("BTC-USD")
DAY_S = 86_400
KRAKEN = "/0/public/OHLC"
BITSTAMP = "/api/v2/ohlc/btcusd/"
COINBASE = "/api/v3/brokerage/market/products/BTC-USD/candles"
# Kraken/Coinbase tests: data 2024-01-01 .. 2024-01-31, where the 31st is today (still open).
NOW = datetime(2024, 1, 31, 6, 0, tzinfo=UTC)
TODAY = NOW.date()

MARKETS = {
    "kraken": {"id": "XXBTZUSD", "baseId": "XXBT", "quoteId": "ZUSD"},
    "bitstamp": {"id": "btcusd", "baseId": "btc", "quoteId": "usd"},
    "coinbase": {"id": "BTC-USD", "baseId": "BTC", "quoteId": "USD"},
}


def secs(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def ohlcv(day: date) -> tuple[float, float, float, float, float]:
    """Deterministic, self-consistent prices for ``day``."""
    base = 40_000.0 + (day - date(2018, 1, 1)).days
    return base, base + 100.0, base - 100.0, base + 50.0, 10.0 + day.day


def client(exchange_id: str, base_url: str) -> Any:
    """A real ccxt client whose URLs point at ``base_url``, with markets set by hand."""
    urls = {
        "kraken": {"public": base_url, "private": base_url},
        "bitstamp": {"public": base_url + "/api", "private": base_url + "/api"},
        "coinbase": {"rest": base_url},
    }[exchange_id]
    ex = getattr(ccxt, exchange_id)(
        {"urls": {"api": urls}, "enableRateLimit": False, "timeout": 2000}
    )
    market = {"symbol": "BTC/USD", "base": "BTC", "quote": "USD", "type": "spot", "spot": True}
    ex.set_markets([{**market, **MARKETS[exchange_id]}])
    return ex


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make(http_stub: HttpStub, sleeps: list[float]) -> Callable[..., ExchangeSource]:
    def build(exchange_id: str = "kraken", now: datetime = NOW, retries: int = 3) -> ExchangeSource:
        return ExchangeSource(
            exchange_id,
            client=client(exchange_id, http_stub.url),
            timeout=2.0,
            retries=retries,
            sleep=sleeps.append,
            clock=lambda: now,
        )

    return build


# --- the exchanges' wire formats -------------------------------------------------------------


def kraken_ohlc(data: list[date], page: int | None = None, key: str = "XXBTZUSD") -> Any:
    """``/0/public/OHLC``: rows after ``since``, strings for numbers (first ``page`` only)."""

    def handler(query: dict[str, str], path: str) -> Reply:
        since = int(query.get("since", "0"))
        after = [d for d in data if secs(d) > since][:page]
        # [time, open, high, low, close, vwap, volume, count]
        rows = [[secs(d), *(str(v) for v in ohlcv(d)[:4]), "0", str(ohlcv(d)[4]), 9] for d in after]
        last = secs(after[-1]) if after else 0
        return 200, {"error": [], "result": {key: rows, "last": last}}, {}

    return handler


def bitstamp_ohlc(data: list[date]) -> Any:
    """``/api/v2/ohlc/btcusd/``: rows with ``start <= ts <= end``, at most ``limit``."""

    def handler(query: dict[str, str], path: str) -> Reply:
        start, end, limit = int(query["start"]), int(query["end"]), int(query["limit"])
        rows = [
            dict(zip(("open", "high", "low", "close", "volume"), map(str, ohlcv(d)), strict=True))
            | {"timestamp": str(secs(d))}
            for d in data
            if start <= secs(d) <= end
        ]
        return 200, {"data": {"pair": "BTC/USD", "ohlc": rows[:limit]}}, {}

    return handler


def coinbase_candles(data: list[date]) -> Any:
    """Coinbase Advanced Trade public candles: ``start <= ts <= end``, newest first."""

    def handler(query: dict[str, str], path: str) -> Reply:
        start, end = int(query["start"]), int(query["end"])
        rows = [
            dict(zip(("open", "high", "low", "close", "volume"), map(str, ohlcv(d)), strict=True))
            | {"start": str(secs(d))}
            for d in reversed(data)
            if start <= secs(d) <= end
        ]
        return 200, {"candles": rows}, {}

    return handler


JANUARY = days(date(2024, 1, 1), TODAY)


def closed_january() -> list[datetime]:
    return [datetime(2024, 1, d, tzinfo=UTC) for d in range(1, 31)]


# --- kraken ----------------------------------------------------------------------------------


def test_kraken_paginates_with_since_until_the_last_closed_day(
    http_stub: HttpStub, make: Callable[..., ExchangeSource]
) -> None:
    http_stub.route(KRAKEN, kraken_ohlc(JANUARY, page=10))
    result = make().fetch(BTC, date(2024, 1, 1), TODAY)
    # ccxt asks Kraken for `since - 1 day`; pages end on the 10th and 20th, then the 30th.
    sinces = [int(q["since"]) for q in http_stub.seen(KRAKEN)]
    assert sinces == [secs(date(2023, 12, 31)), secs(date(2024, 1, 10)), secs(date(2024, 1, 20))]
    assert [c.ts for c in result.candles] == closed_january()
    assert result.source == "exchange:kraken"
    assert result.notes == []


def test_kraken_open_candle_is_dropped(
    http_stub: HttpStub, make: Callable[..., ExchangeSource]
) -> None:
    http_stub.route(KRAKEN, kraken_ohlc(JANUARY))
    result = make().fetch(BTC, None, date(2030, 1, 1))
    assert [c.ts for c in result.candles] == closed_january()
    assert len(http_stub.requests) == 1
    first = result.candles[0]
    assert (first.open, first.high, first.low, first.close, first.volume) == ohlcv(date(2024, 1, 1))


def test_kraken_incremental_fetch_asks_only_after_start(
    http_stub: HttpStub, make: Callable[..., ExchangeSource]
) -> None:
    http_stub.route(KRAKEN, kraken_ohlc(JANUARY))
    result = make().fetch(BTC, date(2024, 1, 29), TODAY)
    assert http_stub.seen(KRAKEN) == [
        {"pair": "XXBTZUSD", "interval": "1440", "since": str(secs(date(2024, 1, 28)))}
    ]
    assert [c.ts.date() for c in result.candles] == [date(2024, 1, 29), date(2024, 1, 30)]


def test_start_at_today_makes_no_request(
    http_stub: HttpStub, make: Callable[..., ExchangeSource]
) -> None:
    result = make().fetch(BTC, TODAY, TODAY + timedelta(days=1))
    assert result.candles == []
    assert http_stub.requests == []


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (429, "Too Many Requests"),
        (500, {"error": []}),
        (503, "<html>Service Unavailable</html>"),
        (504, "Gateway Timeout"),
        (200, {"error": ["EGeneral:Too many requests"]}),
        (200, {"error": ["EService:Unavailable"]}),
    ],
)
def test_kraken_transient_failure_then_success(
    http_stub: HttpStub,
    make: Callable[..., ExchangeSource],
    sleeps: list[float],
    status: int,
    body: Any,
) -> None:
    http_stub.route(KRAKEN, kraken_ohlc(JANUARY))
    http_stub.queue(KRAKEN, status, body)
    result = make().fetch(BTC, None, TODAY)
    assert [c.ts for c in result.candles] == closed_january()
    assert len(http_stub.requests) == 2
    assert sleeps == [1.0]


@pytest.mark.parametrize("status", [400, 403, 404])
def test_kraken_permanent_http_error_is_not_retried(
    http_stub: HttpStub, make: Callable[..., ExchangeSource], sleeps: list[float], status: int
) -> None:
    http_stub.route(KRAKEN, lambda q, p: (status, "nope", {}))
    with pytest.raises(DataSourceError, match=f"ExchangeNotAvailable \\(HTTP {status}\\)"):
        make().fetch(BTC, None, TODAY)
    assert len(http_stub.requests) == 1
    assert sleeps == []


def test_kraken_500_every_time_gives_up_with_growing_delays(
    http_stub: HttpStub, make: Callable[..., ExchangeSource], sleeps: list[float]
) -> None:
    http_stub.route(KRAKEN, lambda q, p: (500, {"error": []}, {}))
    with pytest.raises(DataSourceError, match=r"after 5 attempts; last: .*HTTP 500"):
        make(retries=4).fetch(BTC, None, TODAY)
    assert len(http_stub.requests) == 5
    assert sleeps == [1.0, 2.0, 4.0, 8.0]


def test_exchange_down_raises_after_retries(sleeps: list[float]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    source = ExchangeSource(
        "kraken",
        client=client("kraken", f"http://127.0.0.1:{port}"),
        timeout=2.0,
        retries=2,
        sleep=sleeps.append,
        clock=lambda: NOW,
    )
    with pytest.raises(DataSourceError, match="after 3 attempts; last: NetworkError") as err:
        source.fetch(BTC, None, TODAY)
    assert err.value.source == "exchange:kraken"
    assert sleeps == [1.0, 2.0]


def test_silent_empty_answer_is_an_error(
    http_stub: HttpStub, make: Callable[..., ExchangeSource]
) -> None:
    # The answer is keyed by another market id: ccxt quietly returns [] for it.
    http_stub.route(KRAKEN, kraken_ohlc(JANUARY, key="XBTUSD"))
    with pytest.raises(DataSourceError, match="returned no BTC/USD candles for 2024-01-29"):
        make().fetch(BTC, date(2024, 1, 29), TODAY)


def test_non_json_200_is_an_error(http_stub: HttpStub, make: Callable[..., ExchangeSource]) -> None:
    http_stub.route(KRAKEN, lambda q, p: (200, "<html>maintenance</html>", {}))
    with pytest.raises(DataSourceError, match="returned no BTC/USD candles"):
        make().fetch(BTC, None, TODAY)


def test_empty_historical_range_is_a_note_not_an_error(
    http_stub: HttpStub, make: Callable[..., ExchangeSource]
) -> None:
    http_stub.route(KRAKEN, kraken_ohlc(JANUARY))
    result = make().fetch(BTC, date(2023, 6, 1), date(2023, 7, 1))
    assert result.candles == []
    assert result.notes == ["kraken has no BTC/USD candles for 2023-06-01..2023-06-30"]


def test_history_starting_later_than_asked_is_noted(
    http_stub: HttpStub, make: Callable[..., ExchangeSource]
) -> None:
    http_stub.route(KRAKEN, kraken_ohlc(JANUARY))
    result = make().fetch(BTC, date(2023, 12, 1), TODAY)
    assert len(result.candles) == 30
    assert result.notes == [
        "kraken returned BTC/USD history only from 2024-01-01 (asked from 2023-12-01)"
    ]


def test_unlisted_symbol_is_invalid_input(
    http_stub: HttpStub, make: Callable[..., ExchangeSource]
) -> None:
    with pytest.raises(InvalidInputError, match="kraken does not list BTC/XYZ"):
        make().fetch(parse_asset("BTC-XYZ"), None, TODAY)
    assert http_stub.requests == []


# --- bitstamp and coinbase (fixed windows) ---------------------------------------------------


def test_bitstamp_paginates_windows_of_1000_days(
    http_stub: HttpStub, make: Callable[..., ExchangeSource]
) -> None:
    first = date(2018, 1, 1)
    today = first + timedelta(days=2499)
    http_stub.route(BITSTAMP, bitstamp_ohlc(days(first, today)))
    now = datetime(today.year, today.month, today.day, 12, tzinfo=UTC)
    result = make("bitstamp", now=now).fetch(BTC, first, today)
    starts = [secs(first + timedelta(days=k)) for k in (0, 1000, 2000)]
    assert http_stub.seen(BITSTAMP) == [
        {"step": "86400", "start": str(s), "end": str(s + 1000 * DAY_S - 1), "limit": "1000"}
        for s in starts
    ]
    assert len(result.candles) == 2499
    assert result.candles[-1].ts.date() == today - timedelta(days=1)


def test_bitstamp_incremental_fetch_asks_only_after_start(
    http_stub: HttpStub, make: Callable[..., ExchangeSource]
) -> None:
    http_stub.route(BITSTAMP, bitstamp_ohlc(JANUARY))
    result = make("bitstamp").fetch(BTC, date(2024, 1, 30), TODAY)
    assert [q["start"] for q in http_stub.seen(BITSTAMP)] == [str(secs(date(2024, 1, 30)))]
    assert [c.ts.date() for c in result.candles] == [date(2024, 1, 30)]


def test_bitstamp_500_then_success_and_404_not_retried(
    http_stub: HttpStub, make: Callable[..., ExchangeSource], sleeps: list[float]
) -> None:
    http_stub.route(BITSTAMP, bitstamp_ohlc(JANUARY))
    http_stub.queue(BITSTAMP, 500, "Internal Server Error")
    assert len(make("bitstamp").fetch(BTC, None, TODAY).candles) == 30
    http_stub.queue(BITSTAMP, 404, {"status": "error", "reason": "Not found"})
    with pytest.raises(DataSourceError, match="HTTP 404"):
        make("bitstamp").fetch(BTC, date(2024, 1, 1), TODAY)
    assert sleeps == [1.0]


def test_coinbase_skips_empty_windows_before_the_listing(
    http_stub: HttpStub, make: Callable[..., ExchangeSource]
) -> None:
    http_stub.route(COINBASE, coinbase_candles(days(date(2023, 6, 1), TODAY)))
    result = make("coinbase").fetch(BTC, date(2022, 1, 1), TODAY)
    starts = [int(q["start"]) for q in http_stub.seen(COINBASE)]
    # The empty window before the listing is skipped, not taken for the end of history.
    assert starts[:2] == [secs(date(2022, 1, 1)), secs(date(2022, 10, 28))]
    assert all(q["granularity"] == "ONE_DAY" for q in http_stub.seen(COINBASE))
    assert result.candles[0].ts.date() == date(2023, 6, 1)
    assert result.candles[-1].ts.date() == date(2024, 1, 30)
    assert len(result.candles) == len(days(date(2023, 6, 1), date(2024, 1, 30)))


# --- construction ----------------------------------------------------------------------------


def test_unknown_exchange_id_is_invalid_input() -> None:
    with pytest.raises(
        InvalidInputError, match="ccxt has no exchange `krakn`; did you mean kraken"
    ):
        ExchangeSource("krakn", timeout=1.0, retries=0)


def test_production_client_has_rate_limiting_and_timeout() -> None:
    source = ExchangeSource("Bitstamp", timeout=7.5, retries=2)
    assert source.name == "exchange:bitstamp"
    assert source._client.enableRateLimit is True
    assert source._client.timeout == 7500


def test_a_timestamp_beyond_any_date_is_an_unusable_page(
    http_stub: HttpStub, make: Callable[..., ExchangeSource]
) -> None:
    rows = [[10**20, "1", "2", "1", "1", "0", "1", 1]]  # seconds: ccxt makes it 1e23 ms
    http_stub.route(KRAKEN, lambda q, p: (200, {"error": [], "result": {"XXBTZUSD": rows}}, {}))
    with pytest.raises(DataSourceError, match="unexpected OHLCV page"):
        make().fetch(BTC, None, TODAY)
