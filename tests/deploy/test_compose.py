"""The Compose stack: docker-compose 1.29 accepts both files, and their structure keeps the
promises of the README (health, start order, scaling, no secret defaults, monitoring mounts)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import unavailable
from tests.deploy.common import (
    COMPOSE_FILE,
    DEPLOY_FILE,
    ENV_EXAMPLE,
    REPO,
    SECRETS,
    TEST_ENV,
    load_yaml,
)

REQUIRED_SERVICES = {"api", "worker", "postgres", "prometheus", "alertmanager", "grafana"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|WEBHOOK|BASIC_AUTH", re.IGNORECASE)
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}
INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def compose(*files: Path, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`docker-compose -f ... config -q` with exactly ``env`` (and an empty env file, so a
    developer's own .env cannot make the test pass or fail)."""
    binary = shutil.which("docker-compose")
    if binary is None:
        unavailable("docker-compose is not installed (apt-get install docker-compose)")
    assert binary is not None
    empty = tmp_path / "empty.env"
    empty.write_text("")
    args = [binary, "--env-file", str(empty), "--project-directory", str(REPO)]
    for file in files:
        args += ["-f", str(file)]
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), **env}
    return subprocess.run(
        [*args, "config", "-q"],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )


@pytest.mark.parametrize(
    "files", [(COMPOSE_FILE,), (COMPOSE_FILE, DEPLOY_FILE)], ids=["local", "deploy"]
)
def test_docker_compose_accepts_the_files(files: tuple[Path, ...], tmp_path: Path) -> None:
    done = compose(*files, env=TEST_ENV, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("secret", SECRETS)
def test_compose_refuses_to_run_without_each_secret(secret: str, tmp_path: Path) -> None:
    env = {k: v for k, v in TEST_ENV.items() if k != secret}
    done = compose(COMPOSE_FILE, env=env, tmp_path=tmp_path)
    assert done.returncode != 0
    assert f"{secret} is required" in done.stderr and ".env.example" in done.stderr


@pytest.mark.parametrize("variable", ["DOMAIN", "PROMETHEUS_BASIC_AUTH"])
def test_the_deploy_file_requires_a_domain_and_prometheus_auth(
    variable: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in TEST_ENV.items() if k != variable}
    assert compose(COMPOSE_FILE, env=env, tmp_path=tmp_path).returncode == 0  # local: not needed
    done = compose(COMPOSE_FILE, DEPLOY_FILE, env=env, tmp_path=tmp_path)
    assert done.returncode != 0 and f"{variable} is required" in done.stderr


# --- structure (parsed YAML; runs without docker-compose) --------------------------------------


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)["services"]


@pytest.fixture(scope="module")
def deploy_services() -> dict[str, Any]:
    return load_yaml(DEPLOY_FILE)["services"]


def test_the_stack_has_its_services_each_with_a_healthcheck(services: dict[str, Any]) -> None:
    assert set(services) >= REQUIRED_SERVICES
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
        assert not service.get("healthcheck", {}).get("disable"), name


def test_start_order_waits_for_healthy_dependencies(services: dict[str, Any]) -> None:
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["postgres"] == {"condition": "service_healthy"}, name
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    # Every dependency named is a service and waits for health or start (1.29 long syntax).
    for name, service in services.items():
        for dep, cond in service.get("depends_on", {}).items():
            assert dep in services, (name, dep)
            assert cond["condition"] in ("service_healthy", "service_started"), (name, dep)


def test_the_api_scales_and_leaves_jobs_to_the_worker(services: dict[str, Any]) -> None:
    api, worker = services["api"], services["worker"]
    # container_name or a host port would make `--scale api=3` fail.
    assert all("container_name" not in s for s in services.values())
    assert "ports" not in api
    assert api["environment"]["BTCP_EMBEDDED_WORKER"] == "false"
    assert api["build"] == {"context": ".", "target": "api"}
    assert worker["build"] == {"context": ".", "target": "worker"}
    # monitoring/prometheus.yml scrapes worker:9101, on all interfaces.
    assert worker["environment"]["BTCP_WORKER_HOST"] == "0.0.0.0"
    assert worker["environment"]["BTCP_WORKER_PORT"] == "9101"
    for name in ("api", "worker"):
        env = services[name]["environment"]
        assert env["BTCP_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert "@postgres:5432/" in env["BTCP_DATABASE_URL"]
        # No model volume: models live in PostgreSQL, so replicas share nothing on disk.
        assert not [v for v in services[name].get("volumes", []) if ":" in str(v)], name
    # One entry point for every replica: the gateway resolves `api` per request via Docker DNS.
    gateway = services["gateway"]
    assert gateway["ports"] == ["${API_PUBLISH:-127.0.0.1:8000}:8080"]
    conf = (REPO / "deploy/compose/nginx.conf").read_text()
    assert "resolver 127.0.0.11" in conf and "set $api_upstream http://api:8000;" in conf
    assert "listen 8080;" in conf and "proxy_pass $api_upstream;" in conf


def test_postgres_keeps_its_data_in_a_named_volume(services: dict[str, Any]) -> None:
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "pgdata" in load_yaml(COMPOSE_FILE)["volumes"]


def test_monitoring_files_are_mounted_where_the_monitoring_config_expects(
    services: dict[str, Any],
) -> None:
    prometheus, alertmanager, grafana = (
        services[n] for n in ("prometheus", "alertmanager", "grafana")
    )
    assert "./monitoring/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    assert "./monitoring/alerts.yml:/etc/prometheus/alerts.yml:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert "./monitoring/alertmanager:/etc/alertmanager:ro" in alertmanager["volumes"]
    assert alertmanager["entrypoint"] == ["/bin/sh", "/etc/alertmanager/entrypoint.sh"]
    assert set(alertmanager["environment"]) == {
        "ALERT_SLACK_WEBHOOK_URL",
        "ALERT_SMTP_PASSWORD",
        "ALERT_EMAIL_TO",
        "ALERT_SMTP_FROM",
        "ALERT_SMTP_SMARTHOST",
        "ALERT_SMTP_USERNAME",
    }
    assert "./monitoring/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert "./monitoring/grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana["volumes"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith(
        "${GRAFANA_ADMIN_PASSWORD:?"
    )


def test_the_domain_deploy_routes_through_traefik(
    services: dict[str, Any], deploy_services: dict[str, Any]
) -> None:
    deploy = load_yaml(DEPLOY_FILE)
    network = deploy["networks"]["traefik"]
    assert network == {"external": True, "name": "${TRAEFIK_NETWORK:-dokploy-network}"}
    # The base file never needs the external network: `run.sh start` works on a laptop.
    assert "networks" not in load_yaml(COMPOSE_FILE)
    assert all("networks" not in s and "labels" not in s for s in services.values())

    def labels(name: str) -> str:
        service = deploy_services[name]
        assert service["networks"] == ["default", "traefik"], name
        return "\n".join(service["labels"])

    api = labels("api")
    assert "traefik.enable=true" in api
    assert re.search(r"routers\.\S+-api\.rule=Host\(`\$\{DOMAIN:\?[^}]*\}`\)$", api, re.M)
    assert re.search(r"services\.\S+-api\.loadbalancer\.server\.port=8000$", api, re.M)
    assert "traefik.docker.network=${TRAEFIK_NETWORK:-dokploy-network}" in api

    grafana = labels("grafana")
    assert "PathPrefix(`/grafana`)" in grafana
    env = deploy_services["grafana"]["environment"]
    assert env["GF_SERVER_SERVE_FROM_SUB_PATH"] == "true"
    assert env["GF_SERVER_ROOT_URL"].endswith("/grafana/")
    assert "/grafana/api/health" in " ".join(deploy_services["grafana"]["healthcheck"]["test"])

    prometheus = labels("prometheus")
    assert "PathPrefix(`/prometheus`)" in prometheus
    assert "stripprefix.prefixes=/prometheus" in prometheus and "basicauth.users=" in prometheus
    command = deploy_services["prometheus"]["command"]
    # Grafana's datasource is http://prometheus:9090: the route prefix must stay `/`.
    assert "--web.route-prefix=/" in command
    assert any(
        re.fullmatch(r"--web\.external-url=https://\$\{DOMAIN[^}]*\}/prometheus/", c)
        for c in command
    )
    # The override repeats every base flag (Compose replaces `command` wholesale).
    assert set(services["prometheus"]["command"]) <= set(command)


def _interpolations(text: str) -> list[re.Match[str]]:
    return list(INTERPOLATION.finditer(text))


@pytest.mark.parametrize("path", [COMPOSE_FILE, DEPLOY_FILE], ids=["local", "deploy"])
def test_no_secret_has_a_default(path: Path) -> None:
    text = path.read_text()
    seen = set()
    for match in _interpolations(text):
        name, op, arg = match["name"], match["op"] or "", match["arg"] or ""
        if name in SECRETS:
            seen.add(name)
            assert op == ":?", f"{match[0]}: the secret {name} must be required (${{{name}:?msg}})"
        elif SECRET_NAME.search(name):
            # Optional secrets (alert receivers) may be empty, never a made-up value.
            assert op in (":?", "?") or arg == "", f"{match[0]}: secret-looking default"
    if path == COMPOSE_FILE:
        assert seen == set(SECRETS)
    # No literal secret values: every secret-looking key is set only by interpolation.
    for name, service in load_yaml(path)["services"].items():
        env = service.get("environment") or {}
        assert isinstance(env, dict), f"{name}: use the mapping form for environment"
        for key, value in env.items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{\w+(:\?[^}]*|:-)\}", str(value)), (name, key, value)
        url = env.get("BTCP_DATABASE_URL")
        if url:
            assert re.search(r"://(\$\{[^}]*\}|[^:@/]+):\$\{POSTGRES_PASSWORD:\?[^}]*\}@", url), url


def test_env_example_documents_every_variable_and_holds_no_secret() -> None:
    documented: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^#?\s*(\w+)=(.*)$", line)
        if match:
            documented[match[1]] = match[2]
    used = {
        m["name"] for path in (COMPOSE_FILE, DEPLOY_FILE) for m in _interpolations(path.read_text())
    }
    assert used - set(documented) == set(), (
        "variables used by Compose but missing from .env.example"
    )
    for name in (
        *SECRETS,
        "PROMETHEUS_BASIC_AUTH",
        "ALERT_SLACK_WEBHOOK_URL",
        "ALERT_SMTP_PASSWORD",
    ):
        assert documented[name] == "", f".env.example must not carry a value for {name}"
    # Defaults in .env.example agree with the files' own defaults.
    for match in _interpolations(COMPOSE_FILE.read_text()):
        if match["op"] == ":-" and match["arg"]:
            assert documented[match["name"]] == match["arg"], match["name"]


def test_the_files_stay_within_the_docker_compose_1_29_subset() -> None:
    for path in (COMPOSE_FILE, DEPLOY_FILE):
        data = load_yaml(path)
        assert not {"name", "include"} & set(data), path
        for name, service in data["services"].items():
            assert "start_interval" not in service.get("healthcheck", {}), (path, name)
            assert "develop" not in service, (path, name)
            for dep in (service.get("depends_on") or {}).values():
                assert not {"required", "restart"} & set(dep), (path, name)


def test_every_mounted_host_path_exists(services: dict[str, Any]) -> None:
    # A missing file would make Docker create an empty directory in its place at `up`.
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name}: {source}"
    assert (REPO / "monitoring/alertmanager/entrypoint.sh").is_file()
    assert (REPO / "monitoring/alertmanager/alertmanager.yml").is_file()
