"""Model store: one-transaction versions, verified loads, promotions history, pruning, export."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, update
from sqlalchemy.exc import StatementError

from btc_predictor.errors import ArtifactError, ModelNotFoundError, NoModelError
from btc_predictor.storage import model_store as store
from btc_predictor.storage.db import read_session, write_session
from btc_predictor.storage.tables import ModelArtifactRow

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def new_version(
    engine: Engine, model: str = "lstm", asset: str = "BTC-USD", onnx: bytes = b"onnx-bytes"
) -> int:
    version = store.NewVersion(
        asset=asset,
        model=model,
        created_at=NOW,
        train_start=date(2018, 1, 1),
        train_end=date(2024, 12, 31),
        data_points=2557,
        data_sha256="ab" * 32,
        seed=0,
        training_duration=3.5,
        holdout_mase=1.001,
        summary={"metrics": {"mase": 1.001}},
    )
    artifacts = store.ArtifactSet(
        onnx, b"weights", {"model": model, "residuals_per_horizon": [[0.01, -0.02]]}
    )
    with write_session(engine) as session:
        return store.save_version(session=session, version=version, artifacts=artifacts)


def active(engine: Engine, asset: str = "BTC-USD") -> int | None:
    with read_session(engine) as session:
        return store.active_version_id(session=session, asset=asset)


def test_round_trip_records_checksums_in_meta(engine: Engine) -> None:
    vid = new_version(engine)
    with read_session(engine) as session:
        loaded = store.load_artifacts(session=session, version_id=vid)
    assert (loaded.onnx, loaded.weights) == (b"onnx-bytes", b"weights")
    assert loaded.meta["version"] == vid and loaded.meta["residuals_per_horizon"] == [[0.01, -0.02]]
    assert loaded.meta["checksums"] == {
        "model.onnx": store.sha256(b"onnx-bytes"),
        "weights.safetensors": store.sha256(b"weights"),
    }


def corrupt(engine: Engine, vid: int, name: str, **values: object) -> None:
    with write_session(engine) as session:
        session.execute(
            update(ModelArtifactRow)
            .where(ModelArtifactRow.version_id == vid, ModelArtifactRow.name == name)
            .values(**values)
        )


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda e, v: corrupt(e, v, "model.onnx", content=b"onnx-by"),
            "model.onnx of version .* is damaged",
        ),
        (
            lambda e, v: corrupt(e, v, "weights.safetensors", sha256="0" * 64),
            "weights.safetensors of version .* is damaged",
        ),
        (
            lambda e, v: corrupt(
                e, v, "meta.json", content=b"{not json", sha256=store.sha256(b"{not json"), size=9
            ),
            "meta.json of version .* is not JSON",
        ),
        (
            lambda e, v: corrupt(
                e, v, "model.onnx", content=b"other", sha256=store.sha256(b"other"), size=5
            ),
            "model.onnx of version .* does not match meta.json",
        ),
    ],
)
def test_damaged_artifacts_raise_and_leave_the_active_version_alone(
    engine: Engine, damage, message: str
) -> None:
    good, bad = new_version(engine), new_version(engine)
    with write_session(engine) as session:
        store.promote(session=session, version_id=good, reason="first", now=NOW)
    damage(engine, bad)
    with read_session(engine) as session, pytest.raises(ArtifactError, match=message):
        store.load_artifacts(session=session, version_id=bad)
    assert active(engine) == good


def test_missing_meta_and_unknown_version(engine: Engine) -> None:
    vid = new_version(engine)
    with write_session(engine) as session:
        session.execute(
            delete(ModelArtifactRow).where(
                ModelArtifactRow.version_id == vid, ModelArtifactRow.name == "meta.json"
            )
        )
    with read_session(engine) as session:
        with pytest.raises(ArtifactError, match=f"version {vid} is missing meta.json"):
            store.load_artifacts(session=session, version_id=vid)
        with pytest.raises(ModelNotFoundError, match="no model version 999"):
            store.load_artifacts(session=session, version_id=999)


def test_promotions_history_and_rollback(engine: Engine) -> None:
    a, b, c = new_version(engine), new_version(engine), new_version(engine)
    assert active(engine) is None
    with write_session(engine) as session:
        with pytest.raises(NoModelError):
            store.rollback(session=session, asset="BTC-USD", now=NOW)
        for i, vid in enumerate((a, b, c)):
            store.promote(
                session=session, version_id=vid, reason=f"step {i}", now=NOW + timedelta(hours=i)
            )
    assert active(engine) == c
    with write_session(engine) as session:
        assert store.rollback_target_id(session=session, asset="BTC-USD") == b
        assert store.rollback(session=session, asset="BTC-USD", now=NOW) == b
        assert store.rollback(session=session, asset="BTC-USD", now=NOW) == a
        with pytest.raises(NoModelError, match="no earlier promoted version"):
            store.rollback(session=session, asset="BTC-USD", now=NOW)
        history = store.promotion_history(session=session, asset="BTC-USD")
    assert [(p.version_id, p.rolled_back_at is not None) for p in history] == [
        (c, True),
        (b, True),
        (a, False),
    ]
    assert active(engine, "ETH-USD") is None


def test_promoted_assets_lists_each_asset_once(engine: Engine) -> None:
    ids = [new_version(engine), new_version(engine), new_version(engine, asset="ETH-USD")]
    new_version(engine, asset="SOL-USD")  # saved, never promoted
    with write_session(engine) as session:
        for vid in ids:
            store.promote(session=session, version_id=vid, reason="test", now=NOW)
    with read_session(engine) as session:
        assert sorted(store.promoted_assets(session=session)) == ["BTC-USD", "ETH-USD"]


def test_prune_keeps_newest_active_and_rollback_target(engine: Engine) -> None:
    ids = [new_version(engine) for _ in range(6)]
    other = new_version(engine, model="gru")
    with write_session(engine) as session:
        store.promote(session=session, version_id=ids[0], reason="old", now=NOW)
        store.promote(session=session, version_id=ids[1], reason="newer", now=NOW)
        pruned = store.prune(session=session, asset="BTC-USD", model="lstm", keep=2, now=NOW)
    assert sorted(pruned) == ids[2:4]
    with read_session(engine) as session:
        for vid in (ids[0], ids[1], ids[4], ids[5], other):
            store.load_artifacts(session=session, version_id=vid)
        with pytest.raises(ArtifactError, match="was pruned"):
            store.load_artifacts(session=session, version_id=ids[2])
        assert store.get_version(session=session, version_id=ids[2]).model == "lstm"


def test_export_writes_the_three_verified_files(engine: Engine, tmp_path: Path) -> None:
    vid = new_version(engine)
    with read_session(engine) as session:
        paths = store.export_version(session=session, version_id=vid, directory=tmp_path / "out")
    assert sorted(p.name for p in paths) == ["meta.json", "model.onnx", "weights.safetensors"]
    assert (tmp_path / "out" / "model.onnx").read_bytes() == b"onnx-bytes"
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["version"] == vid
    corrupt(engine, vid, "model.onnx", content=b"x")
    with read_session(engine) as session, pytest.raises(ArtifactError):
        store.export_version(session=session, version_id=vid, directory=tmp_path / "again")
    assert not (tmp_path / "again").exists()


def naive_version(summary: dict[str, object] | None = None) -> store.NewVersion:
    """A version row of a naive model with the given summary."""
    return store.NewVersion(
        asset="BTC-USD",
        model="naive",
        created_at=NOW,
        train_start=date(2018, 1, 1),
        train_end=date(2024, 12, 31),
        data_points=10,
        data_sha256="ab" * 32,
        seed=0,
        training_duration=0.1,
        holdout_mase=None,
        summary=summary or {},
    )


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_meta_with_a_non_finite_number_is_refused_and_nothing_is_stored(
    engine: Engine, bad: float
) -> None:
    meta = {"model": "naive", "residuals_per_horizon": [[0.01, bad]]}
    artifacts = store.ArtifactSet(b"o", b"w", meta)
    where = r"meta.residuals_per_horizon\[0\]\[1\]"
    with (
        pytest.raises(ArtifactError, match=f"non-finite number at `{where}`"),
        write_session(engine) as session,
    ):
        store.save_version(session=session, version=naive_version(), artifacts=artifacts)
    with read_session(engine) as session:
        assert store.list_versions(session=session) == []


def test_json_columns_hold_strict_json_on_every_backend(engine: Engine) -> None:
    """SQLite would store NaN in a JSON column (PostgreSQL refuses it): both refuse it now.

    SQLAlchemy wraps the serialiser's ValueError for SQLite; psycopg raises it as it is.
    """
    artifacts = store.ArtifactSet(b"o", b"w", {})
    with (
        pytest.raises((StatementError, ValueError), match="Out of range float values are not JSON"),
        write_session(engine) as session,
    ):
        version = naive_version({"metrics": {"mase": float("nan")}})
        store.save_version(session=session, version=version, artifacts=artifacts)
    with read_session(engine) as session:
        assert store.list_versions(session=session) == []
