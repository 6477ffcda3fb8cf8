"""Model versions and training jobs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from btc_predictor.api import schemas as s
from btc_predictor.api.deps import Authorized, EngineDep, NowDep, ServingDep, SubmitDep
from btc_predictor.services import versions
from btc_predictor.shapes.common import ASSET_PATTERN, MAX_VERSION_ID, ModelName
from btc_predictor.shapes.requests import TrainRequest

router = APIRouter(tags=["models"])
VersionId = Annotated[int, Path(ge=1, le=MAX_VERSION_ID)]


@router.post(
    "/train",
    status_code=202,
    response_model=s.JobResponse,
    dependencies=[Authorized],
    responses=s.errors_for(401, 404, 409),
)
def train(submit: SubmitDep, body: TrainRequest) -> dict[str, Any]:
    """Queue a training job; ``Location`` points at it. One per (asset, model) at a time."""
    return submit("train", body, location="/api/v1/jobs/{id}")


@router.get("/models", response_model=list[s.ModelVersionResponse])
def list_models(
    engine: EngineDep,
    asset: Annotated[str | None, Query(pattern=ASSET_PATTERN)] = None,
    model: ModelName | None = None,
) -> list[dict[str, Any]]:
    """Model versions newest first, each flagged active or not."""
    return versions.list_models(engine, asset=asset, model=model)


@router.get(
    "/models/{version_id}", response_model=s.ModelVersionResponse, responses=s.errors_for(404)
)
def show_model(engine: EngineDep, version_id: VersionId) -> dict[str, Any]:
    """One version with its metrics and promotions."""
    return versions.show_model(engine, version_id)


@router.post(
    "/models/{version_id}/promote",
    response_model=s.ModelVersionResponse,
    dependencies=[Authorized],
    responses=s.errors_for(401, 404),
)
def promote(
    engine: EngineDep, serving: ServingDep, now: NowDep, version_id: VersionId
) -> dict[str, Any]:
    """Activate a version for its asset (this process serves it from the next request)."""
    result = versions.promote_model(engine, version_id, now=now, reason="promoted by hand (api)")
    serving.refresh()  # read-your-writes here; other processes follow within BTCP_STATE_POLL
    return result


@router.post(
    "/models/{asset}/rollback",
    response_model=s.ModelVersionResponse,
    dependencies=[Authorized],
    responses=s.errors_for(401, 404, 409),
)
def rollback(
    engine: EngineDep,
    serving: ServingDep,
    now: NowDep,
    asset: Annotated[str, Path(pattern=ASSET_PATTERN)],
) -> dict[str, Any]:
    """Reactivate the previously promoted version (409 when there is none)."""
    result = versions.rollback_model(engine, asset, now=now)
    serving.refresh()  # read-your-writes here; other processes follow within BTCP_STATE_POLL
    return result
