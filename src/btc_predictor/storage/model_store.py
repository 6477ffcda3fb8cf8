"""Versioned model artifacts (ONNX + safetensors + JSON) stored in the database.

A version and its three artifacts are written in one transaction; every load verifies the
artifacts' checksums (and meta.json's record of the other two) before anything is used, so a
damaged version raises :class:`ArtifactError` and is never half-loaded. Promotions form a
history per asset: the newest entry not rolled back names the active version.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from btc_predictor.errors import ArtifactError, ModelNotFoundError, NoModelError
from btc_predictor.storage.tables import ModelArtifactRow, ModelVersionRow, PromotionRow

ONNX, WEIGHTS, META = "model.onnx", "weights.safetensors", "meta.json"
ARTIFACTS = (ONNX, WEIGHTS, META)


@dataclass(frozen=True, slots=True)
class ArtifactSet:
    """The three files of a version, as bytes (meta parsed)."""

    onnx: bytes
    weights: bytes
    meta: dict[str, Any]


@dataclass(frozen=True, slots=True)
class NewVersion:
    """Everything recorded about a freshly trained version besides its artifacts."""

    asset: str
    model: str
    created_at: datetime
    train_start: date
    train_end: date
    data_points: int
    data_sha256: str
    seed: int
    training_duration: float
    holdout_mase: float | None
    summary: dict[str, Any]


def sha256(content: bytes) -> str:
    """Hex SHA-256 of ``content``."""
    return hashlib.sha256(content).hexdigest()


def save_version(*, session: Session, version: NewVersion, artifacts: ArtifactSet) -> int:
    """Insert a version and its artifacts (inside the caller's transaction); returns its id."""
    row = ModelVersionRow(
        asset=version.asset,
        model=version.model,
        created_at=version.created_at,
        train_start=version.train_start,
        train_end=version.train_end,
        data_points=version.data_points,
        data_sha256=version.data_sha256,
        seed=version.seed,
        training_duration=version.training_duration,
        holdout_mase=version.holdout_mase,
        summary=version.summary,
        pruned_at=None,
    )
    session.add(row)
    session.flush()
    meta = {
        **artifacts.meta,
        "version": row.id,
        "checksums": {
            ONNX: sha256(artifacts.onnx),
            WEIGHTS: sha256(artifacts.weights),
        },
    }
    files = {ONNX: artifacts.onnx, WEIGHTS: artifacts.weights, META: _dump(meta)}
    for name, content in files.items():
        session.add(
            ModelArtifactRow(
                version_id=row.id,
                name=name,
                sha256=sha256(content),
                size=len(content),
                content=content,
            )
        )
    session.flush()
    return row.id


def _dump(meta: dict[str, Any]) -> bytes:
    """meta.json bytes (stable key order, so checksums are reproducible), strict JSON only."""
    try:
        return json.dumps(meta, sort_keys=True, indent=1, allow_nan=False).encode()
    except ValueError:  # NaN or ±inf: JSON has no spelling for them
        where = _non_finite_at(meta) or "meta"
        raise ArtifactError(f"meta.json would hold a non-finite number at `{where}`") from None


def _non_finite_at(value: Any, path: str = "meta") -> str | None:
    """The key path of the first NaN or infinite float inside ``value``, or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    if isinstance(value, dict):
        children = [(f"{path}.{key}", item) for key, item in value.items()]
    elif isinstance(value, list | tuple):
        children = [(f"{path}[{index}]", item) for index, item in enumerate(value)]
    else:
        return None
    return next((found for at, item in children if (found := _non_finite_at(item, at))), None)


def get_version(*, session: Session, version_id: int) -> ModelVersionRow:
    """A version row, or ModelNotFoundError."""
    row = session.get(ModelVersionRow, version_id)
    if row is None:
        raise ModelNotFoundError(f"no model version {version_id} (see `btc-predictor models list`)")
    return row


def load_artifacts(*, session: Session, version_id: int) -> ArtifactSet:
    """The verified artifacts of a version; ArtifactError if anything is missing or damaged."""
    version = get_version(session=session, version_id=version_id)
    if version.pruned_at is not None:
        raise ArtifactError(f"version {version_id} was pruned; its artifacts are gone")
    rows = {
        r.name: r
        for r in session.scalars(
            select(ModelArtifactRow).where(ModelArtifactRow.version_id == version_id)
        )
    }
    files = {name: _verified(rows, name, version_id) for name in ARTIFACTS}
    meta = _parse_meta(files[META], version_id)
    for name in (ONNX, WEIGHTS):
        if meta.get("checksums", {}).get(name) != sha256(files[name]):
            raise ArtifactError(f"{name} of version {version_id} does not match meta.json")
    return ArtifactSet(files[ONNX], files[WEIGHTS], meta)


def _verified(rows: dict[str, ModelArtifactRow], name: str, version_id: int) -> bytes:
    """One artifact's bytes after its size and checksum check."""
    row = rows.get(name)
    if row is None:
        raise ArtifactError(f"version {version_id} is missing {name}")
    content = bytes(row.content)
    if len(content) != row.size or sha256(content) != row.sha256:
        raise ArtifactError(f"{name} of version {version_id} is damaged (checksum mismatch)")
    return content


def _parse_meta(content: bytes, version_id: int) -> dict[str, Any]:
    """meta.json as a dict, or ArtifactError."""
    try:
        meta = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"meta.json of version {version_id} is not JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"meta.json of version {version_id} is not a JSON object")
    return meta


def list_versions(
    *, session: Session, asset: str | None = None, model: str | None = None
) -> list[ModelVersionRow]:
    """Versions, newest first, optionally for one asset and/or model kind."""
    query = select(ModelVersionRow).order_by(ModelVersionRow.id.desc())
    if asset is not None:
        query = query.where(ModelVersionRow.asset == asset)
    if model is not None:
        query = query.where(ModelVersionRow.model == model)
    return list(session.scalars(query))


def _live_promotions(session: Session, asset: str) -> list[PromotionRow]:
    """Promotions of ``asset`` not rolled back, newest first."""
    query = (
        select(PromotionRow)
        .where(PromotionRow.asset == asset, PromotionRow.rolled_back_at.is_(None))
        .order_by(PromotionRow.id.desc())
    )
    return list(session.scalars(query))


def promoted_assets(*, session: Session) -> list[str]:
    """Every asset that ever had a version promoted."""
    return list(session.scalars(select(PromotionRow.asset).distinct()))


def active_version_id(*, session: Session, asset: str) -> int | None:
    """The active version of ``asset`` (None when nothing was ever promoted)."""
    live = _live_promotions(session, asset)
    return live[0].version_id if live else None


def rollback_target_id(*, session: Session, asset: str) -> int | None:
    """The version a rollback would reactivate (the previous live promotion)."""
    live = _live_promotions(session, asset)
    return next((p.version_id for p in live[1:] if p.version_id != live[0].version_id), None)


def promote(*, session: Session, version_id: int, reason: str, now: datetime) -> None:
    """Make a version the active one of its asset (a new promotions entry)."""
    version = get_version(session=session, version_id=version_id)
    if version.pruned_at is not None:
        raise ArtifactError(f"version {version_id} was pruned and cannot be promoted")
    session.add(
        PromotionRow(
            asset=version.asset,
            version_id=version_id,
            promoted_at=now,
            reason=reason,
            rolled_back_at=None,
        )
    )
    session.flush()


def rollback(*, session: Session, asset: str, now: datetime) -> int:
    """Undo the newest promotion of ``asset``; returns the version active again."""
    live = _live_promotions(session, asset)
    target = rollback_target_id(session=session, asset=asset)
    if target is None:
        raise NoModelError(f"{asset} has no earlier promoted version to roll back to")
    for promotion in live:
        if promotion.version_id == target:
            break
        promotion.rolled_back_at = now
    session.flush()
    return target


def promotion_history(*, session: Session, asset: str) -> list[PromotionRow]:
    """Every promotion of ``asset``, newest first (rolled-back ones included)."""
    query = select(PromotionRow).where(PromotionRow.asset == asset).order_by(PromotionRow.id.desc())
    return list(session.scalars(query))


def prune(*, session: Session, asset: str, model: str, keep: int, now: datetime) -> list[int]:
    """Drop the artifacts of all but the ``keep`` newest versions of (asset, model).

    The active version and its rollback target are never pruned; pruned versions keep their
    metadata (so the promotions history stays readable) but lose their artifacts.
    """
    protected = {
        active_version_id(session=session, asset=asset),
        rollback_target_id(session=session, asset=asset),
    }
    versions = [
        v for v in list_versions(session=session, asset=asset, model=model) if v.pruned_at is None
    ]
    doomed = [v for v in versions[keep:] if v.id not in protected]
    for version in doomed:
        session.execute(delete(ModelArtifactRow).where(ModelArtifactRow.version_id == version.id))
        version.pruned_at = now
    session.flush()
    return [v.id for v in doomed]


def export_version(*, session: Session, version_id: int, directory: Path) -> list[Path]:
    """Write a verified version's three files into ``directory`` (each written atomically)."""
    artifacts = load_artifacts(session=session, version_id=version_id)
    rows = {
        r.name: bytes(r.content)
        for r in session.scalars(
            select(ModelArtifactRow).where(ModelArtifactRow.version_id == version_id)
        )
    }
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ARTIFACTS:
        content = (
            rows[name] if name == META else (artifacts.onnx if name == ONNX else artifacts.weights)
        )
        paths.append(_write_atomic(directory / name, content))
    return paths


def _write_atomic(path: Path, content: bytes) -> Path:
    """Write via a temporary file and rename, so a crash never leaves half a file."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "wb") as stream:
        stream.write(content)
    os.replace(temp, path)
    return path


# --- what ``model=`` resolves to, for the serving cache's state poll (issue 14) ---


def usable_versions(*, session: Session) -> dict[str, dict[str, tuple[int, int]]]:
    """Per asset and model kind: the newest unpruned version and how many are unpruned."""
    query = (
        select(
            ModelVersionRow.asset, ModelVersionRow.model, func.max(ModelVersionRow.id), func.count()
        )
        .where(ModelVersionRow.pruned_at.is_(None))
        .group_by(ModelVersionRow.asset, ModelVersionRow.model)
    )
    found: dict[str, dict[str, tuple[int, int]]] = {}
    for asset, model, newest, count in session.execute(query):
        found.setdefault(asset, {})[model] = (newest, count)
    return found
