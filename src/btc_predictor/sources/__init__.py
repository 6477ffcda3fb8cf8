"""Market-data sources behind one protocol (``base.CandleSource``), built by name."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from btc_predictor.config import Settings
from btc_predictor.errors import InvalidInputError
from btc_predictor.sources.base import CandleSource, utc_now

KINDS = ("yahoo", "csv", "exchange:<id>")


def check_source_spec(spec: str) -> str:
    """Normalise a source name (``yahoo``, ``csv``, ``exchange:kraken``) or reject it."""
    name = spec.strip().lower()
    if name in ("yahoo", "csv") or (name.startswith("exchange:") and len(name) > len("exchange:")):
        return name
    raise InvalidInputError(f"unknown source `{spec}` (use one of: {', '.join(KINDS)})")


def make_source(
    spec: str,
    settings: Settings,
    *,
    path: Path | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> CandleSource:
    """Build the source named by ``spec``; adapters are imported only when used.

    ``clock`` is the source's "now" (which day is still forming): the caller's, so that
    the source and the validation after it agree on what is in the future.
    """
    name = check_source_spec(spec)
    timeout = settings.source_timeout.total_seconds()
    if name == "csv":
        if path is None:
            raise InvalidInputError("--source csv needs --path FILE")
        from btc_predictor.sources.csv import CsvSource

        return CsvSource(path, clock=clock)
    if name == "yahoo":
        from btc_predictor.sources.yahoo import YahooSource

        return YahooSource(
            timeout=timeout,
            retries=settings.source_retries,
            base_url=settings.yahoo_url,
            clock=clock,
        )
    from btc_predictor.sources.exchange import ExchangeSource

    exchange = name.split(":", 1)[1]
    return ExchangeSource(exchange, timeout=timeout, retries=settings.source_retries, clock=clock)
