"""monitoring/prometheus.yml and monitoring/alerts.yml: promtool checks, the rule unit tests
in monitoring/tests/*.yml, and the conventions the rules rely on."""

from __future__ import annotations

import re
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from btc_predictor.config import Settings
from tests.monitoring.common import (
    ALERTS_YML,
    MONITORING,
    PROMETHEUS_YML,
    RULE_TESTS,
    alert_rules,
    load_yaml,
    run,
    tool,
)

# bitcoin_lstm_alert_threshold{name} -> the Settings field it is exported from.
THRESHOLD_SETTINGS = {
    "live_error_margin": "alert_live_error_margin",
    "coverage_min": "alert_coverage_min",
    "coverage_max": "alert_coverage_max",
    "min_scored_forecasts": "alert_min_scored",
    "latency_p95_seconds": "alert_latency_p95",
    "error_ratio": "alert_error_ratio",
    "max_data_age_seconds": "max_data_age",
}
# Gauges every API replica exports with the same value (read from the shared database).
DATABASE_GAUGES = (
    "bitcoin_lstm_model_r2_score",
    "bitcoin_lstm_model_mase",
    "bitcoin_lstm_model_info",
    "bitcoin_lstm_last_price",
    "bitcoin_lstm_data_age_seconds",
    "bitcoin_lstm_forecast",
    "bitcoin_lstm_live_abs_error",
    "bitcoin_lstm_live_interval_coverage",
    "bitcoin_lstm_live_scored_forecasts",
    "bitcoin_lstm_alert_threshold",
    "bitcoin_lstm_live_range_abs_error",
    "bitcoin_lstm_live_range_scored_forecasts",
    "bitcoin_lstm_live_var_violation_ratio",
    "bitcoin_lstm_live_var_scored_days",
    "bitcoin_lstm_interval_adaptive_level",
)


def scrape_config(job: str) -> dict[str, Any]:
    """The scrape config of one job."""
    configs = load_yaml(PROMETHEUS_YML)["scrape_configs"]
    matches = [c for c in configs if c["job_name"] == job]
    assert len(matches) == 1, f"expected exactly one scrape config for {job}"
    return dict(matches[0])


def rule_tests() -> list[dict[str, Any]]:
    """Every alert_rule_test of every unit-test file, with the test's input series."""
    found = []
    for path in RULE_TESTS:
        for test in load_yaml(path)["tests"]:
            for case in test.get("alert_rule_test", []):
                found.append(
                    {
                        **case,
                        "file": path.name,
                        "test": test["name"],
                        "input_series": test.get("input_series", []),
                    }
                )
    return found


def test_prometheus_config_scrapes_every_replica_the_worker_and_alerts():
    config = load_yaml(PROMETHEUS_YML)
    assert config["global"]["scrape_interval"] == "15s"
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    targets = [
        t
        for am in config["alerting"]["alertmanagers"]
        for sc in am["static_configs"]
        for t in sc["targets"]
    ]
    assert targets == ["alertmanager:9093"]

    api = scrape_config("btc-predictor-api")
    assert api.get("metrics_path", "/metrics") == "/metrics"
    assert "static_configs" not in api, "replicas must be discovered, not listed"
    assert api["dns_sd_configs"] == [
        {"names": ["api"], "type": "A", "port": 8000, "refresh_interval": "30s"}
    ]
    worker = scrape_config("btc-predictor-worker")
    assert worker.get("metrics_path", "/metrics") == "/metrics"
    assert worker["static_configs"] == [{"targets": ["worker:9101"]}]


def test_promtool_check_config_accepts_the_config_and_its_rules(tmp_path: Path):
    promtool = tool("promtool")
    shutil.copy(ALERTS_YML, tmp_path / "alerts.yml")
    config = load_yaml(PROMETHEUS_YML)
    config["rule_files"] = [str(tmp_path / "alerts.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = run([promtool, "check", "config", str(tmp_path / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_check_rules():
    result = run([tool("promtool"), "check", "rules", str(ALERTS_YML)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_rule_unit_tests_pass():
    assert RULE_TESTS, "no unit tests in monitoring/tests"
    result = run([tool("promtool"), "test", "rules", *map(str, RULE_TESTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS), result.stdout


def test_unit_tests_load_the_real_rule_file():
    for path in RULE_TESTS:
        test_file = load_yaml(path)
        assert test_file["rule_files"] == ["../alerts.yml"], path.name
        assert (path.parent / "../alerts.yml").resolve() == ALERTS_YML.resolve()


def test_every_alert_is_tested_firing_and_silent():
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names)), "alert names must be unique"
    cases = rule_tests()
    tested = {case["alertname"] for case in cases}
    assert tested <= set(names), f"unit tests for unknown alerts: {tested - set(names)}"
    for name in names:
        firing = [c for c in cases if c["alertname"] == name and c.get("exp_alerts")]
        silent = [c for c in cases if c["alertname"] == name and not c.get("exp_alerts")]
        assert firing, f"{name}: no unit test expects it to fire"
        assert silent, f"{name}: no unit test expects it to stay silent"
        for case in firing:
            for alert in case["exp_alerts"]:
                assert alert.get("exp_labels", {}).get("severity"), (name, case["test"])
                assert alert.get("exp_annotations", {}).get("summary"), (name, case["test"])


def test_alerts_on_replicated_gauges_are_tested_with_several_replicas():
    """A rule reading a database gauge must be shown to fire ONCE with two replicas' copies."""
    cases = rule_tests()
    for rule in alert_rules():
        gauges = [
            g for g in DATABASE_GAUGES if g in rule["expr"] and g != "bitcoin_lstm_alert_threshold"
        ]
        if not gauges:
            continue
        proven = False
        for case in cases:
            if case["alertname"] != rule["alert"] or not case.get("exp_alerts"):
                continue
            for gauge in gauges:
                instances = {
                    re.search(r'instance="([^"]+)"', s["series"]).group(1)  # type: ignore[union-attr]
                    for s in case["input_series"]
                    if s["series"].startswith(gauge + "{") and "instance=" in s["series"]
                }
                proven = proven or len(instances) >= 2
        assert proven, f"{rule['alert']}: no firing test with {gauges} from two replicas"


def test_rules_have_severity_duration_and_annotations_with_values():
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert re.fullmatch(r"(\d+[smhd])+", rule.get("for", "0s")), name
        summary, description = rule["annotations"]["summary"], rule["annotations"]["description"]
        assert summary.strip() and description.strip(), name
        assert "{{" in summary + description, f"{name}: annotations show no value or label"


def test_thresholds_come_from_the_service_with_the_settings_defaults_as_fallback():
    """Every threshold is read as scalar(max(...{name}) or vector(default)), default = Settings'."""
    defaults: dict[str, float] = {}
    for field, name in ((f, n) for n, f in THRESHOLD_SETTINGS.items()):
        value = Settings.model_fields[field].default
        defaults[name] = value.total_seconds() if isinstance(value, timedelta) else float(value)
    used: set[str] = set()
    for rule in alert_rules():
        expr = rule["expr"]
        reads = re.findall(r"bitcoin_lstm_alert_threshold\{[^}]*\}", expr)
        pattern = (
            r'scalar\(max\(bitcoin_lstm_alert_threshold\{name="(\w+)"\}\) '
            r"or vector\(([0-9.]+)\)\)"
        )
        checked = re.findall(pattern, expr)
        assert len(checked) == len(reads), (
            f"{rule['alert']}: a threshold read not as scalar(max(...) or vector(default))"
        )
        for name, fallback in checked:
            assert name in defaults, f"{rule['alert']}: unknown threshold {name}"
            assert float(fallback) == pytest.approx(defaults[name]), (rule["alert"], name)
            used.add(name)
    assert used == set(defaults), f"thresholds never used: {set(defaults) - used}"


def test_replicated_gauges_are_always_aggregated():
    """A bare selector of a database gauge would give one alert per replica (or a matching error)."""
    aggregated = r"(?:max|min|sum|count|absent)(?: by \([^)]*\))?\s*\(\s*$"
    for rule in alert_rules():
        expr = rule["expr"]
        for gauge in DATABASE_GAUGES:
            for match in re.finditer(rf"\b{gauge}\b", expr):
                before = expr[: match.start()]
                assert re.search(aggregated, before), (
                    f"{rule['alert']}: {gauge} at offset {match.start()} is not directly inside "
                    "an aggregation"
                )


# Each mutation breaks one property of the rules; the unit-test file named last must notice.
MUTATIONS: dict[str, tuple[str, str, str]] = {
    "data age per replica": (
        "min by (asset) (bitcoin_lstm_data_age_seconds)\n",
        "bitcoin_lstm_data_age_seconds\n",
        "data_test.yml",
    ),
    "coverage copies per replica": (
        "max by (asset, horizon) (bitcoin_lstm_live_interval_coverage)\n          <",
        "bitcoin_lstm_live_interval_coverage\n          <",
        "forecasts_test.yml",
    ),
    "minimum of scored forecasts ignored": (
        '>= scalar(max(bitcoin_lstm_alert_threshold{name="min_scored_forecasts"}) or vector(10))',
        ">= 0",
        "forecasts_test.yml",
    ),
    "latency threshold hard-coded": (
        'scalar(max(bitcoin_lstm_alert_threshold{name="latency_p95_seconds"}) or vector(0.25))',
        "0.25",
        "api_test.yml",
    ),
    "live error margin not applied": (
        '> 1 + scalar(max(bitcoin_lstm_alert_threshold{name="live_error_margin"}) or vector(0.10))',
        "> 1",
        "forecasts_test.yml",
    ),
    "synchronous /train counted in latency": (', endpoint!="/train"', "", "api_test.yml"),
    "absent API targets missed": (
        'absent(up{job="btc-predictor-api"} == 1)',
        'sum(up{job="btc-predictor-api"}) == 0',
        "availability_test.yml",
    ),
    "new failed-job series missed": (
        '(bitcoin_lstm_jobs_total{status="failed"} unless bitcoin_lstm_jobs_total{status="failed"} offset 1h)',
        'bitcoin_lstm_jobs_total{status="failed"} * 0',
        "jobs_test.yml",
    ),
    "old failures fire after a Prometheus restart": (
        "and on (job, instance) (up offset 1h)",
        "",
        "jobs_test.yml",
    ),
    "no model while the API is down double-pages": (
        '(count(up{job="btc-predictor-api"} == 1) > 0)',
        "vector(1)",
        "data_test.yml",
    ),
    "4xx counted as errors": ('status=~"5.."', 'status=~"[45].."', "api_test.yml"),
    "VaR band judged before 250 days": (
        "(max by (asset, level) (bitcoin_lstm_live_var_scored_days) >= 250)",
        "(max by (asset, level) (bitcoin_lstm_live_var_scored_days) >= 0)",
        "risk_test.yml",
    ),
    "VaR 99 band missing its lower edge": (
        '(bitcoin_lstm_live_var_violation_ratio{level="99"}) < 0.5 / 250',
        '(bitcoin_lstm_live_var_violation_ratio{level="99"}) < 0',
        "risk_test.yml",
    ),
    "range minimum of scored forecasts ignored": (
        "max by (asset, horizon) (bitcoin_lstm_live_range_scored_forecasts)\n"
        '            >= scalar(max(bitcoin_lstm_alert_threshold{name="min_scored_forecasts"}) '
        "or vector(10))",
        "max by (asset, horizon) (bitcoin_lstm_live_range_scored_forecasts) >= 0",
        "risk_test.yml",
    ),
    "adaptive level band too wide": (
        "(bitcoin_lstm_interval_adaptive_level) < 0.85",
        "(bitcoin_lstm_interval_adaptive_level) < 0.75",
        "risk_test.yml",
    ),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_unit_tests_catch_a_broken_rule(mutation: str, tmp_path: Path):
    promtool = tool("promtool")
    old, new, test_file = MUTATIONS[mutation]
    text = ALERTS_YML.read_text()
    assert old in text, f"mutation {mutation!r} no longer applies: update it"
    (tmp_path / "alerts.yml").write_text(text.replace(old, new))
    (tmp_path / "tests").mkdir()
    for path in RULE_TESTS:
        shutil.copy(path, tmp_path / "tests" / path.name)
    mutated = run([promtool, "check", "rules", str(tmp_path / "alerts.yml")])
    assert mutated.returncode == 0, f"the mutation must stay valid PromQL: {mutated.stdout}"
    result = run([promtool, "test", "rules", test_file], cwd=tmp_path / "tests")
    assert result.returncode != 0, f"the unit tests did not notice: {mutation}"
    assert "FAILED" in result.stdout + result.stderr


def test_var_rule_uses_the_kupiec_band_of_250_days():
    """The rule's cut-offs sit half a violation outside the Kupiec POF acceptance region."""
    from btc_predictor.services.risk_health import kupiec_band

    (rule,) = [r for r in alert_rules() if r["alert"] == "BtcpVarViolationsOutsideKupiecBand"]
    for level in (95, 99):
        low, high = kupiec_band(250, level)
        pattern = rf'ratio\{{level="{level}"\}}\) ([<>]) ([0-9.]+) / 250'
        cuts = dict(re.findall(pattern, rule["expr"]))
        assert float(cuts["<"]) == low - 0.5 and float(cuts[">"]) == high + 0.5, level


def test_monitoring_tests_dir_holds_only_rule_tests():
    assert {p.suffix for p in (MONITORING / "tests").iterdir()} == {".yml"}
