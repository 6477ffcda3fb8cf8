"""Forecasting from a version's ONNX bytes and meta with ONNX Runtime and numpy only (never torch).

It takes bytes and a parsed meta dict, so ``forecasting/`` never depends on how they are stored.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

from btc_predictor.errors import ArtifactError, HorizonExceedsModelError, NoDataError
from btc_predictor.forecasting.base import FloatArray
from btc_predictor.forecasting.paths import Forecast, ForecastPath, HalfWidths


class OnnxModel:
    """A verified model version loaded into an ONNX Runtime session."""

    def __init__(self, onnx: bytes, meta: dict[str, Any], *, threads: int = 1) -> None:
        try:
            self.context_length = int(meta["context_length"])
            self.max_horizon = int(meta["max_horizon"])
            self.residuals = [
                np.asarray(r, dtype=np.float64) for r in meta["residuals_per_horizon"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"meta.json lacks a usable {exc} entry") from None
        self.widths = HalfWidths(self.residuals)
        self.session = _session(onnx, threads)

    def forecast(self, closes: FloatArray, horizon: int, level: int) -> Forecast:
        """Forecast ``horizon`` days after the last of ``closes`` (its tail is the context)."""
        if horizon > self.max_horizon:
            raise HorizonExceedsModelError(
                f"horizon {horizon} exceeds this model's {self.max_horizon} days; "
                f"train with BTCP_MAX_HORIZON >= {horizon}"
            )
        return self.run(closes).forecast(horizon, level)

    def run(self, closes: FloatArray) -> ForecastPath:
        """One model run: the whole path after the last of ``closes``, every level derivable."""
        window = np.ascontiguousarray(closes[-self.context_length :], dtype=np.float64)[None, :]
        if not np.all(np.isfinite(window)):
            # Only data stored before ingest refused non-finite values can get here.
            raise NoDataError(
                "the stored closes this forecast starts from include a non-finite value: "
                "re-ingest those days"
            )
        # [1, context] -> [1, max_horizon] price levels
        output = self.session.run(["forecast"], {"closes": window})[0]
        values = np.asarray(output, dtype=np.float64)[0, : self.max_horizon]
        return ForecastPath(values, float(window[0, -1]), self.widths)


def _session(onnx: bytes, threads: int) -> ort.InferenceSession:
    """An ONNX Runtime CPU session, or ArtifactError when the graph is unusable."""
    options = ort.SessionOptions()
    # One thread per request: the API scales with processes, not intra-op threads.
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ArtifactError(f"model.onnx cannot be loaded: {str(exc).splitlines()[0]}") from None
    names = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
    if names != (["closes"], ["forecast"]):
        raise ArtifactError(f"model.onnx has inputs/outputs {names}, expected closes -> forecast")
    return session
