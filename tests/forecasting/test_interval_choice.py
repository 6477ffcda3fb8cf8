"""Per-horizon choice between σ̂-scaled adaptive and static bands: scored causally, adaptive
where σ̂ carries information, static where σ̂ is noise."""

from __future__ import annotations

import numpy as np
import pytest

from btc_predictor.forecasting import adaptive
from btc_predictor.forecasting import interval_choice as choice
from btc_predictor.forecasting.base import FloatArray


def garch_returns(n: int, seed: int) -> tuple[FloatArray, FloatArray]:
    """GARCH(1,1) daily log returns and their true conditional σ."""
    rng = np.random.default_rng(seed)
    omega, a, b = 2e-6, 0.1, 0.88
    var = omega / (1 - a - b)
    r, s = np.empty(n), np.empty(n)
    for t in range(n):
        s[t] = np.sqrt(var)
        r[t] = s[t] * rng.standard_normal()
        var = omega + a * r[t] ** 2 + b * var
    return r, s


def test_the_interval_score_is_width_plus_the_miss_penalty() -> None:
    # |r| 0.05 outside ±0.03 at 90%: 2·0.03 + (2/0.1)·0.02 = 0.46; inside: the width alone
    scores = choice._interval_score(np.array([0.05, 0.01]), np.array([0.03, 0.03]), 0.1)
    assert scores == pytest.approx([0.46, 0.06])


def test_band_scores_are_causal_a_prefix_replays_the_same() -> None:
    r, s = garch_returns(900, seed=3)
    whole = choice.band_scores(r, s, 2)
    part = choice.band_scores(r[:500], s[:500], 2)
    for full, cut in zip(whole, part, strict=True):
        np.testing.assert_array_equal(full[:500], cut)


def test_burn_in_has_no_score() -> None:
    r, s = garch_returns(300, seed=1)
    scaled, plain = choice.band_scores(r, s, 1)
    assert np.isnan(scaled[:30]).all() and np.isnan(plain[:30]).all()
    assert np.isfinite(scaled[-100:]).all() and np.isfinite(plain[-100:]).all()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_an_informative_sigma_wins_over_static(seed: int) -> None:
    r, s = garch_returns(3000, seed)
    assert choice.scaled_wins(*choice.band_scores(r, s, 1), 1)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_noise_sigma_loses_to_static(seed: int) -> None:
    # Homoscedastic returns, σ̂ that varies by a factor of ~3 for no reason: scaling only widens.
    rng = np.random.default_rng(seed)
    r = 0.03 * rng.standard_normal(3000)
    s = 0.03 * np.exp(0.6 * rng.standard_normal(3000))
    assert not choice.scaled_wins(*choice.band_scores(r, s, 1), 1)


def test_static_must_win_significantly_on_enough_days() -> None:
    rng = np.random.default_rng(4)
    noise = rng.exponential(1.0, 400)
    few = noise[: choice.MIN_COMPARED - 1]
    assert choice.scaled_wins(few + 1.0, few, 1)  # static far better, but on too few days
    assert choice.scaled_wins(noise, noise, 1)  # a tie
    other = rng.exponential(1.0, 400)
    assert choice.scaled_wins(noise * 1.01, other, 1)  # 1% apart in noise: not significant
    assert not choice.scaled_wins(noise * 1.5, noise, 1)  # 50% worse every day
    gaps = np.concatenate([noise * 1.5, [np.nan] * 50])
    assert not choice.scaled_wins(gaps, np.concatenate([noise, [0.0] * 50]), 1)


def test_overlapping_targets_need_more_evidence() -> None:
    # The same daily differences are weaker evidence at h=7 (HAC lag 6) when they persist.
    rng = np.random.default_rng(9)
    shared = np.repeat(rng.standard_normal(60), 7)[:400] * 0.3
    static = rng.exponential(1.0, 400) + 2.0
    adaptive = static + 0.05 + shared  # one-sided p: 0.027 at h=1, 0.18 at h=7
    assert not choice.scaled_wins(adaptive, static, 1)
    assert choice.scaled_wins(adaptive, static, 7)


def test_static_horizons_names_the_horizons_where_sigma_is_noise() -> None:
    rng = np.random.default_rng(7)
    r1, s1 = garch_returns(2500, seed=7)
    r2 = 0.03 * rng.standard_normal(2500)
    s2 = 0.03 * np.exp(0.6 * rng.standard_normal(2500))
    sigma = np.column_stack([s1, s2])
    assert choice.static_horizons([r1, r2], sigma, window=365) == [2]


@pytest.mark.parametrize("h", [1, 3, 7])
@pytest.mark.parametrize("window", [None, 50, 365])
def test_the_fast_replay_equals_the_general_one(h: int, window: int | None) -> None:
    rng = np.random.default_rng(h)
    scores = np.abs(rng.standard_normal(700))
    scores[rng.choice(700, 60, replace=False)] = np.nan  # origins without a score
    scores[100:110] = 1.25  # ties in the window
    for method, step in (("tracker", 0.05), ("normalised", 0.0)):
        for level in (0.5, 0.9, 0.99):
            want = adaptive.quantile_path(
                scores, [level], h, method=method, step=step, window=window
            )[: scores.size, 0]
            got = choice.replay(scores, h, level, step=step, window=window)
            np.testing.assert_array_equal(got, want)
