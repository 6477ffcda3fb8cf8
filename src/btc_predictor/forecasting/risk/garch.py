"""``garch``: GARCH(1,1) with Student-t errors on daily close-to-close log returns.

The textbook comparison. Parameters are estimated with the ``arch`` library (train extra,
imported inside ``fit`` only); forecasts replay the fitted recursion in numpy, so serving and
stored versions need neither ``arch`` nor torch:

    r_d = 100·ln(C_d / C_{d−1}),  ε_d = r_d − μ,
    σ²_1 = ω + (α + β)·b   (b = arch's backcast of the training returns),
    σ²_{d+1} = ω + α·ε²_d + β·σ²_d,
    E[σ²_{t+h} | t] = ω·Σ_{i<h−1} φ^i + φ^{h−1}·σ²_{t+1},  φ = α + β.

This is exactly arch's conditional variance recursion (checked in the tests to 1e-9), and
its analytic multi-step forecast; volatility is σ/100 (a fraction), range_pct_h = 100·κ_h·σ_h.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, Self

import numpy as np

from btc_predictor.errors import InvalidInputError
from btc_predictor.forecasting.base import FloatArray, JSONValue
from btc_predictor.forecasting.risk.base import RiskModel, Tensors, range_scale, tensor
from btc_predictor.forecasting.risk.ohlc import OHLC

PARAMS = ("mu", "omega", "alpha", "beta", "nu")
_ARCH_NAMES = ("mu", "omega", "alpha[1]", "beta[1]", "nu")  # the same, as arch labels them
# arch estimates better on percent returns (its DataScaleWarning asks for a scale of 1–1000).
SCALE = 100.0
MIN_RETURNS = 100
WARMUP_DAYS = 20  # days whose variance still leans on the backcast are left out of the κ fit


def percent_returns(close: FloatArray) -> FloatArray:
    """100·ln(C_d / C_{d−1}) for d = 1..n−1."""
    return SCALE * np.diff(np.log(close))


def conditional_variances(
    returns: FloatArray, mu: float, omega: float, alpha: float, beta: float, backcast: float
) -> FloatArray:
    """σ²_d of each return (given returns before it) and one more: shape ``(len(returns)+1,)``."""
    out = np.empty(returns.size + 1)
    state = omega + (alpha + beta) * backcast
    out[0] = state
    for d, value in enumerate((returns - mu).tolist(), start=1):
        state = omega + alpha * value * value + beta * state
        out[d] = state
    return out


class Garch(RiskModel):
    """GARCH(1,1)-t fitted by ``arch`` (maximum likelihood), forecast by a numpy recursion."""

    name: ClassVar[str] = "garch"

    def __init__(self, max_horizon: int = 30) -> None:
        super().__init__(max_horizon)
        self._params: FloatArray | None = None  # mu, omega, alpha, beta, nu
        self._backcast: float | None = None
        self._kappa: FloatArray | None = None

    def _is_fitted(self) -> bool:
        return self._params is not None

    def fit(self, ohlc: OHLC, *, seed: int = 0) -> Self:
        """Maximum likelihood through ``arch`` on the training returns, then κ_h."""
        ohlc.require(MIN_RETURNS + 1, self.name)
        returns = percent_returns(ohlc.close)
        result = _arch_fit(returns)
        self._params = np.array([float(result.params[k]) for k in _ARCH_NAMES])
        # arch backcasts from the residuals of its starting mean (the sample mean), not μ̂.
        self._backcast = float(result.model.volatility.backcast(returns - returns.mean()))
        sigma = np.sqrt(self._variance_paths(ohlc))
        self._kappa = range_scale(ohlc.range_pct(), sigma, WARMUP_DAYS)
        return self

    def _variance_paths(self, ohlc: OHLC) -> FloatArray:
        """E[σ²_{t+h}] as a fraction², for every day t and horizon: ``[n, H]``."""
        assert self._params is not None and self._backcast is not None
        mu, omega, alpha, beta = (float(v) for v in self._params[:4])
        returns = percent_returns(ohlc.close)
        nxt = conditional_variances(returns, mu, omega, alpha, beta, self._backcast)  # σ²_{t+1}
        phi = alpha + beta
        steps = np.arange(self._max_horizon)  # h − 1
        powers = phi**steps
        # ω·(1 + φ + … + φ^{h−2}); cumulative sum avoids dividing by 1 − φ when φ ≈ 1.
        level = omega * np.concatenate([[0.0], np.cumsum(powers)[:-1]])
        return (level[None, :] + powers[None, :] * nxt[:, None]) / SCALE**2

    def _paths(self, ohlc: OHLC) -> tuple[FloatArray, FloatArray]:
        variance = self._variance_paths(ohlc)
        assert self._kappa is not None
        return variance, 100.0 * self._kappa[None, :] * np.sqrt(variance)

    def tensors(self) -> Tensors:
        """Parameters (mu, omega, alpha, beta, nu), the backcast and κ_h."""
        assert self._params is not None and self._kappa is not None
        return {
            "params": self._params.copy(),
            "backcast": np.array([self._backcast], dtype=np.float64),
            "range_scale": self._kappa.copy(),
        }

    def config(self) -> dict[str, JSONValue]:
        """Hyperparameters for meta.json (the fitted values, readable; tensors are exact)."""
        readable = (
            {} if self._params is None else dict(zip(PARAMS, self._params.tolist(), strict=True))
        )
        return {**super().config(), "returns_scale": SCALE, "fitted": readable}

    @classmethod
    def from_artifacts(cls, config: dict[str, JSONValue], tensors: dict[str, Any]) -> Self:
        """Rebuild a fitted model."""
        horizon = cls._check_config(config)
        model = cls(max_horizon=horizon)
        model._params = tensor(tensors, "params", (len(PARAMS),))
        model._backcast = float(tensor(tensors, "backcast", (1,))[0])
        model._kappa = tensor(tensors, "range_scale", (horizon,))
        return model


def _arch_fit(returns: FloatArray) -> Any:
    """arch's GARCH(1,1)-t estimate, with its two advisory warnings silenced narrowly."""
    from arch import arch_model  # train extra only: serving never gets here
    from arch.utility.exceptions import ConvergenceWarning, DataScaleWarning

    model = arch_model(returns, mean="Constant", vol="GARCH", p=1, q=1, dist="t", rescale=False)
    # Degenerate likelihood evaluations (e.g. flat prices: zero variance) are numpy floating
    # errors inside arch's optimiser; the convergence flag below judges the outcome.
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # Percent returns are already in arch's preferred scale; convergence is checked below.
        warnings.filterwarnings("ignore", category=DataScaleWarning)
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        result = model.fit(disp="off", show_warning=False)
    # arch reports non-convergence as a warning (silenced above) and a flag: refuse it here,
    # since a half-optimised fit would be served. BTC and ETH converge in all 94 walk-forward
    # folds of bench/RISK.md.
    params = np.asarray(result.params, dtype=np.float64)
    if result.convergence_flag != 0 or not np.all(np.isfinite(params)):
        raise InvalidInputError(
            f"garch: maximum likelihood did not converge on these {returns.size} returns "
            f"(optimizer flag {result.convergence_flag})"
        )
    return result
