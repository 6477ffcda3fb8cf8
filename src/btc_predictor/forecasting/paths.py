"""One model run's whole forecast path, and intervals at any level derived from it.

A version's ONNX graph forecasts every horizon up to its ``max_horizon`` in one run, and its
split-conformal half-widths depend only on its stored residuals and the level. So one run per
(version, data) serves every (horizon, level): :class:`ForecastPath` keeps the path with the
version's :class:`HalfWidths` and derives bounds per level without running the model again.
It also keeps what later risk fields need (the last close and each horizon's recent
residuals: σ, VaR and P(up) are functions of these and the path).

Bounds are computed over the whole path and then sliced, so a horizon's numbers do not
depend on the horizon asked for; slicing first gives the same floats (checked over 120,000
random paths and every cut, and over real models in tests/services/test_forecast.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from btc_predictor.errors import ArtifactError, HorizonExceedsModelError, NotEnoughDataError
from btc_predictor.forecasting import adaptive
from btc_predictor.forecasting.base import FloatArray
from btc_predictor.forecasting.intervals import (
    DEFAULT_WINDOW,
    MAX_LEVEL,
    MIN_LEVEL,
    conformal_quantile,
    min_residuals,
    recent_residuals,
)

# Every servable level and what VaR and p_up read: one adaptive replay serves them all.
SERVED_GRID = adaptive.predictive_grid(list(range(MIN_LEVEL, MAX_LEVEL + 1)))
# The grid's top level is 0.99: its order statistic exists from 99 scores on.
_GRID_SCORES = min_residuals(MAX_LEVEL)


@dataclass(frozen=True, slots=True)
class Forecast:
    """Point forecasts for horizons 1..h with their conformal interval at ``level``."""

    values: FloatArray
    lower: FloatArray
    upper: FloatArray
    level: int


@dataclass(frozen=True, slots=True)
class Widths:
    """Log-space half-widths per horizon at one level; ``problems[h-1]`` says why one is
    missing (too few residuals), else None."""

    q: FloatArray
    problems: tuple[str | None, ...]


class Widening(Protocol):
    """Half-widths per level, and the predictive distribution VaR and p_up read."""

    def at(self, level: int) -> Widths:
        """The log-space half-widths per horizon at ``level``."""
        ...

    def predictive(self, h: int, last_close: float, forecast: float) -> adaptive.Predictive | None:
        """Horizon ``h``'s predictive distribution (None: too few scores or residuals)."""
        ...


class HalfWidths:
    """A version's split-conformal half-widths per horizon, computed once per level."""

    def __init__(
        self, residuals_per_horizon: Sequence[FloatArray], *, window: int | None = DEFAULT_WINDOW
    ) -> None:
        self.recent = [recent_residuals(r, window) for r in residuals_per_horizon]
        self._levels: dict[int, Widths] = {}

    def at(self, level: int) -> Widths:
        """The half-widths at ``level`` (the same order statistic ``intervals_per_horizon``
        takes); memoised, so each level costs one quantile per horizon once per version."""
        hit = self._levels.get(level)
        if hit is None:
            q: list[float] = []
            problems: list[str | None] = []
            for residuals in self.recent:
                try:
                    q.append(conformal_quantile(residuals, level))
                    problems.append(None)
                except NotEnoughDataError as exc:
                    q.append(np.nan)
                    problems.append(str(exc))
            hit = Widths(np.array(q, dtype=np.float64), tuple(problems))
            self._levels[level] = hit
        return hit

    def predictive(self, h: int, last_close: float, forecast: float) -> adaptive.Predictive | None:
        """The static distribution (σ = 1, |r| order statistics on the grid): its 90% lower
        bound is the static 90% interval's (VaR 95); None under 99 residuals (VaR 99)."""
        grid = adaptive.predictive_grid()
        if h > len(self.recent) or self.recent[h - 1].size < _GRID_SCORES:
            return None
        window = np.sort(np.abs(self.recent[h - 1]))
        ranks = np.clip(np.ceil((window.size + 1) * grid - 1e-9), 1, window.size)
        q = window[ranks.astype(np.int64) - 1]
        return adaptive.Predictive(last_close, forecast, 1.0, grid, q)


class AdaptiveWidths:
    """Adaptive half-widths ``q_h(L)·σ̂_h``: ``quantiles[h-1]`` is horizon h's replayed |Z|
    quantile row on :data:`SERVED_GRID` (NaN: too few stored scores), ``sigma[h-1]`` its σ̂
    of the h-day log return now."""

    def __init__(self, quantiles: FloatArray, sigma: FloatArray) -> None:
        self.quantiles, self.sigma = quantiles, sigma
        self._levels: dict[int, Widths] = {}

    def at(self, level: int) -> Widths:
        """The half-widths at ``level`` (memoised)."""
        hit = self._levels.get(level)
        if hit is None:
            column = int(np.flatnonzero(np.isclose(SERVED_GRID, level / 100.0))[0])
            q = self.quantiles[:, column] * self.sigma
            problems = tuple(
                None if math.isfinite(v) else f"too few interval scores at horizon {h}"
                for h, v in enumerate(q, start=1)
            )
            hit = self._levels[level] = Widths(q, problems)
        return hit

    def predictive(self, h: int, last_close: float, forecast: float) -> adaptive.Predictive | None:
        """Horizon ``h``'s adaptive distribution, or None in burn-in."""
        if h > self.sigma.size or not np.isfinite(self.quantiles[h - 1, 0]):
            return None
        q = self.quantiles[h - 1]
        return adaptive.Predictive(last_close, forecast, float(self.sigma[h - 1]), SERVED_GRID, q)


class MixedWidths:
    """Adaptive widths, with the static ones at the horizons a version serves static (where
    σ̂-scaled bands did not beat them on its holdout: :mod:`..interval_choice`)."""

    def __init__(
        self, adaptive: AdaptiveWidths, static: Widening, static_horizons: frozenset[int]
    ) -> None:
        self.adaptive, self.static, self.static_horizons = adaptive, static, static_horizons
        self._levels: dict[int, Widths] = {}

    def at(self, level: int) -> Widths:
        """The adaptive half-widths at ``level`` with the static horizons' swapped in."""
        hit = self._levels.get(level)
        if hit is None:
            scaled, plain = self.adaptive.at(level), self.static.at(level)
            q, problems = scaled.q.copy(), list(scaled.problems)
            for h in self.static_horizons:
                if h <= q.size:
                    known = h <= plain.q.size
                    q[h - 1] = plain.q[h - 1] if known else np.nan
                    problems[h - 1] = plain.problems[h - 1] if known else "no static residuals"
            hit = self._levels[level] = Widths(q, tuple(problems))
        return hit

    def predictive(self, h: int, last_close: float, forecast: float) -> adaptive.Predictive | None:
        """Horizon ``h``'s distribution from the method that serves it."""
        source: Widening = self.static if h in self.static_horizons else self.adaptive
        return source.predictive(h, last_close, forecast)


@dataclass(frozen=True, slots=True)
class RiskFields:
    """VaR 95/99 (loss in % of the last close) and p_up per horizon; NaN where undefined."""

    var_95: FloatArray
    var_99: FloatArray
    p_up: FloatArray


@dataclass(frozen=True, slots=True)
class ForecastPath:
    """The point path of one run (horizons 1..max) and the version's half-widths."""

    values: FloatArray
    last_close: float
    widths: Widening
    # How far p_up may leave 0.5: the version's holdout evidence of skill over naive
    # (:func:`~btc_predictor.forecasting.adaptive.direction_weight`).
    direction_weight: float = 1.0
    _bounds: dict[int, tuple[FloatArray, FloatArray]] = field(default_factory=dict, repr=False)
    _risk: list[RiskFields] = field(default_factory=list, repr=False)

    def risk(self) -> RiskFields:
        """VaR and p_up per horizon from the distribution the intervals come from (once)."""
        if not self._risk:
            rows = [self._risk_row(h) for h in range(1, self.max_horizon + 1)]
            columns = np.array(rows, dtype=np.float64).reshape(-1, 3)
            self._risk.append(RiskFields(columns[:, 0], columns[:, 1], columns[:, 2]))
        return self._risk[0]

    def _risk_row(self, h: int) -> tuple[float, float, float]:
        """(var_95, var_99, p_up) of horizon ``h``; NaN when it has no distribution."""
        value = float(self.values[h - 1])
        if not (math.isfinite(value) and value > 0):
            return math.nan, math.nan, math.nan
        dist = self.widths.predictive(h, self.last_close, value)
        if dist is None:
            return math.nan, math.nan, math.nan
        with np.errstate(over="ignore", invalid="ignore"):
            return dist.var(0.95), dist.var(0.99), dist.p_up(self.direction_weight)

    @property
    def max_horizon(self) -> int:
        """The longest horizon this run forecast."""
        return int(self.values.size)

    def bounds(self, level: int) -> tuple[FloatArray, FloatArray]:
        """Lower and upper bounds over the whole path at ``level`` (NaN where undefined)."""
        hit = self._bounds.get(level)
        if hit is None:
            q = self.widths.at(level).q
            q = np.concatenate([q, np.full(max(self.max_horizon - q.size, 0), np.nan)])
            q = q[: self.max_horizon]
            # Overflow and NaN half-widths are refused per request (see ``forecast``).
            with np.errstate(over="ignore", invalid="ignore"):
                hit = (self.values * np.exp(-q), self.values * np.exp(q))
            self._bounds[level] = hit
        return hit

    def forecast(self, horizon: int, level: int) -> Forecast:
        """Horizons 1..``horizon`` at ``level``, refused as a fresh run would refuse them."""
        if horizon > self.max_horizon:
            raise HorizonExceedsModelError(
                f"horizon {horizon} exceeds this model's {self.max_horizon} days; "
                f"train with BTCP_MAX_HORIZON >= {horizon}"
            )
        self._check_widths(horizon, level)
        lower, upper = self.bounds(level)
        values = self.values[:horizon]
        _require_finite(values, lower[:horizon], upper[:horizon])
        return Forecast(values, lower[:horizon], upper[:horizon], level)

    def usable(self, level: int) -> int:
        """How many leading horizons ``forecast`` serves at ``level`` without an error."""
        lower, upper = self.bounds(level)
        good = np.isfinite(self.values) & np.isfinite(lower) & np.isfinite(upper)
        return int(np.argmin(good)) if not good.all() else self.max_horizon

    def _check_widths(self, horizon: int, level: int) -> None:
        """NotEnoughDataError when a horizon up to ``horizon`` has no interval at ``level``."""
        widths = self.widths.at(level)
        if len(widths.problems) < horizon:
            raise NotEnoughDataError(
                f"residuals are stored for {len(widths.problems)} horizons, "
                f"the forecast has {horizon}"
            )
        problem = next((p for p in widths.problems[:horizon] if p is not None), None)
        if problem is not None:
            raise NotEnoughDataError(problem)


def _require_finite(values: FloatArray, lower: FloatArray, upper: FloatArray) -> None:
    """A forecast is served only when every number in it is finite (JSON has no NaN or inf)."""
    bad = ~(np.isfinite(values) & np.isfinite(lower) & np.isfinite(upper))
    if bad.any():
        h = int(np.argmax(bad)) + 1
        raise ArtifactError(
            f"this model's forecast is not finite at horizon {h} "
            f"({values[h - 1]} in [{lower[h - 1]}, {upper[h - 1]}]): it cannot serve these closes"
        )
