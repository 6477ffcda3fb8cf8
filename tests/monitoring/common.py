"""Paths and helpers shared by the monitoring tests (Prometheus, Alertmanager, Grafana)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO, unavailable

MONITORING = REPO / "monitoring"
PROMETHEUS_YML = MONITORING / "prometheus.yml"
ALERTS_YML = MONITORING / "alerts.yml"
RULE_TESTS = sorted((MONITORING / "tests").glob("*.yml"))
ALERTMANAGER_DIR = MONITORING / "alertmanager"
ALERTMANAGER_TEMPLATE = ALERTMANAGER_DIR / "alertmanager.yml"
ENTRYPOINT = ALERTMANAGER_DIR / "entrypoint.sh"
GRAFANA = MONITORING / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDER = GRAFANA / "provisioning" / "dashboards" / "btc-predictor.yml"
DASHBOARDS = GRAFANA / "dashboards"
TELEMETRY = REPO / "src" / "btc_predictor" / "telemetry.py"

# A metric name (not a glob such as bitcoin_lstm_model_* in a comment).
METRIC_NAME = re.compile(r"\bbitcoin_lstm_[a-zA-Z0-9_]+\b(?!\*)")


def load_yaml(path: Path) -> Any:
    """One YAML document."""
    return yaml.safe_load(path.read_text())


def tool(name: str) -> str:
    """The path of a Prometheus tool; skipped (failed under BTCP_TEST_STRICT=1) if missing."""
    path = shutil.which(name)
    if path is None:
        unavailable(
            f"{name} is not installed (Debian package prometheus / prometheus-alertmanager)"
        )
    assert path is not None
    return path


def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output (never raises on a non-zero exit)."""
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False, **kwargs)


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of monitoring/alerts.yml."""
    groups = load_yaml(ALERTS_YML)["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]
