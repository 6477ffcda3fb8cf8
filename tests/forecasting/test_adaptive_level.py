"""The level the adaptive intervals apply for a nominal one."""

from __future__ import annotations

import numpy as np

from btc_predictor.forecasting.adaptive_level import applied_level


def steady(n: int, seed: int = 1) -> list[float | None]:
    """Scores of a steady regime: |N(0, 1)| (a well-normalised σ̂)."""
    return [float(v) for v in np.abs(np.random.default_rng(seed).standard_normal(n))]


def test_a_steady_regime_applies_about_the_nominal_level() -> None:
    level = applied_level(steady(800), 1, 90)
    assert level is not None and 0.86 <= level <= 0.94


def test_a_run_of_misses_pushes_the_level_up_and_a_calm_spell_down() -> None:
    base = steady(800)
    calm = applied_level(base + [0.05] * 60, 1, 90)  # σ̂ now overstates the moves
    wild = applied_level(base + [3.0] * 60, 1, 90)  # every day a miss: a new regime
    steady_level = applied_level(base, 1, 90)
    assert steady_level is not None and calm is not None and wild is not None
    # Measured: steady 0.915, after 60 calm days 0.855, after 60 misses 0.997.
    assert calm < 0.87 < steady_level < 0.95 < wild


def test_burn_in_and_open_scores() -> None:
    assert applied_level(steady(5), 1, 90) is None
    # Open (unscored) origins are skipped, not read as zeros.
    with_open = applied_level([*steady(800), None, None], 1, 90)
    assert with_open is not None and 0.86 <= with_open <= 0.94
