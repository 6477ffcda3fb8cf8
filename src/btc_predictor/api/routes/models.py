"""Model versions and training jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query

from btc_predictor.api import schemas as s
from btc_predictor.api.deps import Authorized, EngineDep, NowDep, ServingDep
from btc_predictor.services import versions
from btc_predictor.shapes.common import ASSET_PATTERN, MAX_VERSION_ID, ModelFamily, ModelName
from btc_predictor.shapes.requests import RollbackRequest
from btc_predictor.shapes.results import ModelVersion, ModelVersionDetail

router = APIRouter(prefix="/models", tags=["models"])
VersionId = Annotated[int, Path(ge=1, le=MAX_VERSION_ID)]


@router.get("", response_model=list[ModelVersion])
def list_models(
    engine: EngineDep,
    asset: Annotated[str | None, Query(pattern=ASSET_PATTERN)] = None,
    model: ModelName | None = None,
    family: ModelFamily | None = None,
) -> list[ModelVersion]:
    """Model versions newest first, each with its family and flagged active (in it) or not."""
    return versions.list_models(engine, asset=asset, model=model, family=family)


@router.get("/{version_id}", response_model=ModelVersionDetail, responses=s.errors_for(404))
def show_model(engine: EngineDep, version_id: VersionId) -> ModelVersionDetail:
    """One version with its metrics and promotions."""
    return versions.show_model(engine, version_id)


@router.post(
    "/{version_id}/promote",
    response_model=ModelVersion,
    dependencies=[Authorized],
    responses=s.errors_for(401, 404),
)
def promote(
    engine: EngineDep, serving: ServingDep, now: NowDep, version_id: VersionId
) -> ModelVersion:
    """Activate a version for its asset and family (served from this process's next request)."""
    result = versions.promote_model(engine, version_id, now=now, reason="promoted by hand (api)")
    serving.refresh()  # read-your-writes here; other processes follow within BTCP_STATE_POLL
    return result


@router.post(
    "/{asset}/rollback",
    response_model=ModelVersion,
    dependencies=[Authorized],
    responses=s.errors_for(401, 404, 409),
)
def rollback(
    engine: EngineDep,
    serving: ServingDep,
    now: NowDep,
    asset: Annotated[str, Path(pattern=ASSET_PATTERN)],
    body: Annotated[RollbackRequest | None, Body()] = None,
) -> ModelVersion:
    """Reactivate the previously promoted version of the body's ``family`` (default
    ``price``; 409 when there is none). The other family's active version is untouched."""
    family = (body or RollbackRequest()).family
    result = versions.rollback_model(engine, asset, now=now, family=family)
    serving.refresh()  # read-your-writes here; other processes follow within BTCP_STATE_POLL
    return result
