"""``backtest --json``: the interval method, interval quality, VaR and p_up keys (issue 16)."""

from __future__ import annotations

import json

from tests.cli.conftest import run

ARGS = ("backtest", "--model", "naive", "--days", "300", "--horizon", "2", "--json")


def test_backtest_json_defaults_to_adaptive_intervals_with_var_and_p_up(
    seeded: dict[str, str],
) -> None:
    code, out, err = run(seeded, *ARGS)
    assert code == 0, err
    report = json.loads(out)
    assert (report["interval_method"], report["risk_model"]) == ("adaptive", "har")
    h1, h2 = report["horizons"]
    assert set(h1["var"]) == {"95", "99"}
    assert set(h1["var"]["95"]) == {"rate", "kupiec_p", "christoffersen_p"}
    assert 0 < h1["var"]["95"]["rate"] < 0.2 and 0 < h1["coverage"] < 1
    assert h1["brier"] == 0.25 and h1["brier_skill"] == 0.0  # naive: p_up is exactly 0.5
    assert set(h1["coverage_by_vol_tercile"]) == {"low", "mid", "high"}
    assert h1["winkler"] > 0 and h1["worst_90d_coverage"] is not None
    assert h2["var"] is None and h2["brier"] is None and h2["winkler"] > h1["winkler"]
    scored = [r for r in report["series"] if r["lower"] is not None]
    assert scored and all(r["p_up"] == 0.5 and r["var_99"] > r["var_95"] for r in scored)


def test_static_intervals_setting_is_reported_and_changes_the_bounds(
    seeded: dict[str, str],
) -> None:
    _, adaptive_out, _ = run(seeded, *ARGS)
    code, out, err = run({**seeded, "BTCP_INTERVALS": "static"}, *ARGS)
    assert code == 0, err
    static, adaptive = json.loads(out), json.loads(adaptive_out)
    assert (static["interval_method"], static["risk_model"]) == ("static", None)
    assert static["burn_in_folds"] < adaptive["burn_in_folds"]  # 99 scores vs 30 residuals
    last = static["series"][-1], adaptive["series"][-1]
    assert last[0]["forecast"] == last[1]["forecast"] and last[0]["lower"] != last[1]["lower"]
