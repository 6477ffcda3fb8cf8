"""Job params: each kind's shape (``shapes.jobs.JOB_PARAMS``), checked before a job exists and
again, in JSON mode, before it runs, so bad input is refused at the door (HTTP 422)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine

from btc_predictor.config import Settings
from btc_predictor.errors import InvalidInputError
from btc_predictor.services.backtest import admit_backtest
from btc_predictor.services.ingest import require_known_asset
from btc_predictor.services.training import admit_fit
from btc_predictor.shapes.common import Shape, first_problem
from btc_predictor.shapes.jobs import JOB_KINDS, JOB_PARAMS
from btc_predictor.shapes.requests import (
    BacktestRequest,
    IngestJob,
    ModelFit,
    RetrainRequest,
    TrainRequest,
)


def check_kind(kind: str) -> str:
    """``kind`` if it is a job kind, else InvalidInputError."""
    if kind not in JOB_PARAMS:
        raise InvalidInputError(f"unknown job kind `{kind}` (use one of: {', '.join(JOB_KINDS)})")
    return kind


def parse_params(kind: str, params: Mapping[str, Any] | BaseModel) -> Shape:
    """The kind's params shape, validated as stored JSON (so ISO dates parse, strictly)."""
    shape = JOB_PARAMS[check_kind(kind)]
    # A shape passed in keeps what was set on it: stored params record what was asked.
    text = (
        params.model_dump_json(exclude_unset=True)
        if isinstance(params, BaseModel)
        else json.dumps(params)
    )
    try:
        return shape.model_validate_json(text)
    except ValidationError as exc:
        where, problem = first_problem(exc)
        accepted = ", ".join(shape.model_fields)
        raise InvalidInputError(
            f"{kind} parameter `{where or 'params'}`: {problem} (accepted: {accepted})"
        ) from None


def normalize_params(settings: Settings, kind: str, params: Mapping[str, Any] | BaseModel) -> Shape:
    """Checked params with the model default filled in (so the job records what it runs).

    A train or retrain without a model stays without one: it trains both defaults (risk,
    then price) when it runs, which its params say by naming no model."""
    request = parse_params(kind, params)
    trains_defaults = isinstance(request, TrainRequest | RetrainRequest)
    if isinstance(request, ModelFit) and request.model is None and not trains_defaults:
        request = request.model_copy(update={"model": settings.default_model})
    return request


def admit(settings: Settings, engine: Engine, request: Shape, *, now: datetime) -> None:
    """Refuse at the door a job that can only fail (unknown asset, no data, a future start,
    a horizon beyond the trained ones), with the error table's codes."""
    if isinstance(request, IngestJob):
        require_known_asset(settings, engine, request.asset)
    elif isinstance(request, BacktestRequest):
        admit_backtest(settings, engine, request, now=now)
    elif isinstance(request, ModelFit):
        admit_fit(settings, engine, request, now=now)
