"""The promotion rule: same days, at least 0.5% lower MASE, DM not worse, baselines never auto."""

from __future__ import annotations

import numpy as np
import pytest

from btc_predictor.errors import InvalidInputError
from btc_predictor.forecasting.promotion import PromotionEvidence, promotion_decision
from btc_predictor.forecasting.training import DayErrors


def evidence(
    model_err: float,
    *,
    days: range = range(100),
    naive_err: float = 1.0,
    baseline: bool = False,
    mase: float | None = None,
    noise: int = 0,
) -> PromotionEvidence:
    """Evidence with (noisy) constant absolute errors on ``days``."""
    rng = np.random.default_rng(noise)
    n = len(days)
    errors = np.abs(model_err + (rng.normal(0, 0.05, n) if noise else np.zeros(n)))
    return PromotionEvidence(
        model="drift" if baseline else "lstm",
        is_baseline=baseline,
        mase=model_err / naive_err if mase is None else mase,
        day_errors=DayErrors(
            days=np.array(days, dtype=np.int64), model=errors, naive=np.full(n, naive_err)
        ),
    )


def test_promotes_when_none_is_active() -> None:
    promote, reason = promotion_decision(evidence(1.3), None)
    assert promote and "no version is active" in reason


def test_better_by_less_than_half_a_percent_is_not_enough() -> None:
    promote, reason = promotion_decision(evidence(0.997), evidence(1.0))
    assert not promote and "0.3% lower" in reason and "0.5% lower required" in reason


def test_better_by_enough_on_the_same_days_is_promoted() -> None:
    promote, reason = promotion_decision(evidence(0.98, noise=1), evidence(1.0, noise=2))
    assert promote and "same 100 days" in reason and "DM p=" in reason


def test_only_shared_days_count() -> None:
    # The active version's stated MASE is 1.5 (1.0 on days 0..99, 2.0 on days 100..199). A
    # candidate scored on days 0..99 only, at 1.2, beats the stated 1.5 but loses on those days.
    cand = evidence(1.2, days=range(100))
    errors = np.r_[np.full(100, 1.0), np.full(100, 2.0)]
    active = PromotionEvidence(
        model="gru",
        is_baseline=False,
        mase=1.5,
        day_errors=DayErrors(np.arange(200), errors, np.ones(200)),
    )
    promote, reason = promotion_decision(cand, active)
    assert not promote and "1.2000 vs active 1.0000 on the same 100 days" in reason


def test_too_few_shared_days_falls_back_to_stated_mase() -> None:
    cand, active = evidence(0.9, days=range(0, 50)), evidence(1.0, days=range(40, 90))
    promote, reason = promotion_decision(cand, active)
    assert promote and "stated MASEs are compared" in reason and "DM is not possible" in reason
    no_record = PromotionEvidence("lstm", False, 1.0, None)
    assert not promotion_decision(no_record, active)[0]


def test_dm_worse_blocks_promotion() -> None:
    # Same days, but the candidate's run saw larger naive errors (e.g. revised data): its MASE
    # looks 10% better while its absolute errors are clearly larger than the active one's.
    cand = evidence(1.2, naive_err=1.5, noise=3)
    active = evidence(0.9, naive_err=1.0, noise=4)
    promote, reason = promotion_decision(cand, active)
    assert not promote and "Diebold–Mariano test finds it worse" in reason


def test_baselines_are_never_auto_promoted() -> None:
    promote, reason = promotion_decision(evidence(0.5, baseline=True), None)
    assert not promote and "baseline" in reason
    assert promotion_decision(evidence(0.5, baseline=True), None, mode="always")[0]


def test_always_and_never_modes() -> None:
    worse, better = evidence(2.0), evidence(0.5)
    assert promotion_decision(worse, better, mode="always") == (
        True,
        "promoted: promotion mode is 'always'",
    )
    assert not promotion_decision(better, None, mode="never")[0]
    with pytest.raises(InvalidInputError):
        promotion_decision(better, None, mode="sometimes")
