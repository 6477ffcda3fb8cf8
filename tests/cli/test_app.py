"""The command line: JSON output, exit codes, one-line errors, nothing lost on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.cli.conftest import run
from tests.factories import strict_json


def test_ingest_json_is_exactly_one_object(seeded: dict[str, str], shared_data: Path) -> None:
    code, out, _ = run(
        seeded,
        "ingest",
        "--asset",
        "ETH-USD",
        "--path",
        str(shared_data / "Bitstamp_ETHUSD_d.csv"),
        "--json",
    )
    assert code == 0
    report = json.loads(out)
    required = {
        "asset",
        "source",
        "fetched",
        "inserted",
        "updated",
        "rejected",
        "rejected_examples",
        "fixed_volume",
        "gaps",
        "first",
        "last",
    }
    assert required <= report.keys()
    assert (report["asset"], report["source"], report["inserted"], report["rejected"]) == (
        "ETH-USD",
        "csv",
        1437,
        988,
    )


def test_data_status_json(seeded: dict[str, str]) -> None:
    code, out, _ = run(seeded, "data", "status", "--asset", "BTC-USD", "--json")
    status = json.loads(out)
    assert code == 0 and (status["rows"], status["first"], status["last"], status["gaps"]) == (
        4020,
        "2014-11-28",
        "2025-11-29",
        [],
    )
    assert status["sources"] == ["csv"] and status["latest_age_seconds"] > 0
    code, out, _ = run(seeded, "data", "status", "--json")
    assert [row["asset"] for row in json.loads(out)] == ["BTC-USD"]


def test_human_report_mentions_fixes_and_the_dropped_row(
    seeded: dict[str, str], shared_data: Path
) -> None:
    code, out, _ = run(seeded, "ingest", "--path", str(shared_data / "Bitstamp_BTCUSD_d.csv"))
    assert code == 0 and "fixed volume" in out and "1180" in out and "2025-11-30" in out


def test_module_entry_point_and_debug_traceback(env: dict[str, str], tmp_path: Path) -> None:
    base = [sys.executable, "-m", "btc_predictor"]
    full_env = {**env, "PATH": "/usr/bin:/bin"}
    plain = subprocess.run(
        [*base, "ingest", "--path", str(tmp_path / "nope.csv")],
        env=full_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert plain.returncode == 2 and plain.stderr.strip().endswith("nope.csv: no such file")
    debug = subprocess.run(
        [*base, "--debug", "ingest", "--path", str(tmp_path / "nope.csv")],
        env=full_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "DataFileError" in debug.stderr


def test_train_predict_models_round_trip(seeded: dict[str, str], tmp_path: Path) -> None:
    code, out, err = run(seeded, "train", "--model", "drift", "--promote", "always", "--json")
    assert code == 0, err
    version = json.loads(out)["version"]
    code, out, _ = run(seeded, "predict", "--horizon", "2", "--level", "80", "--json")
    forecast = json.loads(out)
    assert code == 0 and forecast["model_version"] == version and forecast["level"] == 80
    code, out, _ = run(seeded, "models", "list", "--json")
    assert code == 0 and [(m["id"], m["active"]) for m in json.loads(out)] == [(version, True)]
    code, out, _ = run(seeded, "models", "export", str(version), str(tmp_path / "export"))
    assert code == 0 and sorted(p.name for p in (tmp_path / "export").iterdir()) == [
        "meta.json",
        "model.onnx",
        "weights.safetensors",
    ]
    code, out, _ = run(
        seeded,
        "backtest",
        "--model",
        "naive",
        "--days",
        "60",
        "--horizon",
        "2",
        "--json",
        "--plot",
        str(tmp_path / "bt.png"),
    )
    assert code == 0 and json.loads(out)["horizons"][0]["n"] == 60
    assert (tmp_path / "bt.png").read_bytes()[:4] == b"\x89PNG"


def test_human_status_and_forecast_tables(seeded: dict[str, str]) -> None:
    code, out, err = run(seeded, "data", "status")
    assert code == 0, err
    assert "BTC-USD" in out and "4020" in out and "2025-11-29" in out and "(stale)" in out
    run(seeded, "train", "--model", "naive", "--promote", "always")
    code, out, err = run(seeded, "predict", "--horizon", "2")
    assert code == 0, err
    assert "90,832.00" in out and "90% interval" in out
    # no risk version yet: static intervals, said so; the risk table per horizon
    assert "static intervals (no risk version was active" in out
    assert "VaR 95%" in out and "VaR 99%" in out and "P(up)" in out and "0.500" in out
    run(seeded, "train", "--model", "har", "--promote", "always")
    run(seeded, "train", "--model", "naive", "--promote", "always")
    code, out, err = run(seeded, "predict", "--horizon", "2", "--json")
    served = json.loads(out)
    assert code == 0 and served["interval_method"] == "adaptive", err
    assert served["risk_model_version"] == 2 and served["points"][0]["p_up"] == 0.5
    code, out, err = run(seeded, "predict", "--horizon", "2")
    assert "adaptive intervals, σ̂ from risk v2" in out
    code, out, err = run(seeded, "models", "list")
    assert code == 0 and "naive" in out and "yes" in out


def test_human_train_and_backtest_reports(seeded: dict[str, str]) -> None:
    code, out, err = run(seeded, "train", "--model", "drift")
    assert code == 0, err
    assert "MASE (vs naive)" in out and "1,487.10" in out and "baseline" in out
    code, out, err = run(seeded, "backtest", "--model", "naive", "--days", "40", "--horizon", "2")
    assert code == 0, err
    assert "naive MAE" in out and "burn-in" in out


def test_every_json_output_is_strict_json(seeded: dict[str, str], tmp_path: Path) -> None:
    """``--json`` outputs and exported meta.json never hold NaN or Infinity."""
    code, out, err = run(seeded, "train", "--model", "drift", "--promote", "always", "--json")
    assert code == 0, err
    version = str(strict_json(out)["version"])
    outputs = [
        ["data", "status", "--json"],
        ["data", "status", "--asset", "BTC-USD", "--json"],
        ["predict", "--horizon", "3", "--json"],
        ["models", "list", "--json"],
        ["models", "show", version],
        ["models", "promote", version, "--json"],
        ["backtest", "--model", "naive", "--days", "40", "--horizon", "2", "--json"],
    ]
    for args in outputs:
        code, out, err = run(seeded, *args)
        assert code == 0, (args, err)
        strict_json(out)
    code, _out, err = run(seeded, "models", "export", version, str(tmp_path / "v"))
    assert code == 0, err
    assert strict_json((tmp_path / "v" / "meta.json").read_text())["model"] == "drift"


def test_a_forecast_that_cannot_be_finite_exits_2(seeded: dict[str, str], tmp_path: Path) -> None:
    """A close near the float maximum is valid data, but its interval overflows: no output."""
    code, _out, err = run(seeded, "train", "--model", "naive", "--promote", "always")
    assert code == 0, err
    huge = tmp_path / "huge.csv"
    huge.write_text(
        "Date,Open,High,Low,Close,Adj Close,Volume\n2025-11-30,1e308,1.79e308,1e308,1.79e308,0,1\n"
    )
    code, out, err = run(seeded, "ingest", "--path", str(huge), "--json")
    assert code == 0 and strict_json(out)["inserted"] == 1, err
    code, out, err = run(seeded, "predict", "--horizon", "2", "--json")
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert err.startswith("error: this model's forecast is not finite at horizon 1"), err
