"""Candle validation and gap detection: pure functions run on every ingest."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from itertools import pairwise

from btc_predictor.sources.base import DAY, Candle, today_utc, utc_day

MAX_EXAMPLES = 5


@dataclass(slots=True)
class Validated:
    """Candles that passed, and a description of each rejected one."""

    valid: list[Candle]
    rejected: list[str] = field(default_factory=list)


def validate_candles(candles: Iterable[Candle], now: datetime) -> Validated:
    """Keep sound closed daily candles (ascending, first of each day); describe the rest."""
    today = utc_day(today_utc(now))
    result = Validated(valid=[])
    seen: set[datetime] = set()
    for candle in sorted(candles, key=lambda c: c.ts):
        problem = candle_problem(candle, today) or ("duplicate day" if candle.ts in seen else None)
        if problem:
            result.rejected.append(f"{candle.ts.date().isoformat()}: {problem}")
            continue
        seen.add(candle.ts)
        result.valid.append(candle)
    return result


def candle_problem(candle: Candle, today: datetime) -> str | None:
    """Why a candle cannot be stored, or None when it is sound."""
    prices = {"open": candle.open, "high": candle.high, "low": candle.low, "close": candle.close}
    # NaN and ±inf alike: every source parses "inf", "Infinity" or "1e400" to a float.
    for name, value in [*prices.items(), ("volume", candle.volume)]:
        if not math.isfinite(value):
            return f"{name} {value} is not a finite number"
    for name, value in prices.items():
        if value <= 0:
            return f"{name} {value} is not a positive price"
    if candle.volume < 0:
        return f"volume {candle.volume} is negative"
    if candle.high < max(candle.open, candle.close):
        return f"high {candle.high} is below open/close"
    if candle.low > min(candle.open, candle.close):
        return f"low {candle.low} is above open/close"
    if candle.ts != utc_day(candle.ts.date()):
        return f"timestamp {candle.ts.isoformat()} is not 00:00 UTC"
    if candle.ts > today:
        return "timestamp is in the future"
    if candle.ts == today:
        return "day has not closed yet"
    return None


def find_gaps(days: Sequence[datetime]) -> list[tuple[date, date]]:
    """Missing days between consecutive stored days, as inclusive (first, last) ranges."""
    gaps: list[tuple[date, date]] = []
    for before, after in pairwise(days):
        if after - before > DAY:
            gaps.append(((before + DAY).date(), (after - DAY).date()))
    return gaps
