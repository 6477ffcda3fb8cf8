"""The Dockerfile (parsed; there is no Docker engine here: CI builds both targets): two final
targets from one builder, non-root, health-checked, torch only in the worker, no baked secrets."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pytest

from tests.deploy.common import DOCKERFILE, REPO

SECRET_NAME = re.compile(
    r"PASSWORD|SECRET|TOKEN|API_KEY|APIKEY|PRIVATE|CREDENTIAL|DATABASE_URL", re.I
)


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]


def parse(text: str) -> tuple[list[tuple[str, str]], dict[str, Stage]]:
    """(global instructions before the first FROM, stages by name) with continuations joined."""
    joined = re.sub(r"\\\n", " ", text)
    preamble: list[tuple[str, str]] = []
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", rest.strip(), re.I)
            assert match, f"every stage is named: FROM {rest}"
            current = Stage(match[2], match[1])
            stages[current.name] = current
        elif current is None:
            preamble.append((keyword, rest.strip()))
        else:
            current.instructions.append((keyword, rest.strip()))
    return preamble, stages


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return parse(DOCKERFILE.read_text())[1]


def chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    """A stage and the stages it is built FROM, nearest first."""
    out = [stages[name]]
    while out[-1].base in stages:
        out.append(stages[out[-1].base])
    return out


def env_of(stages: dict[str, Stage], name: str) -> dict[str, str]:
    """ENV in effect in a final stage (inherited from its bases)."""
    env: dict[str, str] = {}
    for stage in reversed(chain(stages, name)):
        for rest in stage.args("ENV"):
            env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    return env


def test_two_targets_built_from_one_wheel(stages: dict[str, Stage]) -> None:
    assert {"builder", "api", "worker"} <= set(stages)
    assert any("pip wheel" in run and "/wheels" in run for run in stages["builder"].args("RUN"))
    # The final stages copy a venv in; only builder and the venv stages see the sources.
    for target in ("api", "worker"):
        copies = stages[target].args("COPY")
        assert copies == [f"--from={target}-venv /opt/venv /opt/venv"], copies
        assert not any("src" in c for c in copies)


def test_only_the_worker_installs_torch_and_from_the_cpu_index(stages: dict[str, Stage]) -> None:
    api_runs = " ".join(r for s in chain(stages, "api-venv") for r in s.args("RUN"))
    worker_runs = " ".join(r for s in chain(stages, "worker-venv") for r in s.args("RUN"))
    assert "torch" not in api_runs and "[postgres]" in api_runs and "train" not in api_runs
    assert "[train,postgres]" in worker_runs
    args = dict(a.split("=", 1) for a in stages["worker-venv"].args("ARG"))
    assert args["TORCH_VERSION"] == "2.13.0"
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    # torch must be installed before the package, or pip resolves the CUDA build from PyPI.
    runs = stages["worker-venv"].args("RUN")
    torch_step = next(i for i, r in enumerate(runs) if '"torch==${TORCH_VERSION}"' in r)
    package_step = next(i for i, r in enumerate(runs) if "[train,postgres]" in r)
    assert torch_step < package_step and "--index-url" in runs[torch_step]


def test_final_stages_run_as_a_non_root_user(stages: dict[str, Stage]) -> None:
    for target in ("api", "worker"):
        users = stages[target].args("USER")
        assert users, f"{target}: no USER"
        user = users[-1].split(":")[0]
        assert user not in ("0", "root"), target
    assert any("useradd" in r and "--uid 10001" in r for r in stages["base"].args("RUN"))


@pytest.mark.parametrize(("target", "port"), [("api", "8000"), ("worker", "9101")])
def test_final_stages_check_their_health_and_start_the_service(
    stages: dict[str, Stage], target: str, port: str
) -> None:
    healthcheck = stages[target].args("HEALTHCHECK")
    assert len(healthcheck) == 1
    command = json.loads(healthcheck[0].split("CMD", 1)[1])
    assert command[:2] == ["python", "-c"] and "/health/live" in command[2]
    assert port in command[2]
    entry = json.loads(stages[target].args("ENTRYPOINT")[-1]) + json.loads(
        stages[target].args("CMD")[-1]
    )
    env = env_of(stages, target)
    if target == "api":
        assert entry == ["btc-predictor", "serve", "--host", "0.0.0.0", "--port", "8000"]
        assert env["BTCP_EMBEDDED_WORKER"] == "false"
    else:
        assert entry == ["btc-predictor", "worker"]
        assert env["BTCP_WORKER_HOST"] == "0.0.0.0" and env["BTCP_WORKER_PORT"] == port
    assert stages[target].args("EXPOSE") == [port]


def test_no_secret_is_baked_into_an_image() -> None:
    preamble, stages = parse(DOCKERFILE.read_text())
    instructions = preamble + [i for s in stages.values() for i in s.instructions]
    for keyword, rest in instructions:
        if keyword in ("ENV", "ARG"):
            names = (
                re.findall(r"(?:^|\s)(\w+)=", rest) if keyword == "ENV" else [rest.split("=")[0]]
            )
            assert names, f"{keyword} {rest}"
            for name in names:
                assert not SECRET_NAME.search(name), f"{keyword} {rest}: secrets come at run time"
        if keyword in ("COPY", "ADD"):
            assert ".env" not in rest and "api_key" not in rest, rest


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {
        ".venv",
        "data",
        ".git",
        ".env",
        "bench",
        ".pytest_cache",
        ".mypy_cache",
        "tests",
        "**/__pycache__",
        "**/*.db",
        ".artifacts",
    } <= ignored
    # ...but never what the builder copies.
    for needed in ("src", "migrations", "pyproject.toml", "README.md"):
        assert needed not in ignored
