"""Model-version use cases: list, show, promote, roll back, export, prune (per family)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from btc_predictor.errors import InvalidInputError
from btc_predictor.shapes.results import ModelVersion, ModelVersionDetail, Promotion
from btc_predictor.sources.base import parse_asset
from btc_predictor.storage import model_store as store
from btc_predictor.storage.db import read_session, write_session
from btc_predictor.storage.tables import ModelVersionRow


def version_view(row: ModelVersionRow, *, active_id: int | None) -> ModelVersion:
    """The public view of a model version."""
    return ModelVersion(
        id=row.id,
        asset=row.asset,
        model=row.model,
        family=row.family,
        created_at=row.created_at,
        train_start=row.train_start,
        train_end=row.train_end,
        data_points=row.data_points,
        data_sha256=row.data_sha256,
        seed=row.seed,
        training_duration=row.training_duration,
        holdout_mase=row.holdout_mase,
        active=row.id == active_id,
        pruned=row.pruned_at is not None,
        metrics=row.summary.get("metrics"),
        baseline=row.summary.get("baseline"),
    )


def list_models(
    engine: Engine,
    *,
    asset: str | None = None,
    model: str | None = None,
    family: str | None = None,
) -> list[ModelVersion]:
    """Versions newest first, each flagged active (in its family) or not."""
    symbol = parse_asset(asset).symbol if asset else None
    with read_session(engine) as session:
        rows = store.list_versions(session=session, asset=symbol, model=model, family=family)
        actives = {
            (a, f): store.active_version_id(session=session, asset=a, family=f)
            for a, f in {(r.asset, r.family) for r in rows}
        }
        return [version_view(r, active_id=actives[r.asset, r.family]) for r in rows]


def show_model(engine: Engine, version_id: int) -> ModelVersionDetail:
    """One version with its stored summary and promotions history."""
    with read_session(engine) as session:
        row = store.get_version(session=session, version_id=version_id)
        active = store.active_version_id(session=session, asset=row.asset, family=row.family)
        return ModelVersionDetail(
            **dict(version_view(row, active_id=active)),
            summary=row.summary,
            promotions=_history(session, row, version_id),
        )


def _history(session: Session, row: ModelVersionRow, version_id: int) -> list[Promotion]:
    """Promotions of one version, newest first."""
    return [
        Promotion(promoted_at=p.promoted_at, reason=p.reason, rolled_back_at=p.rolled_back_at)
        for p in store.promotion_history(session=session, asset=row.asset, family=row.family)
        if p.version_id == version_id
    ]


def promote_model(engine: Engine, version_id: int, *, now: datetime, reason: str) -> ModelVersion:
    """Activate a version by hand (its artifacts are verified first)."""
    with write_session(engine) as session:
        store.load_artifacts(session=session, version_id=version_id)
        store.promote(session=session, version_id=version_id, reason=reason, now=now)
        row = store.get_version(session=session, version_id=version_id)
        return version_view(row, active_id=version_id)


def rollback_model(
    engine: Engine, asset: str, *, now: datetime, family: str = store.PRICE
) -> ModelVersion:
    """Reactivate the previously promoted version of (``asset``, ``family``)."""
    symbol = parse_asset(asset).symbol
    if family not in store.FAMILIES:
        raise InvalidInputError(f"family must be one of {', '.join(store.FAMILIES)}")
    with write_session(engine) as session:
        target = store.rollback_target_id(session=session, asset=symbol, family=family)
        if target is not None:
            store.load_artifacts(session=session, version_id=target)
        active = store.rollback(session=session, asset=symbol, now=now, family=family)
        return version_view(store.get_version(session=session, version_id=active), active_id=active)


def export_model(engine: Engine, version_id: int, directory: Path) -> list[Path]:
    """Write a version's artifacts (model.onnx if it has one, weights, meta) into ``directory``."""
    if directory.exists() and not directory.is_dir():
        raise InvalidInputError(f"{directory} exists and is not a directory")
    with read_session(engine) as session:
        return store.export_version(session=session, version_id=version_id, directory=directory)


def active_version(engine: Engine, asset: str) -> ModelVersionRow | None:
    """The active price version row of ``asset`` (what /predict serves), or None."""
    with read_session(engine) as session:
        active = store.active_version_id(session=session, asset=asset)
        return None if active is None else store.get_version(session=session, version_id=active)


def active_version_id(engine: Engine, asset: str, family: str = store.PRICE) -> int | None:
    """The id of the active version of (``asset``, ``family``), or None."""
    with read_session(engine) as session:
        return store.active_version_id(session=session, asset=asset, family=family)
