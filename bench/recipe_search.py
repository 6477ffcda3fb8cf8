"""Recipe search for the neural forecasters on the original's 80/20 holdout.

Usage: ``python bench/recipe_search.py [--variants a,b] [--seeds 0,1,2] [--out FILE.jsonl]``

Reads Bitstamp daily closes (CryptoDataDownload format), keeps 2018-01-01..2025-11-29
(N = 2,890), fits each variant on the first ceil(0.8·N) = 2,312 days and scores MASE against
naive at h = 1 and h = 7 on origins inside the 578 test days. Prints one JSON line per fit.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from torch import nn

from btc_predictor.forecasting.base import FloatArray
from btc_predictor.forecasting.ensemble import EnsembleForecaster, _forecast_windows
from btc_predictor.forecasting.networks import (
    GRUForecaster,
    LSTMForecaster,
    SeedLSTMForecaster,
    TorchForecaster,
    TransformerForecaster,
)

Model = TorchForecaster | EnsembleForecaster
CSV_PATH = Path("/work/shared/data/Bitstamp_BTCUSD_d.csv")
START, END = "2018-01-01", "2025-11-29"


def load_closes(path: Path = CSV_PATH) -> FloatArray:
    """Daily closes START..END, ascending, from a CryptoDataDownload CSV (banner line first)."""
    with path.open() as handle:
        lines = handle.read().splitlines()
    rows = csv.DictReader(lines[1:] if not lines[0].startswith("unix") else lines)
    by_day = {r["date"][:10]: float(r["close"]) for r in rows if START <= r["date"][:10] <= END}
    days = sorted(by_day)
    closes = np.array([by_day[d] for d in days])
    assert len(closes) == 2890, len(closes)
    return closes


class _RandomHeadLSTM(LSTMForecaster):
    """Ablation: PyTorch-default head init (does not start at the naive forecast)."""

    def _make_core(self) -> nn.Module:
        """The default core with its head re-initialized."""
        core = super()._make_core()
        head = core.head
        assert isinstance(head, nn.Linear)
        head.reset_parameters()
        return core


VARIANTS: dict[str, Callable[[], Model]] = {
    # the chosen recipe (defaults) and its ablations
    "lstm": LSTMForecaster,
    "gru": GRUForecaster,
    "transformer": TransformerForecaster,
    "lstm-noshrink": lambda: LSTMForecaster(shrink=False),
    "gru-noshrink": lambda: GRUForecaster(shrink=False),
    "transformer-noshrink": lambda: TransformerForecaster(shrink=False),
    "lstm-randhead": _RandomHeadLSTM,
    "lstm-huber": lambda: LSTMForecaster(loss="huber"),
    "transformer-huber": lambda: TransformerForecaster(loss="huber"),
    "lstm-h64x2": lambda: LSTMForecaster(hidden=64, layers=2),
    "lstm-w60": lambda: LSTMForecaster(window=60),
    "transformer-lr3e-4": lambda: TransformerForecaster(lr=3e-4),
    "transformer-d32": lambda: TransformerForecaster(d_model=32, ff=64),
    "ensemble": EnsembleForecaster,
    "ensemble-naive-drift-lstm": lambda: EnsembleForecaster(("naive", "drift", "lstm")),
    "seed-lstm": SeedLSTMForecaster,
}


def holdout_split(closes: FloatArray) -> int:
    """Length of the training part: ceil(0.8·N), as in the original."""
    return math.ceil(0.8 * len(closes))


def mase(forecasts: FloatArray, closes: FloatArray, n_train: int, h: int) -> float:
    """MASE vs naive at horizon h over origins t in [n_train-1, N-1-h]."""
    origins = np.arange(n_train - 1, len(closes) - h)
    actual, naive = closes[origins + h], closes[origins]
    pred = forecasts[origins - (n_train - 1), h - 1]
    return float(np.mean(np.abs(pred - actual)) / np.mean(np.abs(naive - actual)))


def test_windows(closes: FloatArray, n_train: int, width: int) -> FloatArray:
    """Windows [n_origins, width] ending at every origin t = n_train-1 .. N-2."""
    windows = np.lib.stride_tricks.sliding_window_view(closes, width)
    return windows[n_train - width : len(closes) - width]


def run(variant: str, seed: int, closes: FloatArray) -> dict[str, object]:
    """Fit one variant on the training part and score it on the test days."""
    n_train = holdout_split(closes)
    model = VARIANTS[variant]()
    start = time.perf_counter()
    model.fit(closes[:n_train], seed=seed)
    seconds = time.perf_counter() - start
    windows = test_windows(closes, n_train, model.context_length)
    forecasts = model.predict_batch(windows)
    row: dict[str, object] = {"variant": variant, "seed": seed, "fit_s": round(seconds, 2)}
    row |= {f"mase_h{h}": mase(forecasts, closes, n_train, h) for h in (1, 7)}
    if isinstance(model, EnsembleForecaster):
        row["weights"] = [round(w, 4) for w in model.weights.tolist()]
        equal = np.mean([_forecast_windows(m, windows) for m in model.members], axis=0)
        row |= {f"mase_h{h}_equal": mase(equal, closes, n_train, h) for h in (1, 7)}
    else:
        fitted = model.config()["fitted"]
        row |= {k: fitted.get(k) for k in ("best_epoch", "epochs_run", "shrink_alpha")}
    return row


def main() -> None:
    """Run the requested variants × seeds and print one JSON line per fit."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", default=",".join(v for v in VARIANTS if v != "seed-lstm"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    closes = load_closes()
    for variant in args.variants.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            line = json.dumps(run(variant, seed, closes))
            print(line, flush=True)
            if args.out is not None:
                with args.out.open("a") as handle:
                    handle.write(line + "\n")


if __name__ == "__main__":
    main()
