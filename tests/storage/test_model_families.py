"""Model families in the store: one active version per (asset, family), rollback and pruning
per family, risk versions without model.onnx, and migration 0004 on existing rows."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, delete, text

from btc_predictor.config import Settings
from btc_predictor.errors import ArtifactError, NoModelError
from btc_predictor.storage import model_store as store
from btc_predictor.storage.db import _alembic_config, create_db_engine, read_session, write_session
from btc_predictor.storage.db import upgrade as upgrade_to_head
from btc_predictor.storage.tables import ModelArtifactRow

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def new_version(
    engine: Engine, model: str = "lstm", family: str = "price", onnx: bytes | None = b"onnx"
) -> int:
    version = store.NewVersion(
        asset="BTC-USD",
        model=model,
        family=family,
        created_at=NOW,
        train_start=date(2018, 1, 1),
        train_end=date(2024, 12, 31),
        data_points=2557,
        data_sha256="ab" * 32,
        seed=0,
        training_duration=1.0,
        holdout_mase=0.9,
        summary={},
    )
    artifacts = store.ArtifactSet(onnx, b"weights-" + model.encode(), {"model": model})
    with write_session(engine) as session:
        return store.save_version(session=session, version=version, artifacts=artifacts)


def promote(engine: Engine, version_id: int) -> None:
    with write_session(engine) as session:
        store.promote(session=session, version_id=version_id, reason="test", now=NOW)


def active(engine: Engine, family: str = "price") -> int | None:
    with read_session(engine) as session:
        return store.active_version_id(session=session, asset="BTC-USD", family=family)


def test_one_active_version_per_family(engine: Engine) -> None:
    price = new_version(engine)
    risk = new_version(engine, "har", "risk", onnx=None)
    promote(engine, price)
    promote(engine, risk)
    assert (active(engine), active(engine, "risk")) == (price, risk)
    with read_session(engine) as session:
        assert store.get_version(session=session, version_id=risk).family == "risk"
        assert store.promoted_assets(session=session) == ["BTC-USD"]
        assert store.promoted_assets(session=session, family="risk") == ["BTC-USD"]
        rows = store.list_versions(session=session, family="risk")
        assert [r.id for r in rows] == [risk]


def test_rollback_is_per_family(engine: Engine) -> None:
    p1, p2 = new_version(engine), new_version(engine)
    r1, r2 = (new_version(engine, "har", "risk", onnx=None) for _ in range(2))
    for vid in (p1, r1, p2, r2):
        promote(engine, vid)
    with write_session(engine) as session:
        assert store.rollback(session=session, asset="BTC-USD", now=NOW, family="risk") == r1
    assert (active(engine), active(engine, "risk")) == (p2, r1)
    with write_session(engine) as session:
        assert store.rollback(session=session, asset="BTC-USD", now=NOW) == p1
        with pytest.raises(NoModelError, match=r"no earlier promoted version \(risk family\)"):
            store.rollback(session=session, asset="BTC-USD", now=NOW, family="risk")
    assert (active(engine), active(engine, "risk")) == (p1, r1)


def test_pick_version_per_family_and_what_to_train_when_there_is_none(engine: Engine) -> None:
    def pick(family: str, model: str | None) -> int:
        with read_session(engine) as session:
            return store.pick_version(
                session=session, asset="BTC-USD", family=family, model=model, default_model="har"
            )

    missing = [
        ("price", None, "no active model for BTC-USD: run `btc-predictor train --asset BTC-USD`"),
        (
            "risk",
            None,
            "no active risk model for BTC-USD: run "
            "`btc-predictor train --model har --asset BTC-USD`",
        ),
        (
            "price",
            "lstm",
            "no lstm version for BTC-USD: run `btc-predictor train --asset BTC-USD --model lstm`",
        ),
        (
            "risk",
            "har",
            "no har version for BTC-USD: run `btc-predictor train --model har --asset BTC-USD`",
        ),
    ]
    for family, model, message in missing:
        with pytest.raises(NoModelError) as caught:
            pick(family, model)
        assert caught.value.message == message
    old, newest = new_version(engine), new_version(engine)
    risk = new_version(engine, "har", "risk", onnx=None)
    promote(engine, old)
    with write_session(engine) as session:  # the newest lstm is pruned: the next one serves
        pruned = store.prune(session=session, asset="BTC-USD", model="lstm", keep=0, now=NOW)
    assert pruned == [newest]
    assert (pick("price", None), pick("price", "lstm"), pick("risk", "har")) == (old, old, risk)


def test_pruning_keeps_both_families_active_and_rollback_targets(engine: Engine) -> None:
    risks = [new_version(engine, "har", "risk", onnx=None) for _ in range(5)]
    price = [new_version(engine) for _ in range(2)]
    promote(engine, risks[0])
    promote(engine, risks[1])
    promote(engine, price[0])
    with read_session(engine) as session:
        assert store.protected_versions(session=session, asset="BTC-USD") == {
            risks[0],
            risks[1],
            price[0],
        }
    with write_session(engine) as session:
        # Pruning the price kind to 0 newest still keeps the active price version.
        assert store.prune(session=session, asset="BTC-USD", model="lstm", keep=0, now=NOW) == [
            price[1]
        ]
        pruned = store.prune(session=session, asset="BTC-USD", model="har", keep=1, now=NOW)
    assert sorted(pruned) == risks[2:4]
    with read_session(engine) as session:
        for vid in (risks[0], risks[1], risks[4], price[0]):
            store.load_artifacts(session=session, version_id=vid)


def test_risk_version_without_onnx_round_trips_and_exports(engine: Engine, tmp_path: Path) -> None:
    vid = new_version(engine, "har", "risk", onnx=None)
    with read_session(engine) as session:
        loaded = store.load_artifacts(session=session, version_id=vid)
        assert loaded.onnx is None and loaded.weights == b"weights-har"
        assert loaded.meta["family"] == "risk"
        assert loaded.meta["checksums"] == {"weights.safetensors": store.sha256(b"weights-har")}
        with pytest.raises(ArtifactError, match=r"has no model\.onnx"):
            loaded.require_onnx(vid)
        paths = store.export_version(session=session, version_id=vid, directory=tmp_path)
    assert sorted(p.name for p in paths) == ["meta.json", "weights.safetensors"]
    assert json.loads((tmp_path / "meta.json").read_text())["family"] == "risk"


def test_missing_onnx_of_a_price_version_is_still_damage(engine: Engine) -> None:
    vid = new_version(engine)
    with write_session(engine) as session:
        session.execute(
            delete(ModelArtifactRow).where(
                ModelArtifactRow.version_id == vid, ModelArtifactRow.name == "model.onnx"
            )
        )
    with (
        read_session(engine) as session,
        pytest.raises(ArtifactError, match=r"missing model\.onnx"),
    ):
        store.load_artifacts(session=session, version_id=vid)


def test_a_price_version_without_onnx_is_refused(engine: Engine) -> None:
    with pytest.raises(ArtifactError, match=r"price version needs model\.onnx"):
        new_version(engine, onnx=None)
    with read_session(engine) as session:
        assert store.list_versions(session=session) == []


def test_migration_0004_makes_existing_versions_and_promotions_price(settings: Settings) -> None:
    eng = create_db_engine(settings)
    try:
        with eng.begin() as conn:
            command.upgrade(_alembic_config(conn), "0003")
            conn.execute(
                text(
                    "INSERT INTO model_versions (id, asset, model, created_at, train_start, "
                    "train_end, data_points, data_sha256, seed, training_duration, summary) "
                    "VALUES (1, 'BTC-USD', 'lstm', :now, :d, :d, 10, 'x', 0, 1.0, '{}')"
                ),
                {"now": NOW.replace(tzinfo=None), "d": date(2024, 1, 1)},
            )
            conn.execute(
                text(
                    "INSERT INTO promotions (asset, version_id, promoted_at, reason) "
                    "VALUES ('BTC-USD', 1, :now, 'old')"
                ),
                {"now": NOW.replace(tzinfo=None)},
            )
        upgrade_to_head(eng)
        with eng.connect() as conn:
            assert conn.execute(text("SELECT family FROM model_versions")).scalars().all() == [
                "price"
            ]
            assert conn.execute(text("SELECT family FROM promotions")).scalars().all() == ["price"]
        with read_session(eng) as session:
            assert store.active_version_id(session=session, asset="BTC-USD") == 1
            assert store.active_version_id(session=session, asset="BTC-USD", family="risk") is None
    finally:
        eng.dispose()
