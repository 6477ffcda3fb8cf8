"""Metric definitions against hand-computed values and independent reference computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from btc_predictor.errors import InvalidInputError
from btc_predictor.forecasting import metrics


def test_point_errors_by_hand() -> None:
    actual, forecast = [10.0, 12.0, 11.0], [11.0, 11.0, 11.0]
    assert metrics.mae(actual, forecast) == pytest.approx(2 / 3)
    assert metrics.rmse(actual, forecast) == pytest.approx(math.sqrt(2 / 3))
    assert metrics.mape(actual, forecast) == pytest.approx(100 * (1 / 10 + 1 / 12) / 3)
    # SS_res = 2, SS_tot = 1 + 1 + 0 = 2
    assert metrics.r2(actual, forecast) == pytest.approx(0.0)


def test_mase_is_model_mae_over_naive_mae_on_the_same_days() -> None:
    actual, forecast, naive = [10.0, 12.0, 11.0], [11.0, 11.0, 11.0], [9.0, 10.0, 12.0]
    # MAE(model) = 2/3, MAE(naive) = (1 + 2 + 1)/3 = 4/3
    assert metrics.mase(actual, forecast, naive) == pytest.approx(0.5)
    assert metrics.mase(actual, naive, naive) == pytest.approx(1.0)


def test_directional_accuracy_excludes_zero_moves() -> None:
    origin = [10.0, 10.0, 10.0, 10.0]
    actual = [11.0, 9.0, 10.0, 12.0]  # day 3 has no move: excluded
    forecast = [10.5, 10.5, 11.0, 9.0]  # right, wrong, (excluded), wrong
    assert metrics.directional_accuracy(origin, actual, forecast) == pytest.approx(1 / 3)


def test_directional_accuracy_no_call_is_a_miss_and_naive_is_undefined() -> None:
    origin, actual = [10.0, 10.0], [11.0, 9.0]
    assert metrics.directional_accuracy(origin, actual, [10.0, 9.5]) == pytest.approx(0.5)
    assert metrics.directional_accuracy(origin, actual, origin) is None
    assert metrics.directional_accuracy([10.0], [10.0], [11.0]) is None  # only a zero move


def test_coverage_and_widths() -> None:
    actual = [1.0, 2.0, 3.0, 4.0]
    lower, upper = [0.0, 2.5, 3.0, 0.0], [1.0, 3.0, 3.0, 3.0]  # bounds are inclusive
    assert metrics.coverage(actual, lower, upper) == pytest.approx(0.5)
    assert metrics.interval_width(lower, upper) == pytest.approx((1 + 0.5 + 0 + 3) / 4)
    assert metrics.relative_interval_width([90.0], [110.0], [100.0]) == pytest.approx(0.2)


def test_undefined_values_are_none_not_nan() -> None:
    empty: list[float] = []
    for fn in (metrics.rmse, metrics.mae, metrics.mape, metrics.r2):
        assert fn(empty, empty) is None
    assert metrics.r2([5.0, 5.0], [4.0, 6.0]) is None  # constant actuals
    assert metrics.mase([1.0, 2.0], [1.5, 2.5], [1.0, 2.0]) is None  # naive is perfect
    assert metrics.mape([0.0, 1.0], [1.0, 1.0]) is None
    assert metrics.coverage(empty, empty, empty) is None
    report = metrics.point_metrics(empty, empty, empty, empty)
    assert json.loads(json.dumps(report)) == dict.fromkeys(report)


def test_mismatched_lengths_raise() -> None:
    with pytest.raises(InvalidInputError, match="equal lengths"):
        metrics.mae([1.0, 2.0], [1.0])


# --- Student t ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("t", "df", "expected"),
    [
        (2.228138852, 10, 0.975),  # textbook critical values
        (2.570581836, 5, 0.975),
        (2.749995652, 30, 0.995),
        (1.812461123, 10, 0.95),
        (1.0, 1, 0.5 + math.atan(1.0) / math.pi),  # Cauchy, closed form
        (-0.7, 1, 0.5 + math.atan(-0.7) / math.pi),
        (0.5, 2, 0.5 + 0.5 / (2 * math.sqrt(2 + 0.25))),  # df=2 closed form
        (0.0, 7, 0.5),
    ],
)
def test_student_t_cdf(t: float, df: int, expected: float) -> None:
    assert metrics.student_t_cdf(t, df) == pytest.approx(expected, abs=1e-9)


def _t4_sf(t: float) -> float:
    """Upper tail of Student t with 4 df, closed form (independent of the incomplete beta)."""
    u = t / math.sqrt(4 + t * t)
    return 0.5 - 0.5 * u * (1.5 - 0.5 * u * u)


# --- Diebold–Mariano ----------------------------------------------------------------------

ERRORS_A = [2.0, -3.0, 1.0, 4.0, -2.0]
ERRORS_B = [1.0, 1.0, -1.0, 2.0, 1.0]
# d = |a| − |b| = [1, 2, 0, 2, 1]; mean 1.2; centred [−.2, .8, −1.2, .8, −.2]
# γ0 = 2.8/5 = 0.56; γ1 = (−.16 − .96 − .96 − .16)/5 = −0.448


def test_dm_h1_by_hand() -> None:
    result = metrics.diebold_mariano(ERRORS_A, ERRORS_B, h=1)
    assert result is not None
    raw = 1.2 / math.sqrt(0.56 / 5)
    hln = math.sqrt((5 + 1 - 2) / 5)
    assert result.statistic == pytest.approx(raw * hln)  # 3.2071...
    assert result.pvalue == pytest.approx(2 * _t4_sf(raw * hln), rel=1e-9)
    assert (result.n, result.h) == (5, 1)


def test_dm_h2_uses_newey_west_lag_1() -> None:
    assert metrics.newey_west_variance([1, 2, 0, 2, 1], lags=1) == pytest.approx(
        0.56 + 2 * 0.5 * -0.448
    )
    result = metrics.diebold_mariano(ERRORS_A, ERRORS_B, h=2)
    assert result is not None
    raw = 1.2 / math.sqrt(0.112 / 5)
    hln = math.sqrt((5 + 1 - 4 + 2 * 1 / 5) / 5)
    assert result.statistic == pytest.approx(raw * hln)
    assert result.pvalue == pytest.approx(2 * _t4_sf(raw * hln), rel=1e-9)


def _reference_dm(a: np.ndarray, b: np.ndarray, h: int) -> tuple[float, float]:
    """Straightforward loop implementation of the same definition."""
    d = [abs(x) - abs(y) for x, y in zip(a, b, strict=True)]
    n = len(d)
    mean = sum(d) / n
    gamma = [sum((d[t] - mean) * (d[t - k] - mean) for t in range(k, n)) / n for k in range(h)]
    lrv = gamma[0] + 2 * sum((1 - k / h) * gamma[k] for k in range(1, h))
    stat = mean / math.sqrt(lrv / n) * math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    return stat, n - 1


@pytest.mark.parametrize("h", [1, 3, 7])
def test_dm_matches_reference_on_random_errors(h: int) -> None:
    rng = np.random.default_rng(h)
    a, b = rng.normal(0, 1.1, 120), rng.normal(0, 1.0, 120)
    result = metrics.diebold_mariano(a, b, h=h)
    stat, df = _reference_dm(a, b, h)
    assert result is not None
    assert result.statistic == pytest.approx(stat, rel=1e-10)
    assert result.pvalue == pytest.approx(2 * (1 - metrics.student_t_cdf(abs(stat), df)))


def test_dm_sign_and_degenerate_cases() -> None:
    worse = metrics.diebold_mariano([3.0, 2.0, 4.0, 3.0], [1.0, 1.0, 1.5, 0.5])
    assert worse is not None and worse.statistic > 0
    same = metrics.diebold_mariano([1.0, -2.0], [-1.0, 2.0])
    assert same is not None and (same.statistic, same.pvalue) == (0.0, 1.0)
    assert metrics.diebold_mariano([1.0], [2.0]) is None
    assert metrics.diebold_mariano([2.0, 2.0], [1.0, 1.0]) is None  # constant non-zero gap
    with pytest.raises(InvalidInputError):
        metrics.diebold_mariano([1.0, 2.0], [1.0, 2.0], h=0)


def test_dm_pvalue_is_roughly_uniform_under_the_null() -> None:
    rng = np.random.default_rng(7)
    pvalues = []
    for _ in range(300):
        a, b = rng.normal(size=(2, 80))
        result = metrics.diebold_mariano(a, b, h=1)
        assert result is not None
        pvalues.append(result.pvalue)
    assert np.mean(np.array(pvalues) < 0.05) == pytest.approx(0.05, abs=0.035)
