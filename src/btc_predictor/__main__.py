"""``python -m btc_predictor`` runs the CLI."""

from btc_predictor.cli import main

main()
