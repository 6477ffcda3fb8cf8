"""Risk models (a second model family): daily range and volatility forecasts from OHLC candles.

Pure numpy (``garch`` fits through ``arch``, imported only inside its ``fit``).
"""

from btc_predictor.forecasting.risk.base import (
    RiskForecast,
    RiskForecastBatch,
    RiskForecaster,
    RiskModel,
)
from btc_predictor.forecasting.risk.ohlc import OHLC, range_pct, range_variance

__all__ = [
    "OHLC",
    "RiskForecast",
    "RiskForecastBatch",
    "RiskForecaster",
    "RiskModel",
    "range_pct",
    "range_variance",
]
