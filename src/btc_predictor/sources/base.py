"""The market-data source protocol and the candle type every source returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from btc_predictor.config import normalise_symbol
from btc_predictor.errors import InvalidInputError

DAY = timedelta(days=1)
INTERVAL = "1d"
# Retries of transient source failures wait 1, 2, 4, … seconds, never more than 30.
BACKOFF_BASE = 1.0
BACKOFF_MAX = 30.0


@dataclass(frozen=True, slots=True)
class Asset:
    """A ``BASE-QUOTE`` pair such as ``BTC-USD``."""

    base: str
    quote: str

    @property
    def symbol(self) -> str:
        """The canonical symbol, ``BASE-QUOTE``."""
        return f"{self.base}-{self.quote}"

    @property
    def ccxt_symbol(self) -> str:
        """The unified ccxt symbol, ``BASE/QUOTE``."""
        return f"{self.base}/{self.quote}"

    def __str__(self) -> str:
        return self.symbol


def parse_asset(text: str) -> Asset:
    """Parse ``BTC-USD`` (any case, ``/`` accepted) or raise InvalidInputError."""
    try:
        base, quote = normalise_symbol(text).split("-")
    except ValueError as exc:
        raise InvalidInputError(f"asset {exc}") from None
    return Asset(base, quote)


@dataclass(frozen=True, slots=True)
class Candle:
    """One daily candle labelled by its open time (00:00 UTC)."""

    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(slots=True)
class FetchResult:
    """What a source returned: candles ascending by ``ts``, plus what it had to fix."""

    source: str
    candles: list[Candle]
    fixed_volume: int = 0
    notes: list[str] = field(default_factory=list)


class CandleSource(Protocol):
    """A provider of closed daily UTC candles.

    ``fetch`` returns candles with ``start <= ts < end`` (``start=None``: all history it has),
    ascending, never the still-forming current day as a closed candle: a file's rows dated
    today or later come back as they are, for validation to reject and report. Transport
    failures and unusable payloads raise :class:`~btc_predictor.errors.DataSourceError`,
    never an empty result in disguise.
    """

    name: str

    def fetch(self, asset: Asset, start: date | None, end: date) -> FetchResult:
        """Closed daily candles for ``asset`` in ``[start, end)``."""
        ...


def utc_day(value: date) -> datetime:
    """Midnight UTC at the start of ``value``."""
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def today_utc(now: datetime) -> date:
    """The current UTC calendar day (the still-forming candle's day)."""
    return now.astimezone(UTC).date()


def from_epoch_seconds(seconds: float) -> datetime:
    """An aware UTC datetime from a Unix timestamp; ValueError when no date has it."""
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:  # which one depends on the platform
        raise ValueError(f"timestamp {seconds} is out of the range of dates") from exc


def utc_now() -> datetime:
    """The current aware UTC time: the production clock (sources, jobs, API, CLI)."""
    return datetime.now(UTC)


def data_age(last_candle: datetime, now: datetime) -> float:
    """Seconds since the newest candle closed (its open time + 1 day), never negative."""
    return max((now - (last_candle + DAY)).total_seconds(), 0.0)


def backoff_delay(attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (1, 2, 4, … capped)."""
    return float(min(BACKOFF_BASE * 2 ** (attempt - 1), BACKOFF_MAX))
