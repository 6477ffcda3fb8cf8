"""Yahoo Finance daily candles through its chart API (our own small client, not yfinance)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

from curl_cffi.requests import Response, Session
from curl_cffi.requests.exceptions import ConnectionError, HTTPError, RequestException, Timeout

from btc_predictor.errors import DataSourceError
from btc_predictor.sources.base import (
    Asset,
    Candle,
    FetchResult,
    backoff_delay,
    from_epoch_seconds,
    today_utc,
    utc_day,
    utc_now,
)

DEFAULT_BASE_URL = "https://query1.finance.yahoo.com"
EARLIEST = date(2010, 1, 1)
_FIELDS = ("open", "high", "low", "close", "volume")
_SNIPPET = 200
# Transport failures worth another try. HTTPError here is never a status (we don't call
# raise_for_status): it is an HTTP/2 stream reset or a truncated body.
_TRANSIENT_ERRORS = (Timeout, ConnectionError, HTTPError)


class YahooSource:
    """Closed daily candles from Yahoo's ``/v8/finance/chart`` endpoint."""

    name = "yahoo"

    def __init__(
        self,
        *,
        session: Session[Response] | None = None,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float,
        retries: int,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._retries = max(retries, 0)
        self._sleep = sleep
        self._clock = clock

    def fetch(self, asset: Asset, start: date | None, end: date) -> FetchResult:
        """Closed daily candles for ``asset`` in ``[start, end)``, today's excluded."""
        stop = min(end, today_utc(self._clock()))
        first = start or EARLIEST
        if first >= stop:
            return FetchResult(self.name, [])
        payload = self._download(asset.symbol, first, stop)
        return _to_result(self.name, payload, first, stop)

    def _download(self, symbol: str, first: date, stop: date) -> Any:
        """The chart JSON for ``[first, stop)``; a browser-like session unless one was injected."""
        url = f"{self._base_url}/v8/finance/chart/{quote(symbol)}"
        params = {
            "period1": str(_epoch(first)),
            "period2": str(_epoch(stop)),
            "interval": "1d",
            "events": "div,splits",
        }
        if self._session is not None:
            return self._get_json(self._session, url, params)
        # Yahoo rejects clients that do not fingerprint like a browser (since May 2025).
        with Session(impersonate="chrome") as session:
            return self._get_json(session, url, params)

    def _get_json(self, session: Session[Response], url: str, params: Mapping[str, str]) -> Any:
        """GET with exponential backoff on 429, 5xx, timeouts and connection errors."""
        failure = "no attempt"
        for attempt in range(self._retries + 1):
            if attempt:
                self._sleep(backoff_delay(attempt))
            try:
                response = session.get(url, params=dict(params), timeout=self._timeout)
            except _TRANSIENT_ERRORS as exc:
                failure = f"{type(exc).__name__}: {exc}"
                continue
            except RequestException as exc:
                raise DataSourceError(self.name, f"request failed: {exc}") from exc
            if not _is_transient(response.status_code):
                return self._payload(response)
            failure = f"HTTP {response.status_code}{_error_suffix(response.text)}"
        raise DataSourceError(
            self.name, f"gave up after {self._retries + 1} attempts; last: {failure}"
        )

    def _payload(self, response: Response) -> Any:
        """The decoded JSON of a final answer, or DataSourceError with Yahoo's own reason."""
        status, text = response.status_code, response.text
        if status != 200:
            raise DataSourceError(self.name, f"HTTP {status}{_error_suffix(text)}")
        try:
            payload = json.loads(text)
        except ValueError as exc:
            raise DataSourceError(self.name, f"answer is not JSON: {text[:_SNIPPET]!r}") from exc
        description = _chart_error(payload)
        if description is not None:
            raise DataSourceError(self.name, f"Yahoo error: {description}")
        return payload


def _is_transient(status: int) -> bool:
    return status == 429 or status >= 500


def _epoch(day: date) -> int:
    return int(utc_day(day).timestamp())


def _chart_error(payload: Any) -> str | None:
    """Yahoo's ``chart.error`` description (or code), if the payload carries one."""
    chart = payload.get("chart") if isinstance(payload, dict) else None
    error = chart.get("error") if isinstance(chart, dict) else None
    if not error:
        return None
    if isinstance(error, dict):
        return str(error.get("description") or error.get("code") or error)
    return str(error)


def _error_suffix(text: str) -> str:
    """``: <Yahoo's description>`` from an error body, else a short snippet of it."""
    try:
        description = _chart_error(json.loads(text))
    except ValueError:
        description = None
    detail = description or text.strip()[:_SNIPPET]
    return f": {detail}" if detail else ""


def _columns(payload: Any) -> tuple[list[Any], dict[str, list[Any]]]:
    """Timestamps and the OHLCV columns of ``chart.result[0]`` (empty for an empty range)."""
    try:
        result = payload["chart"]["result"][0]
        stamps = result.get("timestamp") or []
        if not stamps:
            return [], {}
        quote_ = result["indicators"]["quote"][0]
        columns = {key: list(quote_[key]) for key in _FIELDS}
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise DataSourceError("yahoo", f"unexpected chart JSON shape ({exc!r})") from exc
    if any(len(col) != len(stamps) for col in columns.values()):
        raise DataSourceError("yahoo", "chart JSON columns differ in length from its timestamps")
    return list(stamps), columns


def _to_result(name: str, payload: Any, first: date, stop: date) -> FetchResult:
    """Candles in ``[first, stop)`` labelled at 00:00 UTC, null rows skipped and counted."""
    stamps, columns = _columns(payload)
    by_day: dict[date, Candle] = {}
    nulls = duplicates = 0
    for i, stamp in enumerate(stamps):
        day = _day_of(stamp)
        if not first <= day < stop:
            continue
        values = [columns[key][i] for key in _FIELDS]
        if any(v is None for v in values):
            nulls += 1
            continue
        if day in by_day:
            duplicates += 1
        by_day[day] = Candle(utc_day(day), *_floats(values))
    result = FetchResult(name, [by_day[d] for d in sorted(by_day)])
    if nulls:
        result.notes.append(f"skipped {nulls} Yahoo row(s) with null prices or volume")
    if duplicates:
        result.notes.append(f"{duplicates} day(s) appeared twice in Yahoo's answer; kept the last")
    return result


def _day_of(stamp: Any) -> date:
    """The UTC day of a Unix timestamp (Yahoo's live row is stamped with its last trade time)."""
    try:
        return from_epoch_seconds(float(stamp)).date()
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        raise DataSourceError("yahoo", f"bad timestamp in chart JSON: {stamp!r}") from exc


def _floats(values: list[Any]) -> list[float]:
    """Chart values as floats; validation rejects the non-finite ones with their day."""
    try:
        return [_float(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise DataSourceError("yahoo", f"non-numeric value in chart JSON: {values!r}") from exc


def _float(value: Any) -> float:
    """A JSON number as a float: an integer too long for one is ±inf, like the text ``1e400``."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf
