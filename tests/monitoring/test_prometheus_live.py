"""A real Prometheus scrapes a real API and worker; every dashboard and alert query evaluates.

The stack runs as in Compose, on 127.0.0.1: ``serve --workers 2`` without the embedded
worker, a separate ``worker`` that bootstraps from the real BTC CSV (ingest, then training),
a forecast ledger seeded with a month of scored forecasts (so the live-error gauges exist,
twice as wrong as naive, so that alert is pending), a risk ledger seeded with 260 scored next
days (the newest one breaks VaR 99; the adaptive level comes from the bootstrap price
version's holdout scores), one failing online refresh (source errors, a failed job) and some traffic. Prometheus runs with monitoring/prometheus.yml and
alerts.yml, its targets pointed at these processes and its intervals at one second.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from btc_predictor.config import Settings
from btc_predictor.storage.db import create_db_engine, upgrade, write_session
from btc_predictor.storage.tables import PredictionRow, RiskPredictionRow
from tests.api.conftest import API_KEY, AUTH
from tests.api.live import free_port, stop, wait_ready
from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
DASHBOARDS = sorted((MONITORING / "grafana" / "dashboards").glob("*.json"))
# Grafana's variables, as a user would pick them (the TSDB is seconds old: short windows).
VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
    "$asset": "BTC-USD",
    "$horizon": "1",
}
OFFSET = re.compile(r"\s+offset\s+\d+[smhdwy]")


def prometheus_binary() -> str:
    """The Debian package's prometheus (skip, or fail under BTCP_TEST_STRICT=1)."""
    path = shutil.which("prometheus")
    if path is None:
        unavailable("prometheus is not installed (Debian package `prometheus`)")
    assert path is not None
    return path


def seed_degraded_ledger(settings: Settings, today: datetime) -> None:
    """Thirty scored next-day forecasts, each twice as wrong as naive."""
    engine = create_db_engine(settings)
    upgrade(engine)
    with write_session(engine) as session:
        for back in range(30):
            day = (today - timedelta(days=back)).date()
            made = datetime.combine(day - timedelta(days=1), datetime.min.time(), UTC)
            session.add(
                PredictionRow(
                    asset="BTC-USD",
                    model="lstm",
                    model_version=999,
                    as_of=made,
                    horizon=1,
                    target_date=day,
                    forecast=100.0,
                    lower=95.0,
                    upper=105.0,
                    level=90,
                    naive=110.0,
                    created_at=made,
                    actual=120.0,
                    abs_error=20.0,
                    naive_abs_error=10.0,
                    inside=back % 10 != 0,
                    scored_at=made + timedelta(days=1),
                )
            )
    engine.dispose()


def seed_risk_ledger(settings: Settings, today: datetime) -> None:
    """260 scored next-day risk forecasts, VaR 95 broken every 10th day, VaR 99 every 50th
    (the newest day breaks both: its violation marks have data), range error 1.5x naive's."""
    engine = create_db_engine(settings)
    with write_session(engine) as session:
        for back in range(260):
            day = (today - timedelta(days=back)).date()
            made = datetime.combine(day - timedelta(days=1), datetime.min.time(), UTC)
            loss = 6.0 if back % 50 == 0 else 4.0 if back % 10 == 0 else -1.0
            session.add(
                RiskPredictionRow(
                    asset="BTC-USD",
                    model="har",
                    model_version=998,
                    price_version=999,
                    as_of=made,
                    horizon=1,
                    target_date=day,
                    last_close=100.0,
                    level=90,
                    volatility=2.0,
                    range_pct=4.0,
                    range_lower_pct=2.0,
                    range_upper_pct=8.0,
                    naive_range_pct=4.5,
                    var_95=3.0,
                    var_99=5.0,
                    p_up=0.5,
                    created_at=made,
                    actual_range_pct=5.5,
                    abs_error=1.5,
                    naive_abs_error=1.0,
                    inside=True,
                    loss_pct=loss,
                    var_95_violated=loss > 3.0,
                    var_99_violated=loss > 5.0,
                    went_up=loss < 0,
                    scored_at=made + timedelta(days=1),
                )
            )
    engine.dispose()


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A process in its own session, output to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            args, env=env, start_new_session=True, stdout=out, stderr=subprocess.STDOUT
        )


def wait_for(what: str, check: Callable[[], bool], timeout: float = 120) -> None:
    """Poll ``check`` every 0.25 s until it is true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def prometheus_config(tmp_path: Path, api: str, worker: str) -> Path:
    """monitoring/prometheus.yml with local targets, 1 s intervals and a copy of the rules."""
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    shutil.copy(MONITORING / "alerts.yml", tmp_path / "alerts.yml")
    config["global"].update(scrape_interval="1s", evaluation_interval="1s", scrape_timeout="1s")
    config["rule_files"] = [str(tmp_path / "alerts.yml")]
    config.pop("alerting", None)
    targets = {"btc-predictor-api": api, "btc-predictor-worker": worker}
    jobs = [job for job in config["scrape_configs"] if job["job_name"] in targets]
    assert {job["job_name"] for job in jobs} == set(targets)
    for job in jobs:
        job.pop("dns_sd_configs", None)
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    config["scrape_configs"] = jobs
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[str]:
    """API + worker + Prometheus, with data, a model, traffic; yields Prometheus's URL."""
    binary = prometheus_binary()
    tmp = tmp_path_factory.mktemp("stack")
    settings = Settings(data_dir=tmp / "data", api_key=API_KEY)
    seed_degraded_ledger(settings, datetime.now(UTC))
    seed_risk_ledger(settings, datetime.now(UTC))
    api_port, worker_port, prom_port = free_port(), free_port(), free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BTCP_DATA_DIR": str(settings.data_dir),
        "BTCP_API_KEY": API_KEY,
        "BTCP_WORKER_PORT": str(worker_port),
        "BTCP_BOOTSTRAP_CSV": str(shared_data / "Bitstamp_BTCUSD_d.csv"),
        "BTCP_TRAIN_EPOCHS": "2",
        "BTCP_SOURCES": "yahoo",
        "BTCP_SOURCE_RETRIES": "0",
        "BTCP_YAHOO_URL": f"http://127.0.0.1:{free_port()}",  # refused at once: no network
        "BTCP_WORKER_POLL": "0.2s",
        "BTCP_EMBEDDED_WORKER": "false",
    }
    python = [sys.executable, "-m", "btc_predictor"]
    worker = start([*python, "worker"], env, tmp / "worker.log")
    api = start([*python, "serve", "--port", str(api_port), "--workers", "2"], env, tmp / "api.log")
    prometheus = None
    try:
        url = f"http://127.0.0.1:{api_port}"
        wait_ready(url, api, tmp / "api.log")
        wait_for("the bootstrap model", lambda: requests.get(f"{url}/predict").status_code == 200)
        # The bootstrap trains the risk model first: the price version is adaptive (its
        # holdout scores give the adaptive-level gauge).
        assert requests.get(f"{url}/api/v1/forecast").json()["interval_method"] == "adaptive"
        refresh = requests.post(f"{url}/api/v1/assets/BTC-USD/refresh", headers=AUTH)
        assert refresh.status_code == 202
        job = refresh.json()["id"]
        wait_for(
            "the failing refresh",
            lambda: requests.get(f"{url}/api/v1/jobs/{job}").json()["status"] == "failed",
        )
        for path in ["/predict", "/api/v1/forecast", "/health", "/evaluate", "/nowhere"] * 10:
            requests.get(url + path)
        config = prometheus_config(tmp, f"127.0.0.1:{api_port}", f"127.0.0.1:{worker_port}")
        prometheus = start(
            [
                binary,
                f"--config.file={config}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
            ],
            env,
            tmp / "prometheus.log",
        )
        prom = f"http://127.0.0.1:{prom_port}"
        # Enough scrapes for rate() over the traffic (and one rule evaluation after them).
        wait_for("three scrapes of both targets", lambda: scraped_enough(prom), timeout=60)
        yield prom
    finally:
        for process in (prometheus, api, worker):
            if process is not None:
                stop(process)


def query(prom: str, expr: str) -> dict[str, Any]:
    """An instant query through Prometheus's HTTP API."""
    answer = requests.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10)
    body: dict[str, Any] = answer.json()
    return body


def scraped_enough(prom: str) -> bool:
    """Both jobs scraped at least three times since they had data."""
    try:
        result = query(prom, 'min(count_over_time(up{job=~"btc-predictor-.*"}[1m]))')
    except requests.ConnectionError:
        return False
    values = result.get("data", {}).get("result", [])
    return bool(values) and float(values[0]["value"][1]) >= 3


def dashboard_expressions() -> list[tuple[str, str]]:
    """(panel, PromQL) of every target of every dashboard, variables filled in."""
    found = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                expr = target.get("expr")
                if expr:
                    for name, value in VARIABLES.items():
                        expr = expr.replace(name, value)
                    found.append((f"{path.stem}: {panel.get('title')}", expr))
    return found


def alert_expressions() -> list[tuple[str, str]]:
    """(alert, PromQL) of every rule in alerts.yml."""
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    return [(rule["alert"], rule["expr"]) for group in rules["groups"] for rule in group["rules"]]


def test_every_dashboard_query_returns_data(stack: str) -> None:
    empty, failed = [], []
    for panel, expr in dashboard_expressions():
        # The TSDB is seconds old: a query about a day ago is asked about now instead.
        answer = query(stack, OFFSET.sub("", expr))
        if answer["status"] != "success":
            failed.append(f"{panel}: {expr}: {answer.get('error')}")
        elif not answer["data"]["result"]:
            empty.append(f"{panel}: {expr}")
    assert not failed, "\n".join(failed)
    assert not empty, "no data for:\n" + "\n".join(empty)


def test_every_alert_expression_evaluates(stack: str) -> None:
    for alert, expr in alert_expressions():
        answer = query(stack, expr)
        assert answer["status"] == "success", f"{alert}: {answer.get('error')}"


def test_prometheus_loaded_and_evaluated_every_rule(stack: str) -> None:
    def evaluated() -> bool:
        groups = requests.get(f"{stack}/api/v1/rules", timeout=10).json()["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return bool(rules) and all(r.get("lastEvaluation", "").startswith("20") for r in rules)

    wait_for("a rule evaluation", evaluated, timeout=30)
    groups = requests.get(f"{stack}/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(rules) == {alert for alert, _ in alert_expressions()}
    broken = {name: rule.get("lastError") for name, rule in rules.items() if rule["health"] != "ok"}
    assert not broken
    # The seeded ledger is twice as wrong as naive: that alert is at least pending.
    states = {name: rule["state"] for name, rule in rules.items()}
    assert any(states[name] in ("pending", "firing") for name in states if "Naive" in name)


def test_the_stack_produced_the_worker_series(stack: str) -> None:
    def value(expr: str) -> float:
        result = query(stack, expr)["data"]["result"]
        return sum(float(r["value"][1]) for r in result)

    assert value('bitcoin_lstm_ingest_rows_total{result="inserted"}') > 2000  # the real CSV
    assert value('bitcoin_lstm_jobs_total{kind="ingest",status="failed"}') >= 1
    assert value('bitcoin_lstm_source_errors_total{source="yahoo"}') >= 1
    # No retrain yet: the health check skips an asset nothing serves (bootstrap trains it);
    # the series exists from the worker's start, at zero.
    assert query(stack, "bitcoin_lstm_retrains_triggered_total")["data"]["result"]
    assert value("bitcoin_lstm_retrains_triggered_total") == 0
    assert value("bitcoin_lstm_predictions_total") >= 20
