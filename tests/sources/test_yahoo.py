"""Yahoo chart client against a loopback stub, through a real curl_cffi session."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from curl_cffi.requests import Session

from btc_predictor.errors import DataSourceError
from btc_predictor.sources.base import parse_asset
from btc_predictor.sources.yahoo import YahooSource
from tests.sources.http_stub import HttpStub

FIXTURES = Path(__file__).parent / "fixtures"
BTC = parse_asset("BTC-USD")
CHART = "/v8/finance/chart/BTC-USD"
# The fixture's last row is 2024-01-06 05:41 UTC, Yahoo's live candle for that day.
NOW = datetime(2024, 1, 6, 6, 0, tzinfo=UTC)
TODAY = NOW.date()


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def epoch(day: date) -> str:
    return str(int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()))


@pytest.fixture
def session() -> Iterator[Session[Any]]:
    with Session(impersonate="chrome") as s:
        yield s


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make(http_stub: HttpStub, session: Session[Any], sleeps: list[float]) -> Any:
    def build(retries: int = 3, now: datetime = NOW, **kw: Any) -> YahooSource:
        kw.setdefault("base_url", http_stub.url)
        kw.setdefault("session", session)
        return YahooSource(
            timeout=2.0, retries=retries, sleep=sleeps.append, clock=lambda: now, **kw
        )

    return build


def serve(stub: HttpStub, name: str, status: int = 200) -> None:
    body = fixture(name)
    stub.route(CHART, lambda q, p: (status, body, {}))


def test_normal_range_skips_null_row_and_drops_today(http_stub: HttpStub, make: Any) -> None:
    serve(http_stub, "yahoo_chart_btc_usd.json")
    result = make().fetch(BTC, None, date(2024, 2, 1))
    days = [c.ts for c in result.candles]
    assert days == [datetime(2024, 1, d, tzinfo=UTC) for d in (1, 2, 4, 5)]
    first = result.candles[0]
    assert (first.open, first.high, first.low, first.close) == (
        42280.234375,
        44175.4375,
        42214.9765625,
        44167.33203125,
    )
    assert first.volume == 18426978443.0
    assert result.source == "yahoo"
    assert result.notes == ["skipped 1 Yahoo row(s) with null prices or volume"]


def test_live_row_becomes_a_midnight_candle_once_its_day_closed(
    http_stub: HttpStub, make: Any
) -> None:
    serve(http_stub, "yahoo_chart_btc_usd.json")
    result = make(now=datetime(2024, 1, 7, 0, 5, tzinfo=UTC)).fetch(BTC, None, date(2024, 1, 7))
    assert result.candles[-1].ts == datetime(2024, 1, 6, tzinfo=UTC)
    assert result.candles[-1].close == 43610.51953125


def test_current_day_is_dropped_even_when_end_is_later(http_stub: HttpStub, make: Any) -> None:
    serve(http_stub, "yahoo_chart_btc_usd.json")
    result = make().fetch(BTC, date(2024, 1, 5), date(2030, 1, 1))
    assert [c.ts.date() for c in result.candles] == [date(2024, 1, 5)]


def test_start_and_end_are_sent_as_period1_period2(http_stub: HttpStub, make: Any) -> None:
    serve(http_stub, "yahoo_chart_btc_usd.json")
    result = make().fetch(BTC, date(2024, 1, 2), date(2024, 1, 5))
    assert http_stub.seen(CHART) == [
        {
            "period1": epoch(date(2024, 1, 2)),
            "period2": epoch(date(2024, 1, 5)),
            "interval": "1d",
            "events": "div,splits",
        }
    ]
    assert [c.ts.date() for c in result.candles] == [date(2024, 1, 2), date(2024, 1, 4)]


def test_no_start_asks_from_2010_and_caps_period2_at_today(http_stub: HttpStub, make: Any) -> None:
    serve(http_stub, "yahoo_chart_btc_usd.json")
    make().fetch(BTC, None, date(2030, 1, 1))
    query = http_stub.seen(CHART)[0]
    assert (query["period1"], query["period2"]) == ("1262304000", epoch(TODAY))


def test_start_at_today_makes_no_request(http_stub: HttpStub, make: Any) -> None:
    result = make().fetch(BTC, TODAY, date(2024, 1, 7))
    assert result.candles == []
    assert http_stub.requests == []


def test_empty_range_is_an_empty_result(http_stub: HttpStub, make: Any) -> None:
    serve(http_stub, "yahoo_chart_empty.json")
    result = make().fetch(BTC, date(2024, 1, 5), TODAY)
    assert result.candles == []
    assert result.notes == []


@pytest.mark.parametrize("status", [404, 200])
def test_error_payload_raises_with_yahoos_description(
    http_stub: HttpStub, make: Any, sleeps: list[float], status: int
) -> None:
    serve(http_stub, "yahoo_chart_error.json", status)
    with pytest.raises(DataSourceError, match="No data found, symbol may be delisted") as err:
        make().fetch(BTC, None, TODAY)
    assert err.value.source == "yahoo"
    assert len(http_stub.requests) == 1
    assert sleeps == []


def test_429_then_200_is_retried(http_stub: HttpStub, make: Any, sleeps: list[float]) -> None:
    serve(http_stub, "yahoo_chart_btc_usd.json")
    http_stub.queue(CHART, 429, "Too Many Requests")
    result = make().fetch(BTC, None, TODAY)
    assert len(result.candles) == 4
    assert len(http_stub.requests) == 2
    assert sleeps == [1.0]


def test_500_every_time_gives_up_after_retries(
    http_stub: HttpStub, make: Any, sleeps: list[float]
) -> None:
    http_stub.route(CHART, lambda q, p: (500, "Internal Server Error", {}))
    with pytest.raises(DataSourceError, match=r"after 4 attempts; last: HTTP 500"):
        make(retries=3).fetch(BTC, None, TODAY)
    assert len(http_stub.requests) == 4
    assert sleeps == [1.0, 2.0, 4.0]


def test_other_4xx_is_not_retried(http_stub: HttpStub, make: Any, sleeps: list[float]) -> None:
    http_stub.route(CHART, lambda q, p: (403, "Forbidden", {}))
    with pytest.raises(DataSourceError, match="HTTP 403: Forbidden"):
        make().fetch(BTC, None, TODAY)
    assert len(http_stub.requests) == 1
    assert sleeps == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("<html>consent</html>", "not JSON"),
        ({"unexpected": True}, "unexpected chart JSON shape"),
        ({"chart": {"result": None, "error": None}}, "unexpected chart JSON shape"),
    ],
)
def test_unusable_payload_raises(http_stub: HttpStub, make: Any, body: Any, message: str) -> None:
    http_stub.route(CHART, lambda q, p: (200, body, {}))
    with pytest.raises(DataSourceError, match=message):
        make().fetch(BTC, None, TODAY)


def test_connection_refused_is_retried_then_raises(make: Any, sleeps: list[float]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DataSourceError, match="after 3 attempts; last: ConnectionError"):
        make(retries=2, base_url=f"http://127.0.0.1:{port}").fetch(BTC, None, TODAY)
    assert sleeps == [1.0, 2.0]


def test_timeout_is_retried(http_stub: HttpStub, make: Any, sleeps: list[float]) -> None:
    def slow(q: dict[str, str], p: str) -> Any:
        time.sleep(0.6)
        return 200, fixture("yahoo_chart_btc_usd.json"), {}

    http_stub.route(CHART, slow)
    source = YahooSource(
        base_url=http_stub.url, timeout=0.2, retries=1, sleep=sleeps.append, clock=lambda: NOW
    )
    with pytest.raises(DataSourceError, match=r"after 2 attempts; last: .*Timeout"):
        source.fetch(BTC, None, TODAY)
    assert sleeps == [1.0]


def test_default_transport_is_a_browser_like_curl_session(http_stub: HttpStub) -> None:
    serve(http_stub, "yahoo_chart_btc_usd.json")
    source = YahooSource(base_url=http_stub.url + "/", timeout=2.0, retries=0, clock=lambda: NOW)
    assert len(source.fetch(BTC, None, TODAY).candles) == 4
    assert http_stub.requests[0].path == CHART
