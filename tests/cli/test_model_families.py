"""The CLI with two model families: `train` without --model trains risk then price (JSON:
price at the top, `risk` inside), listings show the family, rollback takes --family, and a
risk training on inconsistent candles exits 2 with nothing stored."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.cli.conftest import db_fingerprint, run

FAST = {"BTCP_DEFAULT_MODEL": "drift", "BTCP_TRAIN_START": "2021-01-01"}


def test_train_without_model_trains_risk_then_price(seeded: dict[str, str]) -> None:
    env = {**seeded, **FAST}
    code, out, err = run(env, "train", "--promote", "always", "--json")  # drift: a baseline
    assert code == 0, err
    price = json.loads(out)
    risk = price.pop("risk")
    assert (price["model"], price["family"], price["version"]) == ("drift", "price", 2)
    assert (risk["model"], risk["family"], risk["version"]) == ("har", "risk", 1)
    assert set(risk) == set(price) | {"risk"} and risk["risk"] is None  # the same keys
    assert set(risk["metrics"]) == {"mase", "range_mae", "qlike", "dm_pvalue", "coverage"}
    assert risk["promoted"] and price["promoted"]

    code, out, err = run(env, "train", "--model", "ewma-vol", "--promote", "always", "--json")
    assert code == 0, err
    assert json.loads(out)["family"] == "risk" and json.loads(out)["risk"] is None
    code, out, _ = run(env, "models", "list", "--json")
    listed = [(m["id"], m["family"], m["active"]) for m in json.loads(out)]
    assert listed == [(3, "risk", True), (2, "price", True), (1, "risk", False)]
    code, out, _ = run(env, "models", "list")
    assert code == 0 and "family" in out and "risk" in out
    code, out, _ = run(env, "predict", "--horizon", "1", "--json")
    assert json.loads(out)["model_version"] == 2

    code, out, err = run(env, "models", "rollback", "--family", "risk")
    assert code == 0, err
    assert "BTC-USD: rolled back to risk version 1 (har)" in out
    code, out, _ = run(env, "models", "list", "--family", "risk", "--json")
    assert [(m["id"], m["active"]) for m in json.loads(out)] == [(3, False), (1, True)]
    code, out, _ = run(env, "predict", "--horizon", "1", "--json")
    assert json.loads(out)["model_version"] == 2


def test_human_train_report_shows_both_families(seeded: dict[str, str]) -> None:
    code, out, err = run({**seeded, **FAST}, "train")
    assert code == 0, err
    assert "har v1 on BTC-USD (risk;" in out and "range MASE" in out and "QLIKE" in out
    assert "drift v2 on BTC-USD" in out
    assert out.index("har v1") < out.index("drift v2")


def test_risk_training_on_a_candle_with_high_below_low_exits_2(seeded: dict[str, str]) -> None:
    db = Path(seeded["BTCP_DATA_DIR"]) / "btc_predictor.db"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE candles SET high = low / 2 WHERE ts LIKE '2024-02-01%'")
    before = db_fingerprint(seeded)
    for args in (["train", "--model", "har"], ["train"]):
        code, out, err = run({**seeded, **FAST}, *args)
        assert code == 2, err
        assert err.count("\n") == 1 and "candle 2024-02-01 has high" in err, err
        assert "Traceback" not in out + err
    assert db_fingerprint(seeded) == before
