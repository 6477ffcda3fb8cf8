"""Interval-calibration, VaR-backtest and probability metrics against textbook and hand values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from btc_predictor.errors import InvalidInputError
from btc_predictor.forecasting import metrics


def test_chi2_1_tail_at_the_textbook_critical_values() -> None:
    assert metrics.chi2_1_sf(3.841458820694124) == pytest.approx(0.05, abs=1e-12)
    assert metrics.chi2_1_sf(6.634896601021214) == pytest.approx(0.01, abs=1e-12)
    assert metrics.chi2_1_sf(0.0) == 1.0


def test_kupiec_by_hand() -> None:
    # 250 days, 8 violations of a 99% VaR
    n, x, p = 250, 8, 0.01
    by_hand = -2 * ((n - x) * math.log(1 - p) + x * math.log(p)) + 2 * (
        (n - x) * math.log(1 - x / n) + x * math.log(x / n)
    )
    result = metrics.kupiec_pof(np.arange(n) < x, p)
    assert result is not None
    assert result.statistic == pytest.approx(by_hand)
    assert result.statistic == pytest.approx(7.7336, abs=1e-3)
    assert result.pvalue == pytest.approx(math.erfc(math.sqrt(by_hand / 2)))


@pytest.mark.parametrize(
    ("p", "days", "first_kept", "last_kept"),
    [
        # Kupiec (1995) non-rejection regions at 5% as tabled in Jorion, Value at Risk:
        # p=0.01: T=510 1<N<11, T=1000 4<N<17; p=0.05: T=255 6<N<21, 510 16<N<36, 1000 37<N<65
        (0.01, 510, 2, 10),
        (0.01, 1000, 5, 16),
        (0.05, 255, 7, 20),
        (0.05, 510, 17, 35),
        (0.05, 1000, 38, 64),
        # T=255, p=0.01 is tabled as N<7; N=0 gives LR = −2·255·ln 0.99 = 5.13 > 3.84
        (0.01, 255, 1, 6),
    ],
)
def test_kupiec_reproduces_the_textbook_acceptance_regions(
    p: float, days: int, first_kept: int, last_kept: int
) -> None:
    kept = []
    for x in range(days // 5):
        result = metrics.kupiec_pof(np.arange(days) < x, p)
        assert result is not None
        if result.pvalue > 0.05:
            kept.append(x)
    assert (kept[0], kept[-1]) == (first_kept, last_kept)
    assert kept == list(range(first_kept, last_kept + 1))


def test_kupiec_rejects_bad_input() -> None:
    with pytest.raises(InvalidInputError):
        metrics.kupiec_pof([True], 0.0)
    assert metrics.kupiec_pof([], 0.05) is None


def test_christoffersen_is_zero_when_transitions_do_not_depend_on_yesterday() -> None:
    # n00=4, n01=2, n10=2, n11=1: π01 = π11 = π = 1/3
    result = metrics.christoffersen_independence([0, 0, 1, 1, 0, 0, 0, 1, 0, 0])
    assert result is not None
    assert result.statistic == pytest.approx(0.0, abs=1e-12)
    assert result.pvalue == pytest.approx(1.0)


def test_christoffersen_clustered_violations_by_hand() -> None:
    v = [0] * 8 + [1, 1, 1] + [0] * 8
    # transitions: n00 = 7 + 7 = 14, n01 = 1, n11 = 2, n10 = 1
    markov = 14 * math.log(14 / 15) + math.log(1 / 15) + math.log(1 / 3) + 2 * math.log(2 / 3)
    restricted = 15 * math.log(5 / 6) + 3 * math.log(1 / 6)
    result = metrics.christoffersen_independence(v)
    assert result is not None
    assert result.statistic == pytest.approx(2 * (markov - restricted))
    assert result.pvalue < 0.05  # clustering is detected
    assert metrics.christoffersen_independence([0, 0, 0]) is None  # no violation: undefined


def test_brier_and_skill_by_hand() -> None:
    p, outcome = [0.8, 0.3, 0.5], [1, 0, 1]
    assert metrics.brier(p, outcome) == pytest.approx((0.04 + 0.09 + 0.25) / 3)
    assert metrics.brier_skill(p, outcome) == pytest.approx(1 - (0.38 / 3) / 0.25)
    assert metrics.brier_skill([0.5] * 4, [1, 0, 1, 1]) == pytest.approx(0.0)
    assert metrics.brier([], []) is None


def test_calibration_error_by_hand() -> None:
    # bin 1: p 0.10, 0.15 → mean 0.125, observed 0.5; bin 9: p 0.90, 0.95 → 0.925 vs 1.0
    error = metrics.calibration_error([0.1, 0.15, 0.9, 0.95], [0, 1, 1, 1])
    assert error == pytest.approx((2 * 0.375 + 2 * 0.075) / 4)
    assert metrics.calibration_error([1.0, 0.0], [1, 0]) == pytest.approx(0.0)


def test_worst_rolling_coverage_by_hand() -> None:
    inside = np.array([1, 1, 0, 1, 0, 0, 1], dtype=bool)
    actual = np.where(inside, 1.0, 5.0)
    lower, upper = np.zeros(7), np.full(7, 2.0)
    assert metrics.worst_rolling_coverage(actual, lower, upper, window=3) == pytest.approx(1 / 3)
    assert metrics.worst_rolling_coverage(actual, lower, upper, window=8) is None


def test_coverage_by_vol_tercile_by_hand() -> None:
    vol = np.array([1.0, 2, 3, 4, 5, 6])
    actual = np.array([1.0, 1, 1, 5, 5, 1])  # inside, inside, inside, out, out, inside
    lower, upper = np.zeros(6), np.full(6, 2.0)
    assert metrics.coverage_by_vol_tercile(actual, lower, upper, vol) == {
        "low": 1.0,
        "mid": 0.5,
        "high": 0.5,
    }
