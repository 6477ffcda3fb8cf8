"""Validation rules and gap detection."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from btc_predictor.sources.base import Candle, utc_day
from btc_predictor.sources.validate import find_gaps, validate_candles
from tests.factories import make_candles

NOW = datetime(2024, 1, 10, 12, tzinfo=UTC)
GOOD = make_candles(date(2024, 1, 1), 1)[0]


@pytest.mark.parametrize(
    ("candle", "reason"),
    [
        (replace(GOOD, close=math.nan), "close nan is not a finite number"),
        (replace(GOOD, high=math.inf), "high inf is not a finite number"),
        (replace(GOOD, low=-math.inf), "low -inf is not a finite number"),
        (replace(GOOD, open=float("1e400")), "open inf is not a finite number"),
        (replace(GOOD, close=float("9" * 400)), "close inf is not a finite number"),
        (replace(GOOD, volume=math.inf), "volume inf is not a finite number"),
        (replace(GOOD, volume=math.nan), "volume nan is not a finite number"),
        (replace(GOOD, open=0.0), "open 0.0 is not a positive price"),
        (replace(GOOD, low=-1.0), "low -1.0 is not a positive price"),
        (replace(GOOD, high=GOOD.close - 1), "is below open/close"),
        (replace(GOOD, low=GOOD.close + 1, high=GOOD.close + 5), "is above open/close"),
        (replace(GOOD, volume=-5.0), "volume -5.0 is negative"),
        (replace(GOOD, ts=utc_day(date(2024, 1, 11))), "in the future"),
        (replace(GOOD, ts=utc_day(date(2024, 1, 10))), "has not closed yet"),
        (replace(GOOD, ts=datetime(2024, 1, 1, 5, tzinfo=UTC)), "not 00:00 UTC"),
    ],
)
def test_bad_candles_are_rejected_with_a_reason(candle: Candle, reason: str) -> None:
    result = validate_candles([candle], NOW)
    assert result.valid == []
    assert len(result.rejected) == 1 and reason in result.rejected[0]
    assert result.rejected[0].startswith(f"{candle.ts.date().isoformat()}: ")  # names the day


def test_zero_volume_is_valid_and_output_is_ascending() -> None:
    candles = make_candles(date(2024, 1, 1), 5)
    candles[2] = replace(candles[2], volume=0.0)
    result = validate_candles(reversed(candles), NOW)
    assert result.valid == candles and result.rejected == []


def test_duplicate_day_keeps_the_first_and_rejects_the_rest() -> None:
    first = make_candles(date(2024, 1, 1), 2)
    dup = replace(first[1], close=first[1].close + 0.5)
    result = validate_candles([*first, dup], NOW)
    assert result.valid == first
    assert result.rejected == ["2024-01-02: duplicate day"]


def test_gaps_are_inclusive_missing_ranges() -> None:
    days = [utc_day(date(2024, 1, d)) for d in (1, 2, 5, 6, 8)]
    assert find_gaps(days) == [
        (date(2024, 1, 3), date(2024, 1, 4)),
        (date(2024, 1, 7), date(2024, 1, 7)),
    ]
    assert find_gaps(days[:2]) == [] and find_gaps([]) == []
