"""Versioned model artifacts (ONNX + safetensors + JSON) stored in the database.

A version and its three artifacts are written in one transaction; every load verifies the
artifacts' checksums (and meta.json's record of the other two) before anything is used, so a
damaged version raises :class:`ArtifactError` and is never half-loaded. Every version has a
family (``price`` or ``risk``); promotions form a history per (asset, family): the newest entry
not rolled back names the active version of that family, so promoting a risk version never
changes which price version serves. Risk versions may have no model.onnx (their serving path is
numpy over weights.safetensors + meta.json).
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
PRICE, RISK = "price", "risk"
FAMILIES = (PRICE, RISK)


@dataclass(frozen=True, slots=True)
class ArtifactSet:
    """The files of a version, as bytes (meta parsed); ``onnx`` is None for a numpy-served one."""

    onnx: bytes | None
    weights: bytes
    meta: dict[str, Any]

    def files(self) -> dict[str, bytes]:
        """The binary artifacts present, by file name (meta.json excluded)."""
        found = {ONNX: self.onnx, WEIGHTS: self.weights}
        return {name: content for name, content in found.items() if content is not None}

    def require_onnx(self, version_id: int) -> bytes:
        """model.onnx, or ArtifactError when this version has none (a risk version)."""
        if self.onnx is None:
            raise ArtifactError(f"version {version_id} has no model.onnx")
        return self.onnx


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
    family: str = PRICE


def sha256(content: bytes) -> str:
    """Hex SHA-256 of ``content``."""
    return hashlib.sha256(content).hexdigest()


def save_version(*, session: Session, version: NewVersion, artifacts: ArtifactSet) -> int:
    """Insert a version and its artifacts (inside the caller's transaction); returns its id."""
    if version.family not in FAMILIES:
        raise ArtifactError(f"unknown model family `{version.family}`")
    if version.family == PRICE and artifacts.onnx is None:
        raise ArtifactError("a price version needs model.onnx")
    row = ModelVersionRow(
        asset=version.asset,
        model=version.model,
        family=version.family,
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
    binaries = artifacts.files()
    meta = {
        **artifacts.meta,
        "version": row.id,
        "family": version.family,
        "checksums": {name: sha256(content) for name, content in binaries.items()},
    }
    files = {**binaries, META: _dump(meta)}
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
    meta = _parse_meta(_verified(rows, META, version_id), version_id)
    files = {
        name: _verified(rows, name, version_id)
        for name in _expected_binaries(version.family, meta, rows)
    }
    for name, content in files.items():
        if meta.get("checksums", {}).get(name) != sha256(content):
            raise ArtifactError(f"{name} of version {version_id} does not match meta.json")
    return ArtifactSet(files.get(ONNX), files[WEIGHTS], meta)


def _expected_binaries(
    family: str, meta: dict[str, Any], rows: dict[str, ModelArtifactRow]
) -> tuple[str, ...]:
    """The binary files a version must have: model.onnx is optional for a risk version only,
    and required there too once meta.json or the stored rows say it was written."""
    checksums = meta.get("checksums", {})
    has_onnx = family != RISK or ONNX in rows or (isinstance(checksums, dict) and ONNX in checksums)
    return (ONNX, WEIGHTS) if has_onnx else (WEIGHTS,)


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
    *,
    session: Session,
    asset: str | None = None,
    model: str | None = None,
    family: str | None = None,
) -> list[ModelVersionRow]:
    """Versions, newest first, optionally for one asset, model kind and/or family."""
    query = select(ModelVersionRow).order_by(ModelVersionRow.id.desc())
    if asset is not None:
        query = query.where(ModelVersionRow.asset == asset)
    if model is not None:
        query = query.where(ModelVersionRow.model == model)
    if family is not None:
        query = query.where(ModelVersionRow.family == family)
    return list(session.scalars(query))


def _live_promotions(session: Session, asset: str, family: str) -> list[PromotionRow]:
    """Promotions of (``asset``, ``family``) not rolled back, newest first."""
    query = (
        select(PromotionRow)
        .where(
            PromotionRow.asset == asset,
            PromotionRow.family == family,
            PromotionRow.rolled_back_at.is_(None),
        )
        .order_by(PromotionRow.id.desc())
    )
    return list(session.scalars(query))


def promoted_assets(*, session: Session, family: str = PRICE) -> list[str]:
    """Every asset that ever had a version of ``family`` promoted."""
    query = select(PromotionRow.asset).where(PromotionRow.family == family).distinct()
    return list(session.scalars(query))


def active_version_id(*, session: Session, asset: str, family: str = PRICE) -> int | None:
    """The active version of (``asset``, ``family``) (None when none was ever promoted).

    The default is ``price``: everything that serves prices (forecast, /predict, health,
    ledger, metrics) asks for the price family and never sees a risk promotion."""
    live = _live_promotions(session, asset, family)
    return live[0].version_id if live else None


def pick_version(
    *, session: Session, asset: str, family: str, model: str | None, default_model: str = ""
) -> int:
    """The active version of (``asset``, ``family``), or the newest unpruned one of kind
    ``model``; NoModelError naming the `train` command that makes one (for the risk family
    without ``model``, of kind ``default_model``)."""
    if model is None:
        found = active_version_id(session=session, asset=asset, family=family)
    else:
        rows = list_versions(session=session, asset=asset, model=model, family=family)
        found = next((r.id for r in rows if r.pruned_at is None), None)
    if found is None:
        raise NoModelError(_no_version(asset, family, model, default_model))
    return found


def _no_version(asset: str, family: str, model: str | None, default_model: str) -> str:
    """What is missing and the `train` command that makes it (the texts users know)."""
    if family == RISK:
        train = f"--model {model or default_model} --asset {asset}"
    else:
        train = f"--asset {asset}" + ("" if model is None else f" --model {model}")
    if model is not None:
        return f"no {model} version for {asset}: run `btc-predictor train {train}`"
    active = "active risk model" if family == RISK else "active model"
    return f"no {active} for {asset}: run `btc-predictor train {train}`"


def rollback_target_id(*, session: Session, asset: str, family: str = PRICE) -> int | None:
    """The version a rollback of (asset, family) would reactivate (the previous live one)."""
    live = _live_promotions(session, asset, family)
    return next((p.version_id for p in live[1:] if p.version_id != live[0].version_id), None)


def promote(*, session: Session, version_id: int, reason: str, now: datetime) -> None:
    """Make a version the active one of its (asset, family) (a new promotions entry)."""
    version = get_version(session=session, version_id=version_id)
    if version.pruned_at is not None:
        raise ArtifactError(f"version {version_id} was pruned and cannot be promoted")
    session.add(
        PromotionRow(
            asset=version.asset,
            family=version.family,
            version_id=version_id,
            promoted_at=now,
            reason=reason,
            rolled_back_at=None,
        )
    )
    session.flush()


def rollback(*, session: Session, asset: str, now: datetime, family: str = PRICE) -> int:
    """Undo the newest promotion of (``asset``, ``family``); returns the version active again."""
    live = _live_promotions(session, asset, family)
    target = rollback_target_id(session=session, asset=asset, family=family)
    if target is None:
        raise NoModelError(
            f"{asset} has no earlier promoted version ({family} family) to roll back to"
        )
    for promotion in live:
        if promotion.version_id == target:
            break
        promotion.rolled_back_at = now
    session.flush()
    return target


def promotion_history(
    *, session: Session, asset: str, family: str | None = None
) -> list[PromotionRow]:
    """Every promotion of ``asset`` (of one family, or all), newest first (rolled back too)."""
    query = select(PromotionRow).where(PromotionRow.asset == asset)
    if family is not None:
        query = query.where(PromotionRow.family == family)
    return list(session.scalars(query.order_by(PromotionRow.id.desc())))


def protected_versions(*, session: Session, asset: str) -> set[int]:
    """Versions of ``asset`` pruning must keep: the active version and the rollback target of
    every family, and every risk version a kept (unpruned) price version references through
    its meta's ``sigma_source`` (its intervals are normalised by that version's σ̂)."""
    found = set()
    for family in FAMILIES:
        found.add(active_version_id(session=session, asset=asset, family=family))
        found.add(rollback_target_id(session=session, asset=asset, family=family))
    return {v for v in found if v is not None} | sigma_sources(session=session, asset=asset)


def sigma_sources(*, session: Session, asset: str) -> set[int]:
    """The risk versions named by the ``sigma_source`` of ``asset``'s unpruned price versions
    (read from their meta.json rows; a damaged one names none)."""
    query = (
        select(ModelArtifactRow.content)
        .join(ModelVersionRow, ModelVersionRow.id == ModelArtifactRow.version_id)
        .where(
            ModelVersionRow.asset == asset,
            ModelVersionRow.family == PRICE,
            ModelVersionRow.pruned_at.is_(None),
            ModelArtifactRow.name == META,
        )
    )
    found = set()
    for content in session.scalars(query):
        try:
            source = json.loads(bytes(content)).get("sigma_source")
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            continue
        if isinstance(source, dict) and isinstance(source.get("version"), int):
            found.add(int(source["version"]))
    return found


def prune(*, session: Session, asset: str, model: str, keep: int, now: datetime) -> list[int]:
    """Drop the artifacts of all but the ``keep`` newest versions of (asset, model).

    A model kind belongs to one family, so this prunes within it. :func:`protected_versions`
    are never pruned; pruned versions keep their metadata (so the promotions history stays
    readable) but lose their artifacts.
    """
    protected = protected_versions(session=session, asset=asset)
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
    """Write a verified version's files into ``directory`` (each written atomically): all
    three, or weights.safetensors and meta.json for a risk version without model.onnx."""
    artifacts = load_artifacts(session=session, version_id=version_id)
    meta = session.scalars(
        select(ModelArtifactRow.content).where(
            ModelArtifactRow.version_id == version_id, ModelArtifactRow.name == META
        )
    ).one()
    files = {**artifacts.files(), META: bytes(meta)}
    directory.mkdir(parents=True, exist_ok=True)
    return [_write_atomic(directory / name, files[name]) for name in ARTIFACTS if name in files]


def _write_atomic(path: Path, content: bytes) -> Path:
    """Write via a temporary file and rename, so a crash never leaves half a file."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "wb") as stream:
        stream.write(content)
    os.replace(temp, path)
    return path


# --- what ``model=`` resolves to, for the serving cache's state poll (issue 14) ---


def usable_versions(
    *, session: Session, family: str = PRICE
) -> dict[str, dict[str, tuple[int, int]]]:
    """Per asset and model kind of ``family``: the newest unpruned version and how many are
    unpruned (what ``model=`` forecasts, or risk forecasts, resolve to)."""
    query = (
        select(
            ModelVersionRow.asset, ModelVersionRow.model, func.max(ModelVersionRow.id), func.count()
        )
        .where(ModelVersionRow.pruned_at.is_(None), ModelVersionRow.family == family)
        .group_by(ModelVersionRow.asset, ModelVersionRow.model)
    )
    found: dict[str, dict[str, tuple[int, int]]] = {}
    for asset, model, newest, count in session.execute(query):
        found.setdefault(asset, {})[model] = (newest, count)
    return found
