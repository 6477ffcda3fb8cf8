"""monitoring/grafana: datasource and dashboard provisioning, the two dashboards, and no
password anywhere under monitoring/."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring.common import (
    DASHBOARD_PROVIDER,
    DASHBOARDS,
    DATASOURCES,
    MONITORING,
    load_yaml,
    run,
    tool,
)

REQUIRED = {
    "btcp-service": "btc-predictor / Service",
    "btcp-forecasts": "btc-predictor / Forecasts",
}
GRAFANA_BUILTIN = {"-- Grafana --", "grafana"}


def dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard JSON by uid."""
    found = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        assert board["uid"] not in found, f"duplicate uid {board['uid']}"
        found[board["uid"]] = board
    return found


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def exprs(panel: dict[str, Any]) -> list[str]:
    """The PromQL of a panel's targets."""
    return [t["expr"] for t in panel.get("targets", [])]


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in a document."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def provisioned_uid() -> str:
    (datasource,) = load_yaml(DATASOURCES)["datasources"]
    return str(datasource["uid"])


def panel_with(board: dict[str, Any], *fragments: str) -> dict[str, Any]:
    """The one panel whose queries contain every fragment."""
    found = [p for p in panels(board) if all(any(f in e for e in exprs(p)) for f in fragments)]
    assert found, f"{board['uid']}: no panel queries {fragments}"
    return found[0]


def test_datasource_is_the_compose_prometheus_with_a_stable_uid():
    config = load_yaml(DATASOURCES)
    assert config["apiVersion"] == 1
    (datasource,) = config["datasources"]
    assert datasource["uid"] == "btcp-prometheus"
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert datasource["access"] == "proxy"
    assert datasource["isDefault"] is True


def test_dashboard_provider_reads_the_mounted_directory():
    config = load_yaml(DASHBOARD_PROVIDER)
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_dashboards_have_the_required_uids_and_titles():
    boards = dashboards()
    assert {uid: b["title"] for uid, b in boards.items()} == REQUIRED
    for board in boards.values():
        assert board["id"] is None, "provisioned dashboards carry no database id"
        ids = [p["id"] for p in panels(board)]
        assert len(ids) == len(set(ids)), f"{board['uid']}: duplicate panel ids"
        for panel in panels(board):
            if panel["type"] != "row":
                assert panel.get("title") and panel.get("targets"), (board["uid"], panel)


def test_every_datasource_reference_is_the_provisioned_one():
    uid = provisioned_uid()
    for board in dashboards().values():
        refs = [n["datasource"] for n in walk(board) if isinstance(n.get("datasource"), dict)]
        assert refs, board["uid"]
        for ref in refs:
            if ref["uid"] in GRAFANA_BUILTIN:
                continue
            assert ref == {"type": "prometheus", "uid": uid}, (board["uid"], ref)
        assert not [n for n in walk(board) if isinstance(n.get("datasource"), str)], (
            f"{board['uid']}: a datasource referenced by name"
        )


def test_service_dashboard_panels():
    board = dashboards()["btcp-service"]
    panel_with(board, "rate(bitcoin_lstm_requests_total")
    latency = panel_with(
        board, "histogram_quantile(0.50", "histogram_quantile(0.95", "histogram_quantile(0.99"
    )
    assert all(
        "bitcoin_lstm_request_duration_seconds_bucket" in e
        for e in exprs(latency)
        if "histogram_quantile" in e
    )
    panel_with(board, 'status=~"5.."', 'name="error_ratio"')
    panel_with(board, "bitcoin_lstm_cpu_usage_percent")
    panel_with(board, "bitcoin_lstm_memory_usage_bytes")
    panel_with(board, "sum by (kind, status)", "bitcoin_lstm_jobs_total")
    panel_with(board, "bitcoin_lstm_ingest_rows_total")
    panel_with(board, "bitcoin_lstm_source_errors_total")


def test_forecasts_dashboard_panels_and_asset_variable():
    board = dashboards()["btcp-forecasts"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    asset = variables["asset"]
    assert asset["type"] == "query"
    assert "label_values(" in asset["query"]["query"] and ", asset)" in asset["query"]["query"]

    price = panel_with(board, "bitcoin_lstm_last_price", 'horizon="1"', "offset 1d")
    forecast = [e for e in exprs(price) if "bitcoin_lstm_forecast" in e]
    for bound in ("point", "lower", "upper"):
        assert any(f'bound="{bound}"' in e for e in forecast), bound
    fills = [
        p
        for o in price["fieldConfig"]["overrides"]
        for p in o["properties"]
        if p["id"] == "custom.fillBelowTo"
    ]
    assert fills, "the interval is drawn as a band"

    panel_with(board, "bitcoin_lstm_live_abs_error", 'model="naive"')
    panel_with(
        board, "bitcoin_lstm_live_interval_coverage", 'name="coverage_min"', 'name="coverage_max"'
    )
    panel_with(board, "bitcoin_lstm_model_mase")
    panel_with(board, "bitcoin_lstm_data_age_seconds")
    panel_with(board, "bitcoin_lstm_model_info")
    gauges = (
        "bitcoin_lstm_last_price",
        "bitcoin_lstm_forecast",
        "bitcoin_lstm_live_",
        "bitcoin_lstm_model_",
        "bitcoin_lstm_data_age_seconds",
    )
    for panel in panels(board):
        for expr in exprs(panel):
            for selector in re.findall(r"bitcoin_lstm_\w+\{[^}]*\}", expr):
                if selector.startswith(gauges):
                    assert 'asset="$asset"' in selector, (panel["title"], selector)


def test_forecasts_dashboard_risk_row():
    board = dashboards()["btcp-forecasts"]
    ranges = panel_with(board, "bitcoin_lstm_live_range_pct")
    series = " ".join(exprs(ranges))
    for name in ("forecast", "lower", "upper", "naive", "realised"):
        assert f'series="{name}"' in series, name
    fills = [
        p
        for o in ranges["fieldConfig"]["overrides"]
        for p in o["properties"]
        if p["id"] == "custom.fillBelowTo"
    ]
    assert fills, "the range band is drawn as a band"
    var = panel_with(board, 'series="var_95"', 'series="var_99"', 'series="realised_loss"')
    marks = [e for e in exprs(var) if ">" in e]
    assert len(marks) == 2, "violations of VaR 95 and 99 are marked"
    panel_with(board, "bitcoin_lstm_live_range_abs_error", 'model="naive-range"')
    kupiec = panel_with(board, "bitcoin_lstm_live_var_violation_ratio")
    assert {"vector(7 / 250)", "vector(19 / 250)", "vector(1 / 250)", "vector(6 / 250)"} <= set(
        exprs(kupiec)
    )
    panel_with(board, "bitcoin_lstm_interval_adaptive_level", "vector(0.9)")


def test_every_dashboard_query_is_valid_promql(tmp_path: Path):
    promtool = tool("promtool")
    rules = []
    for board in dashboards().values():
        for panel in panels(board):
            for expr in exprs(panel):
                concrete = (
                    expr.replace("$__rate_interval", "1m")
                    .replace("$asset", "BTC-USD")
                    .replace("$horizon", "1")
                )
                assert "$" not in concrete, f"unknown variable in {expr}"
                rules.append({"record": f"dashboard:query_{len(rules)}", "expr": concrete})
    assert len(rules) > 20
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = run([promtool, "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


# key = literal value, where the key names a password (Grafana ini/env, YAML, shell); values
# taken from the environment ($VAR, ${VAR:-}) and *_file settings are fine.
PASSWORD_ASSIGNMENT = re.compile(
    r"(?i)(?<![\w{])\w*(?:password|passwd)[\"']?\s*[:=]\s*[\"']?(?P<value>[^\s\"'$][^\s\"']*)"
)


@pytest.mark.parametrize(
    "line",
    [
        "admin_password = admin",
        "GF_SECURITY_ADMIN_PASSWORD=secret",
        "smtp_auth_password: hunter2",
        '"password": "x"',
        "  - password: admin",
    ],
)
def test_the_password_check_recognises_passwords(line: str):
    assert PASSWORD_ASSIGNMENT.search(line)


@pytest.mark.parametrize(
    "line",
    [
        'smtp_auth_password_file: "/tmp/alertmanager/smtp_password"',
        "smtp_password=${ALERT_SMTP_PASSWORD:-}",
        'GF_SECURITY_ADMIN_PASSWORD: "${GRAFANA_ADMIN_PASSWORD:?set it}"',
    ],
)
def test_the_password_check_allows_references(line: str):
    assert PASSWORD_ASSIGNMENT.search(line) is None


def test_no_password_anywhere_under_monitoring():
    files = [p for p in MONITORING.rglob("*") if p.is_file()]
    assert len(files) > 8
    for path in files:
        text = path.read_text()
        for number, line in enumerate(text.splitlines(), 1):
            match = PASSWORD_ASSIGNMENT.search(line)
            assert match is None, f"{path.relative_to(MONITORING)}:{number}: {line.strip()}"
        assert "hooks.slack.com/services/" not in text, path
        assert not re.search(r"GF_SECURITY_ADMIN_PASSWORD\s*[:=]", text), path
