"""bench/ scripts still import and their pure helpers still work (the benchmarks never run here).

The scripts import the package, so a moved or renamed module must fail here (and in mypy),
not months later on the machine that runs them.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest

from btc_predictor.errors import ModelNotFoundError
from btc_predictor.forecasting.executors import SerialExecutor
from btc_predictor.forecasting.training import HorizonSeries

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py"))
# Module-level statements that cannot start work: the rest must sit under the main guard.
INERT = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:8000/predict
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.52ms  412.00us   9.87ms   80.12%
    Req/Sec    10.55k   612.34    11.80k    71.00%
  Latency Distribution
     50%  812.00us
     75%    1.70ms
     90%    2.01ms
     99%    3.10ms
  209876 requests in 10.00s, 40.12MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  20987.60
Transfer/sec:      4.01MB
"""


def load(stem: str) -> ModuleType:
    """Import ``bench/<stem>.py`` as module ``bench_<stem>`` (bench/ is not a package)."""
    name = f"bench_{stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{stem}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    return module


def is_main_guard(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":``."""
    return (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name)
        and node.test.left.id == "__name__"
    )


def is_inert(node: ast.stmt) -> bool:
    """A module-level statement that only defines names (or is the docstring)."""
    if isinstance(node, ast.Expr):
        return isinstance(node.value, ast.Constant)
    return isinstance(node, (*INERT, ast.Assign, ast.AnnAssign)) or is_main_guard(node)


def test_every_script_is_covered() -> None:
    assert SCRIPTS == [
        "adaptive_intervals",
        "api_load",
        "asgi_cost",
        "forecast_quality",
        "recipe_search",
        "risk_intervals",
        "risk_quality",
    ]


def test_adaptive_bench_volatility_helpers() -> None:
    bench = load("adaptive_intervals")
    returns = np.array([0.01, -0.01] * 20)
    realised = bench.realised_vol(returns, window=4)
    assert np.isnan(realised[:3]).all() and np.allclose(realised[3:], 0.01)
    # EWMA of a constant square stays at it once started from the same variance.
    sigma = bench.ewma_sigma(np.array([0.02, -0.02] * 20), 0.94)
    assert np.allclose(sigma, 0.02)


def test_risk_intervals_reuses_folds_and_scores_common_rows() -> None:
    bench = load("risk_intervals")
    calls: list[int] = []

    def fit(fold: SimpleNamespace) -> int:
        calls.append(fold.train_end)
        return fold.train_end * 10

    def fold(train_end: int) -> SimpleNamespace:
        return SimpleNamespace(
            model="lstm", seed=0, train_end=train_end, max_horizon=7, history=np.zeros(train_end)
        )

    reused = bench.ReusedFolds(SerialExecutor())
    assert list(reused.map(fit, [fold(5), fold(6)])) == [50, 60]
    assert list(reused.map(fit, [fold(6), fold(7), fold(5)])) == [60, 70, 50]
    assert calls == [5, 6, 7]  # each fold fitted once, results still in input order
    nan = np.nan
    a = SimpleNamespace(
        series_h=np.array([1, 1, 1, 2]),
        series_target=np.array([3, 4, 5, 5]),
        series_lower=np.array([1.0, 1.0, 1.0, 1.0]),
    )
    b = SimpleNamespace(series_lower=np.array([1.0, nan, 1.0, 1.0]))
    # h=1, target >= 4, an interval in both runs: only the target-5 row
    assert bench.common_rows(a, b, 1, 4).tolist() == [False, False, True, False]
    assert (bench.fmt(None), bench.fmt(nan), bench.fmt(0.91234)) == ("–", "–", "0.912")
    assert bench.table(["a", "b"], [["1", "2"]]) == ["| a | b |", "|---|---|", "| 1 | 2 |"]


def test_risk_intervals_writes_its_section_between_markers() -> None:
    bench = load("risk_intervals")
    first = bench.with_section("# Risk\n\nrisk tables\n", "## Intervals v1")
    assert first == f"# Risk\n\nrisk tables\n\n{bench.BEGIN}\n## Intervals v1\n{bench.END}\n"
    again = bench.with_section(first + "\n## Later\n", "## Intervals v2\n")
    assert again.count(bench.BEGIN) == 1 and "v1" not in again
    assert again.startswith("# Risk\n\nrisk tables\n") and again.endswith("## Later\n")
    assert bench.with_section("", "x") == f"{bench.BEGIN}\nx\n{bench.END}\n"


@pytest.mark.parametrize("stem", SCRIPTS)
def test_script_imports_without_running(stem: str) -> None:
    tree = ast.parse((BENCH / f"{stem}.py").read_text())
    assert [ast.unparse(n)[:60] for n in tree.body if not is_inert(n)] == []
    assert sum(is_main_guard(n) for n in tree.body) == 1
    assert callable(load(stem).main)


def test_api_load_parses_wrk_output() -> None:
    api_load = load("api_load")
    result = api_load.parse_wrk(WRK_OUTPUT)
    assert result == api_load.WrkResult(rps=20987.6, p50=0.812, p99=3.1, bad=5 + 2 + 1)
    assert api_load.to_ms("1.02s") == 1020.0


def test_api_load_diagnostic_app_finds_the_names_it_patches(tmp_path: Path) -> None:
    """DIAG_APP is source text, invisible to mypy: import it as uvicorn would."""
    api_load = load("api_load")
    (tmp_path / "diag.py").write_text(api_load.DIAG_APP)
    spec = importlib.util.spec_from_file_location("bench_diag", tmp_path / "diag.py")
    assert spec is not None and spec.loader is not None
    diag = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(diag)
    assert callable(diag.api.app_from_environment) and isinstance(diag.api.Envelope, type)
    assert diag.LabelledRoute.__name__ == "LabelledRoute"


def test_asgi_cost_drives_the_reference_app() -> None:
    asgi_cost = load("asgi_cost")
    micros = asyncio.run(asgi_cost.drive(asgi_cost.reference(), "/", 5))
    assert 0 < micros < 1e6


def test_forecast_quality_options_plan_and_scores() -> None:
    fq = load("forecast_quality")
    args = fq.parse_args(["--quick"])
    assert (args.out, args.models, args.seeds) == (fq.QUICK_OUT, "naive,lstm", [0])
    assert fq.selected_models("ensemble,naive") == ["naive", "ensemble"]
    with pytest.raises(ModelNotFoundError):
        fq.selected_models("prophet")
    assert fq.plan_for("naive", [1, 2]).holdout_seeds == [0]
    assert fq.plan_for("seed-lstm", [1, 2]).wf_seeds == [1]
    closes = np.array([100.0, 102.0, 101.0, 105.0, 104.0, 108.0])
    origins = np.arange(5)
    naive = closes[origins]
    series = HorizonSeries(1, origins, origins + 1, naive, closes[origins + 1], naive)
    scores = fq.horizon_scores(series)
    assert (scores["n"], scores["mase"], scores["mae"]) == (5, 1.0, scores["naive_mae"])
    assert fq.targets({}) == [f"`{fq.TARGET_MODEL}` has no results yet."]


def test_recipe_search_scoring_and_variants() -> None:
    rs = load("recipe_search")
    closes = np.linspace(100.0, 140.0, 41)
    n_train = rs.holdout_split(closes)
    assert n_train == 33
    windows = rs.test_windows(closes, n_train, 5)
    assert windows.shape == (8, 5) and windows[0, -1] == closes[n_train - 1]
    naive = np.repeat(windows[:, -1:], 7, axis=1)  # the last close for every horizon
    assert rs.mase(naive, closes, n_train, 1) == pytest.approx(1.0)
    assert {"lstm", "gru", "transformer", "ensemble", "seed-lstm"} <= set(rs.VARIANTS)
    head = rs.VARIANTS["lstm-randhead"]()._make_core().head
    assert head.weight.abs().sum() > 0  # re-initialized, not the zero naive-start head


def test_risk_quality_renders_targets_with_verdicts() -> None:
    risk = load("risk_quality")
    scores = {"mase": 0.8, "dm_pvalue": 0.001, "qlike": 0.5, "qlike_garch": 0.6}
    h7 = {**scores, "mase": 0.95}
    block = {
        "first_day": "2014-11-28", "last_day": "2025-11-29", "days": 4020, "path": "x.csv",
        "sha256": "0" * 64,
        "runs": [{"model": "har", "start": "2020-01-01", "end": "2025-11-29", "folds": 72,
                  "horizons": {"1": {**scores, "dm_pvalue_garch": 0.01, "coverage": 0.9,
                                     "winkler": 10.0},
                               "7": {**h7, "dm_pvalue_garch": 0.1, "coverage": 0.9,
                                     "winkler": 12.0}}}],
    }  # fmt: skip
    report = {
        "command": "python bench/risk_quality.py", "measured_at": "now", "machine": "m",
        "load1": 1.0, "assets": {"BTC-USD": block}, "fit_seconds": {"har": 0.05},
    }  # fmt: skip
    text = risk.render(report)
    assert "| har | 0.8000 | 0.001 | 0.5000 | +16.7% |" in text
    assert "h=7 range MASE ≤ 0.9: 0.95 — **missed**" in text
    assert "h=1 QLIKE ≥ 8% better than garch: 0.1667 — met" in text
    assert "0.050 s (target ≤ 2 s: met)" in text


def test_risk_quality_keeps_other_scripts_sections() -> None:
    bench = load("risk_quality")
    old = "# old\n<!-- risk_intervals.py: begin -->\nkept\n<!-- risk_intervals.py: end -->\n"
    assert "kept" in bench.other_sections(old)
    assert bench.other_sections("# nothing marked\n") == ""
