"""Every bitcoin_lstm_* metric (and label) the rules, their unit tests and the dashboards use is
one that src/btc_predictor/telemetry.py defines."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from tests.monitoring.common import ALERTS_YML, DASHBOARDS, METRIC_NAME, RULE_TESTS, TELEMETRY

# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}


def _labels(node: ast.Call) -> set[str]:
    """The label names of one metric constructor call."""
    labels: set[str] = set(ast.literal_eval(node.args[2])) if len(node.args) > 2 else set()
    for keyword in node.keywords:
        if keyword.arg == "labelnames":
            labels = set(ast.literal_eval(keyword.value))
    return labels


def _series(kind: str, name: str, labels: set[str]) -> dict[str, set[str]]:
    """The series one metric exposes, by prometheus_client's naming."""
    if kind == "Counter":
        # prometheus_client exposes a counter as <name without _total>_total
        return {name.removesuffix("_total") + "_total": labels}
    if kind == "Histogram":
        return {
            name + "_bucket": labels | {"le"},
            name + "_sum": labels,
            name + "_count": labels,
        }
    if kind == "Summary":
        return {name + "_sum": labels, name + "_count": labels}
    return {name: labels}


def defined_metrics() -> dict[str, set[str]]:
    """Exposed series name -> its label names, from telemetry.py's source (not imported)."""
    tree = ast.parse(TELEMETRY.read_text())
    exposed: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"Counter", "Gauge", "Histogram", "Summary"}
        ):
            name = ast.literal_eval(node.args[0])
            exposed |= _series(node.func.id, name, _labels(node))
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == "HEALTH_METRICS"
            and node.value is not None
        ):
            for name, (_, labels) in ast.literal_eval(node.value).items():
                exposed[name] = set(labels)
    return exposed


def used_texts() -> dict[str, str]:
    """Where metric names are used: rules, rule unit tests, dashboard queries."""
    texts = {"alerts.yml": ALERTS_YML.read_text()}
    for path in RULE_TESTS:
        texts[f"tests/{path.name}"] = path.read_text()
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        queries = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
        queries += [
            v["query"]["query"]
            for v in board["templating"]["list"]
            if isinstance(v.get("query"), dict)
        ]
        texts[f"dashboards/{path.name}"] = "\n".join(queries)
    return texts


def test_telemetry_defines_the_metrics_this_contract_expects():
    metrics = defined_metrics()
    for name in (
        "bitcoin_lstm_requests_total",
        "bitcoin_lstm_request_duration_seconds_bucket",
        "bitcoin_lstm_jobs_total",
        "bitcoin_lstm_alert_threshold",
        "bitcoin_lstm_live_abs_error",
    ):
        assert name in metrics, name
    assert metrics["bitcoin_lstm_request_duration_seconds_bucket"] == {"method", "endpoint", "le"}


@pytest.mark.parametrize("where", sorted(used_texts()))
def test_every_metric_used_is_defined(where: str):
    metrics = defined_metrics()
    text = used_texts()[where]
    used = set(METRIC_NAME.findall(text))
    if not where.startswith("tests/"):
        assert used, f"{where} uses no bitcoin_lstm_* metric"
    unknown = sorted(used - set(metrics))
    assert not unknown, f"{where} uses metrics telemetry.py does not define: {unknown}"


@pytest.mark.parametrize("where", sorted(used_texts()))
def test_every_label_matched_exists_on_the_metric(where: str):
    metrics = defined_metrics()
    text = used_texts()[where]
    # YAML test files quote label values with \" inside "..." strings only rarely; strip it.
    for name, matchers in re.findall(r"\b(bitcoin_lstm_\w+)\{([^}]*)\}", text.replace('\\"', '"')):
        labels = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
        unknown = labels - metrics[name] - TARGET_LABELS
        assert not unknown, f"{where}: {name} has no label(s) {sorted(unknown)}"


def test_the_checks_see_every_rule_file():
    assert {Path(p).name for p in used_texts() if p.startswith("tests/")} == {
        p.name for p in RULE_TESTS
    }
