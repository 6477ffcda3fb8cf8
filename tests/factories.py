"""Test helpers: synthetic candles and a recording in-memory source."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from btc_predictor.errors import DataSourceError
from btc_predictor.sources.base import Asset, Candle, FetchResult, utc_day


def make_candles(
    first: date, count: int, *, price: float = 100.0, step: float = 1.0
) -> list[Candle]:
    """``count`` sound daily candles from ``first`` with closes rising by ``step``."""
    candles = []
    for i in range(count):
        close = price + i * step
        candles.append(
            Candle(utc_day(first + timedelta(days=i)), close, close + 2, close - 2, close, 10.0)
        )
    return candles


@dataclass
class FakeSource:
    """A source serving fixed candles (or failing), recording each request's range."""

    name: str
    candles: list[Candle] = field(default_factory=list)
    fail: str | None = None
    calls: list[tuple[date | None, date]] = field(default_factory=list)

    def fetch(self, asset: Asset, start: date | None, end: date) -> FetchResult:
        """Candles in [start, end) or the configured failure."""
        self.calls.append((start, end))
        if self.fail:
            raise DataSourceError(self.name, self.fail)
        low, high = (utc_day(start) if start else None), utc_day(end)
        kept = [c for c in self.candles if (low is None or c.ts >= low) and c.ts < high]
        return FetchResult(self.name, kept)
