"""Neural forecasters: the torch core (``core``), the original's recipe (``recipe``) and the
return models (``returns``). Importing this package imports torch: serving never does.
"""

from btc_predictor.forecasting.networks.core import TorchForecaster
from btc_predictor.forecasting.networks.recipe import SeedLSTMForecaster
from btc_predictor.forecasting.networks.returns import (
    GRUForecaster,
    LSTMForecaster,
    TransformerForecaster,
)

__all__ = [
    "GRUForecaster",
    "LSTMForecaster",
    "SeedLSTMForecaster",
    "TorchForecaster",
    "TransformerForecaster",
]
