"""Crypto-exchange daily candles through ccxt (kraken, bitstamp, coinbase, …), paged and retried."""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Callable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from btc_predictor.errors import DataSourceError, InvalidInputError
from btc_predictor.sources.base import (
    DAY,
    Asset,
    Candle,
    FetchResult,
    backoff_delay,
    from_epoch_seconds,
    today_utc,
    utc_day,
    utc_now,
)

if TYPE_CHECKING:
    import ccxt

EARLIEST = date(2010, 1, 1)
# Candles per request; ccxt caps some of these again on its side.
PAGE_DAYS = {"kraken": 720, "bitstamp": 1000, "coinbase": 300}
# These answer the window [since, since + page): an empty page may just precede the listing.
WINDOWED = frozenset({"bitstamp", "coinbase"})
_DAY_MS = 86_400_000
_LAST_MS = 253_402_300_800_000  # 10000-01-01: past it, no datetime holds the timestamp
_SNIPPET = 300
# ccxt's own message for an HTTP error: "<id> <METHOD> <url> <status> <reason> <body>".
_STATUS_IN_MESSAGE = re.compile(r"^\S+ [A-Z]+ \S+ (\d{3}) ")

Row = list[Any]


class ExchangeSource:
    """Closed daily candles from one exchange's public REST API, via sync ccxt."""

    def __init__(
        self,
        exchange_id: str,
        *,
        client: ccxt.Exchange | None = None,
        timeout: float,
        retries: int,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.exchange_id = exchange_id.strip().lower()
        self.name = f"exchange:{self.exchange_id}"
        self._client = client if client is not None else make_client(self.exchange_id, timeout)
        self._retries = max(retries, 0)
        self._sleep = sleep
        self._clock = clock

    def fetch(self, asset: Asset, start: date | None, end: date) -> FetchResult:
        """Closed daily candles for ``asset`` in ``[start, end)``, today's open candle dropped."""
        today = today_utc(self._clock())
        stop = min(end, today)
        first = start or EARLIEST
        result = FetchResult(self.name, [])
        if first >= stop:
            return result
        symbol = asset.ccxt_symbol
        result.candles = _to_candles(self._rows(symbol, first, stop), first, stop, result.notes)
        self._check_coverage(result, symbol, start, stop, today)
        return result

    def _rows(self, symbol: str, first: date, stop: date) -> list[Row]:
        """Every row from ``first`` up to ``stop``, one page at a time."""
        since, stop_ms = _ms(first), _ms(stop)
        limit = PAGE_DAYS.get(self.exchange_id)
        rows: list[Row] = []
        while since < stop_ms:
            page = [row for row in self._page(symbol, since, limit) if row[0] >= since]
            rows.extend(page)
            following = self._next_since(since, page, limit)
            if following is None:
                break
            since = following
        return rows

    def _next_since(self, since: int, page: list[Row], limit: int | None) -> int | None:
        """Where the next page starts; always later than ``since``, or None to stop."""
        if page:
            return max(int(row[0]) for row in page) + _DAY_MS
        if self.exchange_id in WINDOWED and limit:
            return since + limit * _DAY_MS
        return None

    def _page(self, symbol: str, since: int, limit: int | None) -> list[Row]:
        """One ``fetch_ohlcv`` call, retried with backoff while the failure is transient."""
        import ccxt

        last: Exception | None = None
        for attempt in range(self._retries + 1):
            if attempt:
                self._sleep(backoff_delay(attempt))
            try:
                return _checked(self.name, self._client.fetch_ohlcv(symbol, "1d", since, limit))
            except ccxt.BadSymbol as exc:
                raise InvalidInputError(f"{self.exchange_id} does not list {symbol}") from exc
            except ccxt.NetworkError as exc:
                if not is_transient(exc):
                    raise DataSourceError(self.name, describe(exc)) from exc
                last = exc
            except (ccxt.BaseError, TypeError, ValueError, KeyError, IndexError) as exc:
                raise DataSourceError(self.name, describe(exc)) from exc
        raise DataSourceError(
            self.name, f"gave up after {self._retries + 1} attempts; last: {describe(last)}"
        )

    def _check_coverage(
        self, result: FetchResult, symbol: str, start: date | None, stop: date, today: date
    ) -> None:
        """Reject a silent empty answer; note history that begins later than asked."""
        if not result.candles:
            span = f"{start or EARLIEST}..{stop - DAY}"
            if stop == today:
                raise DataSourceError(
                    self.name,
                    f"returned no {symbol} candles for {span}, not even the last closed day "
                    "(exchange trouble, or a market id that does not match its answer)",
                )
            result.notes.append(f"{self.exchange_id} has no {symbol} candles for {span}")
        elif start is not None and result.candles[0].ts > utc_day(start):
            result.notes.append(
                f"{self.exchange_id} returned {symbol} history only from "
                f"{result.candles[0].ts.date()} (asked from {start})"
            )


def make_client(exchange_id: str, timeout: float) -> ccxt.Exchange:
    """A sync ccxt client with its own rate limiting on, or InvalidInputError."""
    import ccxt

    if exchange_id not in ccxt.exchanges:
        close = difflib.get_close_matches(exchange_id, ccxt.exchanges, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else " (e.g. kraken, bitstamp)"
        raise InvalidInputError(f"ccxt has no exchange `{exchange_id}`{hint}")
    client = getattr(ccxt, exchange_id)({"enableRateLimit": True, "timeout": int(timeout * 1000)})
    if not client.has.get("fetchOHLCV"):
        raise InvalidInputError(f"{exchange_id} offers no candle (OHLCV) data through ccxt")
    return client


def is_transient(exc: BaseException) -> bool:
    """Whether a ccxt NetworkError is worth retrying: no HTTP status, 408, 429 or 5xx.

    ccxt maps 400/403/404 to ExchangeNotAvailable like a 503, so the class alone can't tell.
    """
    status = http_status(exc)
    return status is None or status in (408, 429) or status >= 500


def http_status(exc: BaseException) -> int | None:
    """The HTTP status behind a ccxt error: the chained ``requests`` error, else its message."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        status = getattr(getattr(current, "response", None), "status_code", None)
        if isinstance(status, int):
            return status
        current = current.__cause__ or current.__context__
    match = _STATUS_IN_MESSAGE.match(str(exc))
    return int(match.group(1)) if match else None


def describe(exc: BaseException | None) -> str:
    """A short one-line account of a ccxt error, with its HTTP status when known."""
    if exc is None:
        return "no attempt made"
    status = http_status(exc)
    label = type(exc).__name__ + (f" (HTTP {status})" if status is not None else "")
    text = " ".join(str(exc).split())
    return f"{label}: {text[:_SNIPPET]}" if text else label


def _checked(source: str, page: Any) -> list[Row]:
    """The page if it is a list of ``[ts_ms, o, h, l, c, v]`` rows, else DataSourceError."""
    if not isinstance(page, list) or not all(_is_row(row) for row in page):
        raise DataSourceError(source, f"unexpected OHLCV page: {str(page)[:_SNIPPET]}")
    return page


def _is_row(row: Any) -> bool:
    """Whether ``row`` is ``[ts_ms, o, h, l, c, v]`` with a timestamp a date can hold."""
    if not (isinstance(row, list) and len(row) >= 6 and isinstance(row[0], int)):
        return False
    if not 0 <= row[0] < _LAST_MS:
        return False
    return all(value is None or isinstance(value, int | float) for value in row[1:6])


def _to_candles(rows: list[Row], first: date, stop: date, notes: list[str]) -> list[Candle]:
    """Candles in ``[first, stop)`` labelled at 00:00 UTC; rows with missing values skipped."""
    by_day: dict[date, Candle] = {}
    skipped = 0
    for row in rows:
        day = from_epoch_seconds(row[0] / 1000).date()
        if not first <= day < stop:
            continue
        if any(value is None for value in row[1:6]):
            skipped += 1
            continue
        by_day[day] = Candle(utc_day(day), *(float(value) for value in row[1:6]))
    if skipped:
        notes.append(f"skipped {skipped} row(s) with missing prices or volume")
    return [by_day[day] for day in sorted(by_day)]


def _ms(day: date) -> int:
    return int(utc_day(day).timestamp()) * 1000
