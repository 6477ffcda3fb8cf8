"""btc-predictor: honest, fast, self-hosted crypto price forecasting."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("btc-predictor")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
