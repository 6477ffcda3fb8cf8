"""The OHLC value type: validation, range_pct and range variances."""

from __future__ import annotations

import numpy as np
import pytest

from btc_predictor.errors import InvalidInputError
from btc_predictor.forecasting import metrics
from btc_predictor.forecasting.risk import OHLC


def candles(**changes: list[float]) -> OHLC:
    """Three valid days, with columns replaced by ``changes``."""
    columns = {
        "open_": [100.0, 100.0, 104.0],
        "high": [102.0, 110.0, 104.0],
        "low": [98.0, 100.0, 104.0],
        "close": [100.0, 104.0, 104.0],
    }
    columns.update(changes)
    return OHLC.from_arrays(**columns)


def test_high_below_low_is_refused_naming_the_day() -> None:
    with pytest.raises(InvalidInputError, match=r"day #1: high 99.0 is below low 100.0"):
        candles(high=[102.0, 99.0, 104.0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, 0.0, -1.0])
def test_non_finite_or_non_positive_prices_are_refused(bad: float) -> None:
    with pytest.raises(InvalidInputError, match="close prices must be finite and positive"):
        candles(close=[100.0, bad, 104.0])


def test_columns_must_match() -> None:
    with pytest.raises(InvalidInputError, match="equal lengths"):
        candles(close=[100.0, 104.0])
    with pytest.raises(InvalidInputError, match="consecutive"):
        OHLC.from_arrays([1, 1], [1, 1], [1, 1], [1, 1], day=[10, 12])


def test_zero_range_days_are_valid_and_floored() -> None:
    data = candles()  # day 2: open = high = low = close
    assert data.range_pct()[2] == 0.0
    assert data.variance("parkinson")[2] == metrics.VARIANCE_FLOOR
    assert data.variance("garman-klass")[2] == metrics.VARIANCE_FLOOR
    assert np.all(np.isfinite(np.log(data.variance())))


def test_range_pct_uses_the_previous_close() -> None:
    # day 1: (110 − 100) / close_0 100 · 100 = 10; day 0 has no previous close: its open
    np.testing.assert_allclose(candles().range_pct(), [4.0, 10.0, 0.0])


def test_unknown_estimator_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="estimator must be one of"):
        candles().variance("yang-zhang")


def test_head_and_weekday() -> None:
    data = OHLC.from_arrays([1, 1, 1], [2, 2, 2], [1, 1, 1], [1, 1, 1], day=[0, 1, 2])
    assert len(data.head(2)) == 2 and data.head(2).day is not None
    assert data.weekday().tolist() == [3, 4, 5]  # 1970-01-01 was a Thursday
    with pytest.raises(InvalidInputError, match="no dates"):
        candles().weekday()
