"""run.sh's Docker verbs, driven with fake `docker` / `docker-compose` executables that record
their arguments (there is no Docker engine here; the real Compose files are checked in
test_compose.py). run.sh runs from a copy in a temp dir so a developer's .env never interferes."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.common import REPO, TEST_ENV

SECRETS_ENV = {
    k: TEST_ENV[k] for k in ("BTCP_API_KEY", "POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD")
}
# What run.sh needs from the system besides docker (kept minimal so "no docker" is real).
TOOLS = ("bash", "dirname", "sed", "cat")
FAKE = """#!/bin/sh
# Records one line per call: the program, DOMAIN as exported by run.sh, and the arguments.
echo "$(basename "$0") DOMAIN=${{DOMAIN:-}} $*" >> "{log}"
{extra}
exit 0
"""


@dataclass
class Sandbox:
    root: Path
    bin: Path
    log: Path

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        full_env = {
            "PATH": str(self.bin),
            "HOME": str(self.root),
            **(SECRETS_ENV if env is None else env),
        }
        return subprocess.run(
            [str(self.bin / "bash"), str(self.root / "run.sh"), *args],
            env=full_env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=self.root,
        )

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def fake(self, name: str, extra: str = "") -> None:
        path = self.bin / name
        path.write_text(FAKE.format(log=self.log, extra=extra))
        path.chmod(0o755)


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("run.sh", "docker-compose.yml", "docker-compose.deploy.yml", ".env.example"):
        shutil.copy2(REPO / name, root / name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in (*TOOLS, "basename"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    return Sandbox(root, bin_dir, tmp_path / "calls.log")


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0
    message = done.stderr.strip()
    assert message.startswith("run.sh: ") and "\n" not in message, done.stderr
    return message


def test_start_without_docker_says_so(sandbox: Sandbox) -> None:
    message = one_line_error(sandbox.run("start"))
    assert "docker is not installed" in message


def test_docker_without_compose_says_so(sandbox: Sandbox) -> None:
    sandbox.fake("docker", extra='[ "$1" = compose ] && exit 1')
    message = one_line_error(sandbox.run("start"))
    assert "Docker Compose is missing" in message
    assert sandbox.calls() == ["docker DOMAIN= compose version"]


def test_start_stop_logs_use_the_compose_plugin(sandbox: Sandbox) -> None:
    sandbox.fake("docker")
    started = sandbox.run("start")
    assert started.returncode == 0, started.stderr
    assert "http://localhost:8000" in started.stdout and "http://localhost:3000" in started.stdout
    assert sandbox.run("start", "--scale", "api=3").returncode == 0
    assert sandbox.run("stop").returncode == 0
    assert sandbox.run("logs", "api").returncode == 0
    compose_calls = [c for c in sandbox.calls() if c != "docker DOMAIN= compose version"]
    assert compose_calls == [
        "docker DOMAIN= compose -f docker-compose.yml up -d --build",
        "docker DOMAIN= compose -f docker-compose.yml up -d --build --scale api=3",
        "docker DOMAIN= compose -f docker-compose.yml down",
        "docker DOMAIN= compose -f docker-compose.yml logs -f --tail=200 api",
    ]


def test_standalone_docker_compose_is_used_when_there_is_no_plugin(sandbox: Sandbox) -> None:
    sandbox.fake("docker-compose")
    assert sandbox.run("start").returncode == 0
    env = {**SECRETS_ENV, "PROMETHEUS_BASIC_AUTH": "x"}
    assert sandbox.run("deploy", "example.com", env=env).returncode == 0
    # Without the docker CLI the network check is left to Compose.
    assert sandbox.calls() == [
        "docker-compose DOMAIN= -f docker-compose.yml up -d --build",
        "docker-compose DOMAIN=example.com -f docker-compose.yml -f docker-compose.deploy.yml up -d --build",
    ]


def test_deploy_uses_the_deploy_file_and_exports_the_domain(sandbox: Sandbox) -> None:
    sandbox.fake("docker")
    env = {**SECRETS_ENV, "PROMETHEUS_BASIC_AUTH": TEST_ENV["PROMETHEUS_BASIC_AUTH"]}
    done = sandbox.run("deploy", "Example.COM", env=env)
    assert done.returncode == 0, done.stderr
    assert (
        "https://example.com/grafana" in done.stdout
        and "https://example.com/prometheus" in done.stdout
    )
    assert sandbox.calls() == [
        "docker DOMAIN= compose version",
        # The external Traefik network must exist before Compose is asked to join it.
        "docker DOMAIN=example.com network inspect dokploy-network",
        "docker DOMAIN=example.com compose -f docker-compose.yml -f docker-compose.deploy.yml up -d --build",
    ]


def test_deploy_checks_the_configured_traefik_network(sandbox: Sandbox) -> None:
    sandbox.fake("docker", extra='[ "$1" = network ] && exit 1')
    env = {**SECRETS_ENV, "PROMETHEUS_BASIC_AUTH": "x", "TRAEFIK_NETWORK": "proxy"}
    message = one_line_error(sandbox.run("deploy", "example.com", env=env))
    assert "`proxy` does not exist" in message
    assert not [c for c in sandbox.calls() if " up " in c]


@pytest.mark.parametrize(
    "domain",
    [
        "",
        "https://example.com",
        "example.com/api",
        "example.com:8443",
        "localhost",
        "-bad.example.com",
        "exa_mple.com",
        "a..b.com",
        "example.com; rm -rf /",
        "x" * 64 + ".com",
    ],
)
def test_deploy_rejects_what_is_not_a_domain(sandbox: Sandbox, domain: str) -> None:
    sandbox.fake("docker")
    env = {**SECRETS_ENV, "PROMETHEUS_BASIC_AUTH": "x"}
    args = ("deploy", domain) if domain else ("deploy",)
    message = one_line_error(sandbox.run(*args, env=env))
    assert "domain" in message
    assert sandbox.calls() == []


def test_deploy_needs_prometheus_basic_auth(sandbox: Sandbox) -> None:
    sandbox.fake("docker")
    message = one_line_error(sandbox.run("deploy", "example.com"))
    assert "PROMETHEUS_BASIC_AUTH is not set" in message


@pytest.mark.parametrize("missing", sorted(SECRETS_ENV))
def test_a_missing_secret_stops_before_compose(sandbox: Sandbox, missing: str) -> None:
    sandbox.fake("docker")
    env = {k: v for k, v in SECRETS_ENV.items() if k != missing}
    message = one_line_error(sandbox.run("start", env=env))
    assert (
        message
        == f"run.sh: {missing} is not set and there is no .env: cp .env.example .env and fill in the secrets"
    )
    # With a .env that leaves it empty (a fresh copy of .env.example), the message points there.
    shutil.copy2(sandbox.root / ".env.example", sandbox.root / ".env")
    message = one_line_error(sandbox.run("start", env={}))
    assert message.startswith("run.sh: ") and "is not set: add it to .env" in message
    assert not [c for c in sandbox.calls() if " up " in c]


def test_secrets_from_env_file_are_accepted(sandbox: Sandbox) -> None:
    sandbox.fake("docker")
    (sandbox.root / ".env").write_text(
        "# comment\nBTCP_API_KEY=abc\nexport POSTGRES_PASSWORD='p$w'\n  GRAFANA_ADMIN_PASSWORD=\"g\"  \n"
        "API_PUBLISH=0.0.0.0:8080\n"
    )
    done = sandbox.run("start", env={})
    assert done.returncode == 0, done.stderr
    assert "http://localhost:8080" in done.stdout


def test_clean_refuses_without_a_terminal_unless_yes(sandbox: Sandbox) -> None:
    sandbox.fake("docker")
    message = one_line_error(sandbox.run("clean"))
    assert "--yes" in message and "not a terminal" in message
    assert not [c for c in sandbox.calls() if " down" in c]
    assert sandbox.run("clean", "--yes").returncode == 0
    assert (
        sandbox.calls()[-1]
        == "docker DOMAIN= compose -f docker-compose.yml down -v --remove-orphans"
    )
    assert one_line_error(sandbox.run("clean", "--force"))


def test_usage_lists_every_verb(sandbox: Sandbox) -> None:
    done = sandbox.run()
    assert done.returncode == 2
    for verb in (
        "local",
        "test",
        "start",
        "stop",
        "logs [SERVICE]",
        "clean [--yes]",
        "deploy DOMAIN",
    ):
        assert f"./run.sh {verb}" in done.stdout, verb
