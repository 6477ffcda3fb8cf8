"""Job kinds and the params shape each one stores: the one list of job kinds."""

from __future__ import annotations

from types import MappingProxyType
from typing import Literal, get_args

from btc_predictor.shapes.common import Shape
from btc_predictor.shapes.requests import BacktestRequest, IngestJob, RetrainRequest, TrainRequest

# The job kinds: the one list (JOB_PARAMS gives each its params shape; a test keeps them equal).
JobKind = Literal["ingest", "train", "backtest", "retrain"]
JOB_KINDS: tuple[str, ...] = get_args(JobKind)
JOB_PARAMS: MappingProxyType[str, type[Shape]] = MappingProxyType(
    {
        "ingest": IngestJob,
        "train": TrainRequest,
        "backtest": BacktestRequest,
        "retrain": RetrainRequest,
    }
)
