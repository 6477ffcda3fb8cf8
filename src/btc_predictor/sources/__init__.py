"""Market-data sources behind one protocol (``base.CandleSource``), built by name."""

from __future__ import annotations

from pathlib import Path

from btc_predictor.config import Settings
from btc_predictor.errors import InvalidInputError
from btc_predictor.sources.base import CandleSource

KINDS = ("yahoo", "csv", "exchange:<id>")


def check_source_spec(spec: str) -> str:
    """Normalise a source name (``yahoo``, ``csv``, ``exchange:kraken``) or reject it."""
    name = spec.strip().lower()
    if name in ("yahoo", "csv") or (name.startswith("exchange:") and len(name) > len("exchange:")):
        return name
    raise InvalidInputError(f"unknown source `{spec}` (use one of: {', '.join(KINDS)})")


def make_source(spec: str, settings: Settings, *, path: Path | None = None) -> CandleSource:
    """Build the source named by ``spec``; adapters are imported only when used."""
    name = check_source_spec(spec)
    timeout = settings.source_timeout.total_seconds()
    if name == "csv":
        if path is None:
            raise InvalidInputError("--source csv needs --path FILE")
        from btc_predictor.sources.csv import CsvSource

        return CsvSource(path)
    if name == "yahoo":
        from btc_predictor.sources.yahoo import YahooSource

        return YahooSource(
            timeout=timeout, retries=settings.source_retries, base_url=settings.yahoo_url
        )
    from btc_predictor.sources.exchange import ExchangeSource

    return ExchangeSource(name.split(":", 1)[1], timeout=timeout, retries=settings.source_retries)
