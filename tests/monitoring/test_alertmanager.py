"""monitoring/alertmanager: the configuration template and entrypoint.sh, which renders it from
ALERT_* variables (secrets into 0600 files) and execs Alertmanager."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring.common import ALERTMANAGER_TEMPLATE, ENTRYPOINT, run, tool

WEBHOOK = "https://hooks.slack.com/services/T000TEST/B000TEST/not-a-real-token&x|y"
PASSWORD = 'smtp p&ss|w"rd'
EMAIL = {
    "ALERT_EMAIL_TO": "ops@example.com, oncall@example.com",
    "ALERT_SMTP_FROM": "btc-predictor alerts <alerts@example.com>",
    "ALERT_SMTP_SMARTHOST": "smtp.example.com:587",
}
FULL = {**EMAIL, "ALERT_SMTP_PASSWORD": PASSWORD, "ALERT_SLACK_WEBHOOK_URL": WEBHOOK}


def entrypoint(
    render_dir: Path, env: dict[str, str], *args: str, shell: tuple[str, ...] = ("sh",)
) -> subprocess.CompletedProcess[str]:
    """Run entrypoint.sh with exactly ``env`` (nothing inherited from the developer's shell)."""
    base = {"PATH": os.environ["PATH"], "ALERTMANAGER_RENDER_DIR": str(render_dir)}
    return run([*shell, str(ENTRYPOINT), *args], env={**base, **env})


def render(render_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    """Render only; the parsed configuration (the run must succeed and name the file)."""
    result = entrypoint(render_dir, env, "--render-only")
    assert result.returncode == 0, result.stderr
    config = render_dir / "alertmanager.yml"
    assert result.stdout.strip() == str(config)
    return dict(yaml.safe_load(config.read_text()))


def amtool_check(path: Path) -> None:
    """amtool check-config must accept the file."""
    result = run([tool("amtool"), "check-config", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def receiver(config: dict[str, Any], name: str) -> dict[str, Any]:
    """One receiver by name."""
    (found,) = [r for r in config["receivers"] if r["name"] == name]
    return dict(found)


def mode(path: Path) -> int:
    """Permission bits of a file."""
    return stat.S_IMODE(path.stat().st_mode)


def test_the_template_itself_is_a_valid_configuration_without_channels():
    amtool_check(ALERTMANAGER_TEMPLATE)
    config = yaml.safe_load(ALERTMANAGER_TEMPLATE.read_text())
    assert {r["name"] for r in config["receivers"]} == {"null", "critical", "warning"}
    assert all(set(r) == {"name"} for r in config["receivers"])


def test_full_render_routes_by_severity_and_keeps_secrets_in_0600_files(tmp_path: Path):
    out = tmp_path / "am"
    config = render(out, FULL)
    amtool_check(out / "alertmanager.yml")

    assert mode(out) == 0o700
    assert (out / "slack_webhook_url").read_text() == WEBHOOK
    assert (out / "smtp_password").read_text() == PASSWORD
    assert mode(out / "slack_webhook_url") == 0o600
    assert mode(out / "smtp_password") == 0o600
    text = (out / "alertmanager.yml").read_text()
    assert "not-a-real-token" not in text and "p&ss" not in text
    settings = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in settings if re.search(r"@[A-Z_]+@", line)], "placeholder left"
    assert not [line for line in text.splitlines() if line.startswith("#@")], "marker left"

    assert config["global"] == {
        "resolve_timeout": "5m",
        "smtp_smarthost": "smtp.example.com:587",
        "smtp_from": "btc-predictor alerts <alerts@example.com>",
        "smtp_auth_username": "alerts@example.com",
        "smtp_auth_password_file": str(out / "smtp_password"),
        "slack_api_url_file": str(out / "slack_webhook_url"),
    }
    routes = {tuple(r["matchers"]): r["receiver"] for r in config["route"]["routes"]}
    assert routes == {('severity="critical"',): "critical", ('severity="warning"',): "warning"}
    critical, warning = receiver(config, "critical"), receiver(config, "warning")
    assert critical["email_configs"][0]["to"] == EMAIL["ALERT_EMAIL_TO"]
    assert len(critical["slack_configs"]) == 1
    assert "email_configs" not in warning, "warnings go to Slack only when Slack is set"
    assert len(warning["slack_configs"]) == 1
    assert config["route"]["receiver"] == "null"
    assert set(receiver(config, "null")) == {"name"}


def test_email_only_sends_warnings_by_email_and_needs_no_password(tmp_path: Path):
    out = tmp_path / "am"
    config = render(out, EMAIL)
    amtool_check(out / "alertmanager.yml")
    assert "slack_api_url_file" not in config["global"]
    assert "smtp_auth_username" not in config["global"]
    assert "smtp_auth_password_file" not in config["global"]
    assert not (out / "smtp_password").exists() and not (out / "slack_webhook_url").exists()
    for name in ("critical", "warning"):
        r = receiver(config, name)
        assert [c["to"] for c in r["email_configs"]] == [EMAIL["ALERT_EMAIL_TO"]], name
        assert "slack_configs" not in r


def test_slack_only_renders_no_email_settings(tmp_path: Path):
    out = tmp_path / "am"
    config = render(out, {"ALERT_SLACK_WEBHOOK_URL": WEBHOOK})
    amtool_check(out / "alertmanager.yml")
    assert set(config["global"]) == {"resolve_timeout", "slack_api_url_file"}
    for name in ("critical", "warning"):
        assert set(receiver(config, name)) == {"name", "slack_configs"}, name


def test_no_channel_configured_still_starts_and_says_so(tmp_path: Path):
    out = tmp_path / "am"
    result = entrypoint(out, {"ALERT_EMAIL_TO": "", "ALERT_SLACK_WEBHOOK_URL": ""}, "--render-only")
    assert result.returncode == 0, result.stderr
    assert "warning" in result.stderr and "only shown in the Alertmanager UI" in result.stderr
    amtool_check(out / "alertmanager.yml")
    config = yaml.safe_load((out / "alertmanager.yml").read_text())
    assert all(set(r) == {"name"} for r in config["receivers"])


@pytest.mark.parametrize("missing", sorted(EMAIL))
def test_a_missing_email_variable_fails_clearly(missing: str, tmp_path: Path):
    out = tmp_path / "am"
    env = {k: v for k, v in FULL.items() if k != missing}
    result = entrypoint(out, env, "--render-only")
    assert result.returncode == 2
    assert "error" in result.stderr and missing in result.stderr
    assert result.stderr.count("\n") == 1, "one clear line"
    assert not (out / "alertmanager.yml").exists()
    assert not (out / "smtp_password").exists()


def test_a_password_without_the_email_settings_fails_naming_all_of_them(tmp_path: Path):
    result = entrypoint(tmp_path / "am", {"ALERT_SMTP_PASSWORD": PASSWORD}, "--render-only")
    assert result.returncode == 2
    for name in EMAIL:
        assert name in result.stderr
    assert PASSWORD not in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ALERT_EMAIL_TO", 'ops@example.com"\n  smtp_require_tls: false', "quotes"),
        ("ALERT_SMTP_FROM", "alerts@example.com\\", "backslashes"),
        ("ALERT_SMTP_SMARTHOST", "smtp.example.com", "host:port"),
        ("ALERT_SMTP_SMARTHOST", "smtp.example.com:smtp", "host:port"),
        ("ALERT_SMTP_SMARTHOST", ":587", "host:port"),
    ],
)
def test_unsafe_or_malformed_values_are_rejected(
    variable: str, value: str, message: str, tmp_path: Path
):
    result = entrypoint(tmp_path / "am", {**FULL, variable: value}, "--render-only")
    assert result.returncode == 2
    assert variable in result.stderr and message in result.stderr


def test_a_webhook_that_is_not_an_url_is_rejected(tmp_path: Path):
    result = entrypoint(
        tmp_path / "am", {"ALERT_SLACK_WEBHOOK_URL": "T000/B000/x"}, "--render-only"
    )
    assert result.returncode == 2
    assert "ALERT_SLACK_WEBHOOK_URL" in result.stderr
    assert "T000/B000/x" not in result.stderr, "a secret is never echoed"


def test_rerender_tightens_existing_secret_files_and_removes_unset_ones(tmp_path: Path):
    out = tmp_path / "am"
    out.mkdir(mode=0o755)
    (out / "slack_webhook_url").write_text("https://old.example.com/hook")
    (out / "slack_webhook_url").chmod(0o644)
    (out / "smtp_password").write_text("old")
    render(out, {"ALERT_SLACK_WEBHOOK_URL": WEBHOOK})
    assert mode(out) == 0o700
    assert mode(out / "slack_webhook_url") == 0o600
    assert (out / "slack_webhook_url").read_text() == WEBHOOK
    assert not (out / "smtp_password").exists(), "a secret no longer configured is removed"


def fake_alertmanager(tmp_path: Path) -> Path:
    """A stand-in binary that records its arguments and exits 3."""
    fake = tmp_path / "fake-alertmanager"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > "$0.args"\nexit 3\n')
    fake.chmod(0o755)
    return fake


def test_execs_alertmanager_with_the_rendered_config_and_default_storage(tmp_path: Path):
    fake, out = fake_alertmanager(tmp_path), tmp_path / "am"
    result = entrypoint(out, {**FULL, "ALERTMANAGER_BIN": str(fake)})
    assert result.returncode == 3, result.stderr
    args = Path(f"{fake}.args").read_text().splitlines()
    assert args == [f"--config.file={out}/alertmanager.yml", "--storage.path=/alertmanager"]


def test_passes_its_arguments_through(tmp_path: Path):
    fake, out = fake_alertmanager(tmp_path), tmp_path / "am"
    result = entrypoint(
        out, {**EMAIL, "ALERTMANAGER_BIN": str(fake)}, "--storage.path=/data", "--log.level=debug"
    )
    assert result.returncode == 3, result.stderr
    args = Path(f"{fake}.args").read_text().splitlines()
    assert args == [
        f"--config.file={out}/alertmanager.yml",
        "--storage.path=/data",
        "--log.level=debug",
    ]


def test_render_only_can_be_asked_for_by_environment(tmp_path: Path):
    fake, out = fake_alertmanager(tmp_path), tmp_path / "am"
    result = entrypoint(
        out, {**EMAIL, "ALERTMANAGER_BIN": str(fake), "ALERTMANAGER_RENDER_ONLY": "1"}
    )
    assert result.returncode == 0
    assert not Path(f"{fake}.args").exists()


def test_renders_the_same_under_busybox_sh(tmp_path: Path):
    """The prom/alertmanager image has busybox sh, not dash or bash."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed (apt-get install busybox)")
    dash_out, busybox_out = tmp_path / "dash", tmp_path / "busybox"
    assert entrypoint(dash_out, FULL, "--render-only").returncode == 0
    result = entrypoint(busybox_out, FULL, "--render-only", shell=(busybox, "sh"))
    assert result.returncode == 0, result.stderr
    rendered = (busybox_out / "alertmanager.yml").read_text()
    assert rendered == (dash_out / "alertmanager.yml").read_text().replace(
        str(dash_out), str(busybox_out)
    )
    assert (busybox_out / "smtp_password").read_text() == PASSWORD
    assert mode(busybox_out / "smtp_password") == 0o600
    missing = entrypoint(busybox_out, EMAIL | {"ALERT_SMTP_FROM": ""}, shell=(busybox, "sh"))
    assert missing.returncode == 2 and "ALERT_SMTP_FROM" in missing.stderr


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_real_alertmanager_runs_on_the_rendered_config(tmp_path: Path):
    binary = shutil.which("alertmanager") or shutil.which("prometheus-alertmanager")
    if binary is None:
        tool("prometheus-alertmanager")  # skips, or fails under BTCP_TEST_STRICT=1
    assert binary is not None
    port, out = free_port(), tmp_path / "am"
    env = {
        "PATH": os.environ["PATH"],
        **FULL,
        "ALERTMANAGER_RENDER_DIR": str(out),
        "ALERTMANAGER_BIN": binary,
    }
    log = tmp_path / "alertmanager.log"
    with log.open("w") as log_file:
        proc = subprocess.Popen(
            [
                "sh",
                str(ENTRYPOINT),
                f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        status: dict[str, Any] | None = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/v2/status", timeout=2
                ) as r:
                    status = json.load(r)
                break
            except OSError:
                time.sleep(0.2)
        assert status is not None, f"alertmanager did not come up: {log.read_text()}"
        loaded = yaml.safe_load(status["config"]["original"])
        assert {r["name"] for r in loaded["receivers"]} == {"null", "critical", "warning"}
        assert loaded["global"]["slack_api_url_file"] == str(out / "slack_webhook_url")
        assert WEBHOOK not in status["config"]["original"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
