"""Test helpers: synthetic candles, a recording in-memory source, and scored ledger rows."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from btc_predictor.errors import DataSourceError
from btc_predictor.sources.base import Asset, Candle, FetchResult, utc_day
from btc_predictor.storage.db import write_session
from btc_predictor.storage.tables import PredictionRow
from tests.conftest import NOW


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


TODAY = NOW.date()


def scored(
    day: date,
    *,
    error: float,
    naive_error: float,
    inside: bool,
    version: int,
    horizon: int = 1,
    model: str = "lstm",
) -> PredictionRow:
    """A ledger entry for ``day`` already scored against an actual close of 100."""
    made = datetime.combine(day - timedelta(days=horizon), datetime.min.time(), NOW.tzinfo)
    return PredictionRow(
        asset="BTC-USD",
        model=model,
        model_version=version,
        as_of=made,
        horizon=horizon,
        target_date=day,
        forecast=100 + error,
        lower=90.0,
        upper=110.0,
        level=90,
        naive=100 + naive_error,
        created_at=made,
        actual=100.0,
        abs_error=error,
        naive_abs_error=naive_error,
        inside=inside,
        scored_at=made + timedelta(days=horizon),
    )


def fill_ledger(
    engine: Engine,
    days: int,
    *,
    error: float,
    naive_error: float = 10.0,
    miss_every: int = 10,
    end: date = TODAY,
    version: int = 1,
) -> None:
    """``days`` consecutive scored next-day forecasts ending at ``end`` (by one version);
    every ``miss_every``-th actual falls outside the interval (10: 90% coverage)."""
    with write_session(engine) as session:
        session.add_all(
            scored(
                end - timedelta(days=k),
                error=error,
                naive_error=naive_error,
                inside=k % miss_every != 0,
                version=version,
            )
            for k in range(days)
        )


def strict_json(text: str | bytes) -> Any:
    """Parse JSON refusing NaN, Infinity and numbers too large for a float (``1e400``)."""

    def refuse(token: str) -> Any:
        raise ValueError(f"`{token}` is not JSON")

    def finite(token: str) -> float:
        value = float(token)
        return value if math.isfinite(value) else refuse(token)

    return json.loads(text, parse_constant=refuse, parse_float=finite)
