"""Job kinds and the params shape each one stores: the one list of job kinds."""

from __future__ import annotations

from types import MappingProxyType

from btc_predictor.shapes.common import Shape
from btc_predictor.shapes.requests import BacktestRequest, IngestJob, RetrainRequest, TrainRequest

JOB_PARAMS: MappingProxyType[str, type[Shape]] = MappingProxyType(
    {
        "ingest": IngestJob,
        "train": TrainRequest,
        "backtest": BacktestRequest,
        "retrain": RetrainRequest,
    }
)
JOB_KINDS: tuple[str, ...] = tuple(JOB_PARAMS)
