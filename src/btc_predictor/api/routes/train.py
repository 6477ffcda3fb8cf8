"""Training: queue a training job (``train``'s flags as the body); the job says how it went."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from btc_predictor.api import schemas as s
from btc_predictor.api.deps import Authorized, SubmitDep
from btc_predictor.shapes.requests import TrainRequest
from btc_predictor.shapes.results import JobView

router = APIRouter(prefix="/train", tags=["training"])


@router.post(
    "",
    status_code=202,
    response_model=JobView,
    dependencies=[Authorized],
    responses=s.errors_for(401, 404, 409),
)
def train(submit: SubmitDep, body: TrainRequest) -> dict[str, Any]:
    """Queue a training job; ``Location`` points at it. One per (asset, model) at a time."""
    return submit("train", body, location="/api/v1/jobs/{id}")
