"""The promotion rule (DESIGN §6): when a newly trained candidate replaces the active version.

``auto`` activates a candidate when no version is active, or when its holdout MASE is at least
0.5% lower than the active version's on the same days and the Diebold–Mariano test does not
find it worse; baselines are never auto-promoted. ``always``/``never`` override the rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from btc_predictor.errors import InvalidInputError
from btc_predictor.forecasting import metrics
from btc_predictor.forecasting.training import DayErrors

PROMOTION_MODES = ("auto", "always", "never")
MIN_IMPROVEMENT = 0.005  # candidate MASE must be at least 0.5% lower
MIN_COMMON_DAYS = 30  # below this, same-day comparison and DM are not meaningful
DM_ALPHA = 0.05


@dataclass(frozen=True)
class PromotionEvidence:
    """What the promotion rule needs to know about one version."""

    model: str
    is_baseline: bool
    mase: float | None  # stated holdout MASE at h=1
    day_errors: DayErrors | None  # h=1 errors keyed by day; None if not recorded
    label: str = "active"  # how reasons name it, e.g. "active v12"


def promotion_decision(
    candidate: PromotionEvidence, active: PromotionEvidence | None, *, mode: str = "auto"
) -> tuple[bool, str]:
    """Whether to activate ``candidate`` over ``active``, with a human reason."""
    if mode not in PROMOTION_MODES:
        raise InvalidInputError(f"promotion mode must be one of {', '.join(PROMOTION_MODES)}")
    if mode == "never":
        return False, "not promoted: promotion mode is 'never'"
    if mode == "always":
        return True, "promoted: promotion mode is 'always'"
    if candidate.is_baseline:
        return False, (
            f"not promoted: `{candidate.model}` is a baseline and baselines are never "
            "auto-promoted (use promote mode 'always' to activate it)"
        )
    if active is None:
        return True, "promoted: no version is active"
    return _compare(candidate, active)


def _compare(candidate: PromotionEvidence, active: PromotionEvidence) -> tuple[bool, str]:
    """The auto rule: ≥ 0.5% lower MASE on the same days, and DM does not find it worse."""
    common = _common_days(candidate.day_errors, active.day_errors)
    if common is None:
        return _compare_stated(candidate, active)
    cand, act = common
    mase_c, mase_a = _ratio(cand), _ratio(act)
    if mase_c is None or mase_a is None:
        return False, "not promoted: MASE is undefined on the common days"
    scope = (
        f"holdout MASE {mase_c:.4f} vs {active.label} {mase_a:.4f} "
        f"on the same {cand.days.size} days"
    )
    if mase_c > mase_a * (1 - MIN_IMPROVEMENT):
        return False, f"not promoted: {scope} is {_gain(mase_c, mase_a)} (0.5% lower required)"
    dm = metrics.diebold_mariano(cand.model, act.model, h=1)
    if dm is not None and dm.statistic > 0 and dm.pvalue < DM_ALPHA:
        return (
            False,
            f"not promoted: {scope}, but the Diebold–Mariano test finds it worse "
            f"(p={dm.pvalue:.3g})",
        )
    dm_text = "n/a" if dm is None else f"{dm.pvalue:.3g}"
    return (
        True,
        f"promoted: {scope} is {_gain(mase_c, mase_a)}; DM p={dm_text} does not find it worse",
    )


def _common_days(a: DayErrors | None, b: DayErrors | None) -> tuple[DayErrors, DayErrors] | None:
    """Both error records restricted to their shared days, or None if too few are shared."""
    if a is None or b is None:
        return None
    days, ia, ib = np.intersect1d(a.days, b.days, assume_unique=True, return_indices=True)
    if days.size < MIN_COMMON_DAYS:
        return None
    return (
        DayErrors(days=days, model=a.model[ia], naive=a.naive[ia]),
        DayErrors(days=days, model=b.model[ib], naive=b.naive[ib]),
    )


def _ratio(errors: DayErrors) -> float | None:
    """MASE from absolute errors: MAE(model) / MAE(naive)."""
    naive = float(np.mean(errors.naive))
    return float(np.mean(errors.model)) / naive if naive > 0 else None


def _gain(candidate: float, active: float) -> str:
    """'1.2% lower' / '0.3% higher' for a reason string."""
    change = 100.0 * (1.0 - candidate / active) if active else 0.0
    return f"{abs(change):.1f}% {'lower' if change >= 0 else 'higher'}"


def _compare_stated(candidate: PromotionEvidence, active: PromotionEvidence) -> tuple[bool, str]:
    """Fallback when the holdouts share too few days: compare the stated MASEs, no DM test."""
    mase_c, mase_a = candidate.mase, active.mase
    note = (
        f"fewer than {MIN_COMMON_DAYS} shared holdout days, so stated MASEs are compared "
        "and DM is not possible"
    )
    if mase_c is None or mase_a is None:
        return False, f"not promoted: {note}, and a MASE is undefined"
    scope = f"holdout MASE {mase_c:.4f} vs {active.label} {mase_a:.4f} ({note})"
    if mase_c > mase_a * (1 - MIN_IMPROVEMENT):
        return False, f"not promoted: {scope}: {_gain(mase_c, mase_a)} (0.5% lower required)"
    return True, f"promoted: {scope}: {_gain(mase_c, mase_a)}"
