"""The risk baseline: tomorrow's range is today's (``naive-range``)."""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np

from btc_predictor.forecasting.base import FloatArray, JSONValue
from btc_predictor.forecasting.risk.base import RiskModel, Tensors
from btc_predictor.forecasting.risk.ohlc import OHLC


class NaiveRange(RiskModel):
    """Every horizon's range_pct is the origin day's; volatility is its Parkinson σ.

    The reference of range MASE. Needs no fit (usable as constructed).

    Examples
    --------
    >>> from btc_predictor.forecasting.risk.ohlc import OHLC
    >>> c = OHLC.from_arrays([100, 100], [102, 110], [98, 100], [100, 105])
    >>> NaiveRange(max_horizon=2).forecast(c, 2).range_pct.tolist()
    [10.0, 10.0]
    """

    name: ClassVar[str] = "naive-range"
    is_baseline: ClassVar[bool] = True

    def fit(self, ohlc: OHLC, *, seed: int = 0) -> Self:
        """Nothing to learn (the candles were validated when built)."""
        ohlc.require(1, self.name)
        return self

    def _paths(self, ohlc: OHLC) -> tuple[FloatArray, FloatArray]:
        """Today's Parkinson variance and range_pct, repeated for every horizon."""
        shape = (len(ohlc), self._max_horizon)
        variance = np.broadcast_to(ohlc.variance("parkinson")[:, None], shape)
        ranges = np.broadcast_to(ohlc.range_pct()[:, None], shape)
        return np.array(variance), np.array(ranges)

    def tensors(self) -> Tensors:
        """No fitted numbers."""
        return {}

    @classmethod
    def from_artifacts(cls, config: dict[str, JSONValue], tensors: dict[str, Any]) -> Self:
        """Rebuild from ``config()`` output."""
        return cls(max_horizon=cls._check_config(config))
