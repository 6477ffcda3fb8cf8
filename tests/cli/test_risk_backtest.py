"""``backtest --model har``: JSON with family risk, a human table, and the range plot."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import run


def test_backtest_a_risk_model_as_json_with_plot(seeded: dict[str, str], tmp_path: Path) -> None:
    plot = tmp_path / "risk.png"
    args = ["--model", "har", "--days", "60", "--horizon", "2", "--refit-every", "30"]
    code, out, err = run(seeded, "backtest", *args, "--json", "--plot", str(plot))
    assert code == 0, err
    report = json.loads(out)
    assert report["family"] == "risk" and report["model"] == "har"
    assert [h["h"] for h in report["horizons"]] == [1, 2]
    assert report["horizons"][0]["n"] == 60 and report["horizons"][0]["mase"] < 1.0
    assert "volatility" in report["series"][0]
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_backtest_a_risk_model_human(seeded: dict[str, str]) -> None:
    args = ["--model", "ewma-vol", "--days", "40", "--horizon", "2"]
    code, out, err = run(seeded, "backtest", *args)
    assert code == 0, err
    assert "ewma-vol (risk)" in out and "QLIKE/garch" in out and "naive MAE" in out


def test_backtest_refuses_a_horizon_beyond_the_maximum_for_risk_models(
    seeded: dict[str, str],
) -> None:
    code, _out, err = run(seeded, "backtest", "--model", "har", "--horizon", "31")
    assert code == 2 and "horizon" in err
