"""deploy/ is what an operator applies: valid YAML, accepted by kubectl, matching the code."""

from __future__ import annotations

import asyncio
import configparser
import functools
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.kubeapi import KubeApiEmulator
from wire.manifests import parse_documents

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
#: Prometheus and Grafana files, not Kubernetes objects (see deploy/monitoring/)
MONITORING = DEPLOY / "monitoring"
MANIFESTS = sorted(p for p in DEPLOY.rglob("*.yaml") if MONITORING not in p.parents)


@functools.cache
def documents() -> list[dict[str, Any]]:
    return [d for path in MANIFESTS for d in yaml.safe_load_all(path.read_text()) if d]


def find(kind: str, name: str) -> dict[str, Any]:
    return next(d for d in documents() if d["kind"] == kind and d["metadata"]["name"] == name)


def test_every_manifest_is_yaml_of_named_kubernetes_objects() -> None:
    """Each document parses and has apiVersion, kind and metadata.name."""
    assert {p.name for p in MANIFESTS} >= {
        "namespace.yaml",
        "rbac.yaml",
        "cloudhub.yaml",
        "devices_v1beta1_device.yaml",
        "devices_v1beta1_devicemodel.yaml",
    }
    for doc in documents():
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"]


async def test_kubectl_apply_dry_run_accepts_the_directory(
    kubeapi: KubeApiEmulator, tmp_path: Path
) -> None:
    """``kubectl apply --dry-run=client`` of every manifest in deploy/ (monitoring/ holds
    Prometheus and Grafana files) succeeds (against the emulated API)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    kubeconfig = kubeapi.write_kubeconfig(tmp_path / "kubeconfig")
    env = dict(os.environ, KUBECONFIG=str(kubeconfig), HOME=str(tmp_path))
    proc = await asyncio.create_subprocess_exec(
        kubectl,
        "apply",
        "--dry-run=client",
        "--validate=false",
        *(arg for path in MANIFESTS for arg in ("-f", str(path))),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 25)
    assert proc.returncode == 0, err.decode()
    assert out.decode().count("(dry run)") == len(documents())


def test_deployment_runs_two_replicas_of_cloudhub_serve_on_both_ports() -> None:
    """Two replicas, ``serve --data-dir /var/lib/cloudhub``, ports 10000/10002 on the Service."""
    deployment = find("Deployment", "cloudhub")
    assert deployment["spec"]["replicas"] == 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["serve", "--data-dir", "/var/lib/cloudhub"]
    assert {p["containerPort"] for p in container["ports"]} == {10000, 10002}
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "cloudhub"
    service = find("Service", "cloudhub")
    assert {p["port"] for p in service["spec"]["ports"]} == {10000, 10002}


def _granted(role: dict[str, Any], group: str, resource: str) -> set[str]:
    verbs: set[str] = set()
    for rule in role["rules"]:
        if group in rule["apiGroups"] and resource in rule["resources"]:
            verbs |= set(rule["verbs"])
    return verbs


def test_rbac_grants_what_the_backend_does_and_no_wildcards() -> None:
    """Reads, status writes and leases are granted; nothing uses ``*``."""
    role = find("ClusterRole", "edgebridge-cloudhub")
    for resource in ("pods", "configmaps", "secrets", "nodes"):
        assert {"get", "list", "watch"} <= _granted(role, "", resource)
    assert {"patch", "update"} <= _granted(role, "", "nodes/status")
    assert {"update"} <= _granted(role, "", "pods/status")
    assert {"delete"} <= _granted(role, "", "pods")  # confirming deletions on edge nodes
    assert {"update"} <= _granted(role, "devices.kubeedge.io", "devices/status")
    assert {"list", "watch"} <= _granted(role, "devices.kubeedge.io", "devicemodels")
    for namespace in ("kube-node-lease", "edgebridge"):
        (lease_role,) = [
            d
            for d in documents()
            if d["kind"] == "Role" and d["metadata"]["namespace"] == namespace
        ]
        assert {"create", "get", "update"} <= _granted(lease_role, "coordination.k8s.io", "leases")
    for doc in documents():
        for rule in doc.get("rules", []):
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]


def _pruned(value: Any, schema: dict[str, Any], at: str) -> list[str]:
    """Paths in ``value`` that a structural schema would drop."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        out: list[str] = []
        for key, item in value.items():
            if not at and key == "metadata":
                continue  # ObjectMeta is never pruned
            if props is not None and key in props:
                out += _pruned(item, props[key], f"{at}.{key}")
            elif isinstance(extra, dict):
                out += _pruned(item, extra, f"{at}.{key}")
            else:
                out.append(f"{at}.{key}")
        return out
    if isinstance(value, list):
        return [
            p for i, item in enumerate(value) for p in _pruned(item, schema["items"], f"{at}[{i}]")
        ]
    return []


def test_the_crds_keep_every_field_of_the_example_devices() -> None:
    """The example Device and DeviceModel lose nothing to the CRDs' structural pruning."""
    for kind, example in (
        ("Device", "thermostat-device.yaml"),
        ("DeviceModel", "thermostat-model.yaml"),
    ):
        plural = kind.lower() + "s"
        crd = find("CustomResourceDefinition", f"{plural}.devices.kubeedge.io")
        (version,) = crd["spec"]["versions"]
        assert version["name"] == "v1beta1" and version["storage"]
        schema = version["schema"]["openAPIV3Schema"]
        text = (ROOT / "examples" / "devices" / example).read_text()
        (obj,) = parse_documents(text, source=example)
        assert obj["kind"] == kind
        assert _pruned(obj, schema, "") == []
    device = find("CustomResourceDefinition", "devices.devices.kubeedge.io")
    assert device["spec"]["versions"][0]["subresources"] == {"status": {}}


def test_edgecore_unit_runs_edgecore_from_its_data_dir() -> None:
    """The systemd unit parses and runs ``edgecore run --data-dir /var/lib/edgecore``."""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string((DEPLOY / "edgecore.service").read_text())
    command = unit["Service"]["ExecStart"]
    assert command.split()[1:] == ["run", "--data-dir", "/var/lib/edgecore"]
    assert command.split()[0].endswith("/edgecore")
    assert unit["Service"]["Restart"] == "always"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
