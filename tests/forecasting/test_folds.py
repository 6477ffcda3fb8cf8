"""Walk-forward folds: boundaries, what a fold carries, and per-fold seeds."""

from __future__ import annotations

import numpy as np
import pytest

from btc_predictor.errors import InvalidInputError, NotEnoughDataError
from btc_predictor.forecasting.folds import fold_seed, fold_starts, make_folds


def random_walk(n: int, seed: int = 0) -> np.ndarray:
    """Synthetic daily closes: a geometric random walk around 30k."""
    rng = np.random.default_rng(seed)
    return 30_000.0 * np.exp(np.cumsum(rng.normal(0.001, 0.02, n)))


def test_fold_boundaries() -> None:
    assert fold_starts(100, 80, 7) == [80, 87, 94]
    folds = make_folds(random_walk(100), model="drift", start=80, refit_every=7)
    assert [f.train_end for f in folds] == [80, 87, 94]
    assert [(int(f.origins[0]), int(f.origins[-1])) for f in folds] == [
        (79, 85),
        (86, 92),
        (93, 98),
    ]
    # a fold carries nothing past its last origin
    assert [len(f.history) for f in folds] == [86, 93, 99]
    assert make_folds(random_walk(100), model="drift")[0].train_end == 80  # ceil(0.8·N)
    with pytest.raises(NotEnoughDataError):
        fold_starts(100, 100, 7)
    with pytest.raises(InvalidInputError):
        fold_starts(100, 80, 0)


def test_fold_seeds_depend_only_on_seed_and_index() -> None:
    seeds = [f.seed for f in make_folds(random_walk(100), model="drift", seed=5, refit_every=5)]
    assert seeds == [fold_seed(5, i) for i in range(4)]
    assert len(set(seeds)) == 4 and fold_seed(6, 0) != fold_seed(5, 0)
