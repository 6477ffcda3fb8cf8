"""The ``btc-predictor`` command line: commands in ``app``, human renderings in ``views``."""

from btc_predictor.cli.app import main

__all__ = ["main"]
