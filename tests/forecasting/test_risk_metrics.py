"""Range and volatility metrics against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from btc_predictor.errors import InvalidInputError
from btc_predictor.forecasting import metrics


def test_parkinson_by_hand() -> None:
    # ln(110/100)² / (4 ln 2) = 0.0953102² / 2.7725887 = 0.00327638
    got = metrics.parkinson([110.0, 100.0], [100.0, 100.0])
    assert got[0] == pytest.approx(math.log(1.1) ** 2 / (4 * math.log(2)), rel=1e-12)
    assert got[0] == pytest.approx(0.0032764, rel=1e-4)
    assert got[1] == metrics.VARIANCE_FLOOR  # a zero-range day is floored, never 0


def test_garman_klass_by_hand() -> None:
    # ½·ln(110/100)² − (2 ln 2 − 1)·ln(105/100)² = 0.0045420 − 0.3862944·0.0023805 = 0.0036224
    got = metrics.garman_klass([100.0], [110.0], [100.0], [105.0])
    assert got[0] == pytest.approx(0.0036224, rel=1e-4)
    # a day whose close-to-open term outweighs the range term is floored, not negative
    assert metrics.garman_klass([100.0], [100.1], [100.0], [100.1])[0] >= metrics.VARIANCE_FLOOR


def test_range_pct_by_hand() -> None:
    assert metrics.range_pct([110.0, 52.0], [100.0, 50.0], [100.0, 40.0]).tolist() == [10.0, 5.0]


def test_qlike_by_hand() -> None:
    # x/f = 2: 2 − ln 2 − 1 = 0.3068528; x/f = 1: 0
    assert metrics.qlike([2.0, 1.0], [1.0, 1.0]) == pytest.approx((1 - math.log(2)) / 2)
    assert metrics.qlike([], []) is None
    # under-forecasting costs more than over-forecasting by the same factor
    assert metrics.qlike([2.0], [1.0]) > metrics.qlike([1.0], [2.0])  # type: ignore[operator]
    with pytest.raises(InvalidInputError, match="positive"):
        metrics.qlike([1.0], [0.0])


def test_winkler_by_hand() -> None:
    # level 90 → α = 0.1, penalty 2/α = 20 per unit outside
    # inside: width 2; below by 0.5: 2 + 20·0.5 = 12; above by 1: 2 + 20·1 = 22 → mean 12
    got = metrics.winkler([2.0, 0.5, 4.0], [1.0, 1.0, 1.0], [3.0, 3.0, 3.0], 90)
    assert got == pytest.approx(12.0)
    assert metrics.winkler([], [], [], 90) is None
    with pytest.raises(InvalidInputError, match="level"):
        metrics.winkler([1.0], [0.0], [2.0], 100)


def test_range_mase_by_hand() -> None:
    # model errors 1, 1 (MAE 1); naive errors 2, 2 (MAE 2) → 0.5
    assert metrics.range_mase([3.0, 5.0], [4.0, 4.0], [1.0, 7.0]) == pytest.approx(0.5)
    assert metrics.range_mase([3.0], [4.0], [3.0]) is None  # naive is perfect: undefined


def test_qlike_losses_per_day() -> None:
    np.testing.assert_allclose(
        metrics.qlike_losses([2.0, 1.0], [1.0, 1.0]), [1 - math.log(2), 0.0], atol=1e-15
    )
