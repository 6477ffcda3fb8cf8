"""Kubernetes manifests: `kubectl kustomize` renders base and overlay, every object validates
against the Kubernetes 1.30 schemas (strict: misspelled fields fail), and the objects keep the
deployment's promises (probes, limits, non-root, one worker, HPA on the API)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.common import K8S, venv_tool

KUBERNETES_VERSION = "1.30.0"
# Custom resources kubernetes-validate has no schema for; anything else unknown is an error.
EXPECTED_CRDS = {"ServiceMonitor"}
TARGETS = {"base": K8S / "base", "example": K8S / "overlays" / "example"}


def kustomize(directory: Path) -> str:
    done = subprocess.run(
        [venv_tool("kubectl"), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def validate(manifests: str) -> str:
    """kubernetes-validate --strict on stdin; fails on errors and on kinds it cannot check."""
    done = subprocess.run(
        [venv_tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, "-"],
        input=manifests,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    # An unknown apiVersion/kind is only a WARN with exit 0: decide explicitly.
    unchecked = [line for line in output.splitlines() if "Couldn't find schema" in line]
    unexpected = [
        line for line in unchecked if not any(f"kind {kind} " in line for kind in EXPECTED_CRDS)
    ]
    assert not unexpected, "\n".join(unexpected)
    assert "passed for resource deployment/btc-predictor-api" in output
    return output


@pytest.fixture(scope="module", params=sorted(TARGETS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    text = kustomize(TARGETS[request.param])
    return text, [doc for doc in yaml.safe_load_all(text) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} objects"
    return matches[0]


def test_manifests_validate_against_kubernetes(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    text, objects = rendered
    output = validate(text)
    assert {o["kind"] for o in objects} >= {
        "Deployment",
        "HorizontalPodAutoscaler",
        "ConfigMap",
        "Service",
        "Ingress",
        "ServiceMonitor",
    }
    # The one CRD is the only object left unchecked.
    assert output.count("Couldn't find schema") == sum(o["kind"] in EXPECTED_CRDS for o in objects)


def test_a_misspelled_field_is_caught(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    # The validation is strict for real: the same manifests with one typo fail.
    text, _ = rendered
    broken = text.replace("readinessProbe:", "readynessProbe:", 1)
    done = subprocess.run(
        [venv_tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, "-"],
        input=broken,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0


def _pod(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return find(objects, "Deployment", name)["spec"]["template"]["spec"]


def test_api_pods_are_probed_limited_and_non_root(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, objects = rendered
    api = find(objects, "Deployment", "btc-predictor-api")
    assert api["spec"]["replicas"] >= 2
    pod = _pod(objects, "btc-predictor-api")
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["args"] == ["serve", "--host", "0.0.0.0", "--port", "8000"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["BTCP_EMBEDDED_WORKER"] == "false"
    _assert_hardened(pod, container)


def test_exactly_one_worker_runs_the_schedules(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    worker = find(objects, "Deployment", "btc-predictor-worker")
    assert worker["spec"]["replicas"] == 1
    # Recreate: the old pod stops before the new one starts, never two schedulers at once.
    assert worker["spec"]["strategy"] == {"type": "Recreate"}
    assert not [
        o
        for o in objects
        if o["kind"] == "HorizontalPodAutoscaler"
        and o["spec"]["scaleTargetRef"]["name"] == "btc-predictor-worker"
    ]
    pod = _pod(objects, "btc-predictor-worker")
    (container,) = pod["containers"]
    assert container["args"] == ["worker"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "metrics"}
    assert container["ports"] == [{"name": "metrics", "containerPort": 9101}]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["BTCP_WORKER_HOST"] == "0.0.0.0" and env["BTCP_WORKER_PORT"] == "9101"
    _assert_hardened(pod, container)


def _assert_hardened(pod: dict[str, Any], container: dict[str, Any]) -> None:
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] not in (None, 0)
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(
        resources["limits"]
    )
    # Settings from the ConfigMap, secrets from the Secret, nothing secret inline.
    sources = {next(iter(ref)): next(iter(ref.values()))["name"] for ref in container["envFrom"]}
    assert sources == {"configMapRef": "btc-predictor-config", "secretRef": "btc-predictor-secrets"}
    for entry in container.get("env", []):
        assert not any(word in entry["name"] for word in ("KEY", "PASSWORD", "DATABASE_URL")), entry


def test_hpa_scales_the_api_deployment(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    hpa = find(objects, "HorizontalPodAutoscaler", "btc-predictor-api")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "btc-predictor-api",
    }
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


def test_services_ingress_and_servicemonitor_connect(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, objects = rendered
    api_pod_labels = find(objects, "Deployment", "btc-predictor-api")["spec"]["template"][
        "metadata"
    ]["labels"]
    worker_pod_labels = find(objects, "Deployment", "btc-predictor-worker")["spec"]["template"][
        "metadata"
    ]["labels"]
    api_svc = find(objects, "Service", "btc-predictor-api")
    worker_svc = find(objects, "Service", "btc-predictor-worker-metrics")
    assert api_svc["spec"]["selector"].items() <= api_pod_labels.items()
    assert worker_svc["spec"]["selector"].items() <= worker_pod_labels.items()
    backend = find(objects, "Ingress", "btc-predictor-api")["spec"]["rules"][0]["http"]["paths"][0][
        "backend"
    ]
    assert backend["service"] == {"name": "btc-predictor-api", "port": {"name": "http"}}
    monitor = find(objects, "ServiceMonitor", "btc-predictor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert {(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]} == {
        ("http", "/metrics"),
        ("metrics", "/metrics"),
    }
    expressions = {
        e["key"]: set(e["values"]) for e in monitor["spec"]["selector"]["matchExpressions"]
    }
    for svc in (api_svc, worker_svc):
        labels = svc["metadata"]["labels"]
        assert all(labels.get(k) in v for k, v in expressions.items()), svc["metadata"]["name"]
    # Each endpoint's port name exists on the Service it is meant for.
    assert [p["name"] for p in api_svc["spec"]["ports"]] == ["http"]
    assert [p["name"] for p in worker_svc["spec"]["ports"]] == ["metrics"]


def test_postgres_is_external_in_base_and_a_statefulset_in_the_example() -> None:
    base = [d for d in yaml.safe_load_all(kustomize(TARGETS["base"])) if d]
    service = find(base, "Service", "btc-predictor-postgres")
    assert service["spec"]["type"] == "ExternalName"
    assert not [o for o in base if o["kind"] in ("StatefulSet", "Secret")]
    example = [d for d in yaml.safe_load_all(kustomize(TARGETS["example"])) if d]
    assert {o["metadata"].get("namespace") for o in example if o["kind"] != "Namespace"} == {
        "btc-predictor"
    }
    postgres = find(example, "StatefulSet", "btc-predictor-postgres")
    service = find(example, "Service", "btc-predictor-postgres")
    assert service["spec"]["clusterIP"] == "None" and "externalName" not in service["spec"]
    assert postgres["spec"]["serviceName"] == "btc-predictor-postgres"
    assert (
        service["spec"]["selector"].items()
        <= postgres["spec"]["template"]["metadata"]["labels"].items()
    )
    (container,) = postgres["spec"]["template"]["spec"]["containers"]
    password = next(e for e in container["env"] if e["name"] == "POSTGRES_PASSWORD")
    assert password["valueFrom"]["secretKeyRef"]["name"] == "btc-predictor-postgres"
    assert postgres["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    # No Secret object is ever rendered: applying one would overwrite the real values.
    assert not [o for o in example if o["kind"] == "Secret"]
    images = {
        c["image"]
        for o in example
        if o["kind"] == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    assert images == {
        "ghcr.io/example/btc-predictor-api:0.1.0",
        "ghcr.io/example/btc-predictor-worker:0.1.0",
    }


def test_the_secret_template_validates_and_holds_no_value() -> None:
    template = K8S / "base" / "secret.example.yaml"
    text = template.read_text()
    validate_output = subprocess.run(
        [venv_tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, str(template)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert validate_output.returncode == 0, validate_output.stdout + validate_output.stderr
    secret = yaml.safe_load(text)
    assert secret["kind"] == "Secret" and "data" not in secret
    assert set(secret["stringData"]) == {"BTCP_API_KEY", "BTCP_DATABASE_URL"}
    assert all(value == "" for value in secret["stringData"].values())
    assert "kubectl -n btc-predictor create secret generic btc-predictor-secrets" in text
    assert (
        "secret.example.yaml"
        not in (K8S / "base" / "kustomization.yaml").read_text().split("resources:")[1]
    )
