"""deploy/k8s: every manifest is valid against the Kubernetes API's schemas (bundled with
kubernetes-validate, offline, strict: unknown fields fail), the KEDA ScaledObject against the
schema in tests/deploy/schemas/, and the containers start with arguments and environment the
services' own settings loaders accept."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from control_plane.settings import ControlPlaneSettings
from fleet.settings import load_settings
from router.settings import RouterSettings
from tests.deploy.test_compose import _env_names
from tests.support.processes import REPO_ROOT

K8S = REPO_ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"  # the oldest version the manifests promise to work with
MANIFESTS = sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")
KEDA_SCHEMA = json.loads(
    (REPO_ROOT / "tests" / "deploy" / "schemas" / "keda-scaledobject.schema.json").read_text())
SETTINGS = {"router": RouterSettings, "control-plane": ControlPlaneSettings}


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _all() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in _documents(path)]


def _find(kind: str, name: str) -> dict[str, Any]:
    return next(d for d in _all() if d["kind"] == kind and d["metadata"]["name"] == name)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_is_valid_for_kubernetes(path: Path) -> None:
    for doc in _documents(path):
        if doc["apiVersion"].startswith("keda.sh/"):
            jsonschema.validate(doc, KEDA_SCHEMA)
        else:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_keda_schema_refuses_a_misspelt_field() -> None:
    scaled = _find("ScaledObject", "router")
    broken = json.loads(json.dumps(scaled))
    broken["spec"]["maxReplicas"] = broken["spec"].pop("maxReplicaCount")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, KEDA_SCHEMA)


def test_kustomization_applies_every_manifest_but_the_optional_ones() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = {K8S / name for name in kustomization["resources"]}
    assert listed == {p for p in MANIFESTS if p.parent == K8S}
    # KEDA and a plain HPA would both drive the router's replicas: only one is applied.
    assert not any("hpa" in str(p) for p in listed)


def test_keda_scales_the_router_on_metrics_the_router_exports() -> None:
    scaled = _find("ScaledObject", "router")
    assert scaled["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                "name": "router"}
    exported = set(re.findall(r'"(flotilla_router_[a-z_]+)"',
                              (REPO_ROOT / "router" / "metrics.py").read_text()))
    for trigger in scaled["spec"]["triggers"]:
        names = set(re.findall(r"flotilla_[a-z_]+", trigger["metadata"]["query"]))
        assert names and names <= exported, trigger
    router = _find("Deployment", "router")
    assert scaled["spec"]["minReplicaCount"] >= 2  # never below the PDB's needs
    assert router["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_containers_start_with_settings_the_service_accepts(name: str) -> None:
    deployment = _find("Deployment", name)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    command, *argv = container["args"]
    cls = SETTINGS[command]
    config = _find("ConfigMap", "flotilla-config")["data"]
    env = {key: value for key, value in config.items() if key in _env_names(cls)}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif item["name"] == "ADMIN_TOKEN":
            env[item["name"]] = "x" * 32
        elif item["name"] == "REDIS_URL":
            env[item["name"]] = "redis://redis:6379/0"
        elif item["name"] == "ROUTER_ID":
            env[item["name"]] = f"{name}-5d8f7c9b6-x2x4z"
    load_settings(cls, argv, env)
    # The image's user (Dockerfile: uid 10001) runs without root and a read-only root fs.
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_shared_config_keys_are_settings_of_a_service_that_reads_it() -> None:
    config = _find("ConfigMap", "flotilla-config")["data"]
    known = set().union(*(_env_names(cls) for cls in SETTINGS.values()))
    assert set(config) - known == set()
