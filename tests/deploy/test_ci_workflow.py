"""The GitHub Actions workflow parses and runs what CI must run: the full suite in strict mode
against PostgreSQL with the same system packages as .ci/run, and both image targets."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.deploy.common import REPO, WORKFLOW, load_yaml


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    return load_yaml(WORKFLOW)


def _steps_text(job: dict[str, Any]) -> list[str]:
    return [
        str(step.get("run", "")) + str(step.get("uses", "")) + str(step.get("with", ""))
        for step in job["steps"]
    ]


def test_runs_on_push_and_pull_request(workflow: dict[str, Any]) -> None:
    # YAML 1.1 (PyYAML) reads the bare key `on` as True.
    triggers = workflow.get("on", workflow.get(True))
    assert set(triggers) >= {"push", "pull_request"}


def test_the_test_job_runs_the_suite_strictly_against_postgres(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["test"]
    postgres = job["services"]["postgres"]
    assert postgres["image"] == "postgres:15"
    assert postgres["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"
    assert "5432:5432" in postgres["ports"]
    assert job["env"]["BTCP_TEST_STRICT"] == "1"
    assert job["container"]["image"].startswith("python:3.11")
    steps = _steps_text(job)
    torch = next(i for i, s in enumerate(steps) if "torch==2.13.0" in s)
    assert "--index-url https://download.pytorch.org/whl/cpu" in steps[torch]
    data = next(i for i, s in enumerate(steps) if "cryptodatadownload.com/cdd/" in s)
    for name in ("BTCUSD", "ETHUSD"):
        assert re.search(rf"\.\./shared/data/Bitstamp_(\$\{{pair\}}|{name})_d\.csv", steps[data])
        assert name in steps[data]
    suite = next(i for i, s in enumerate(steps) if s.strip() == "./run.sh test")
    assert torch < suite and data < suite


def test_the_test_job_installs_the_apt_packages_of_ci_run(workflow: dict[str, Any]) -> None:
    match = re.search(r'^APT_PACKAGES="([^"]+)"', (REPO / ".ci" / "run").read_text(), re.M)
    assert match, ".ci/run no longer lists APT_PACKAGES"
    wanted = set(match[1].split())
    install = next(s for s in _steps_text(workflow["jobs"]["test"]) if "apt-get install" in s)
    installed = set(install.replace("\\", " ").split())
    assert wanted <= installed, f"missing from the workflow: {wanted - installed}"


def test_the_images_job_builds_both_targets(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["images"]
    assert set(job["strategy"]["matrix"]["target"]) == {"api", "worker"}
    build = next(
        step
        for step in job["steps"]
        if str(step.get("uses", "")).startswith("docker/build-push-action")
    )
    assert build["with"]["target"] == "${{ matrix.target }}"
    assert build["with"]["push"] is False
