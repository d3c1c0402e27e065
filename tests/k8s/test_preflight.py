"""cloudhub checks at start-up what it needs of a cluster, and names the fix for what is not."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudhub.k8s.api import DEVICES, LEASES, NODES, PODS, KubeApi
from cloudhub.k8s.preflight import Right, check_cluster, rights
from tests.support.kubeapi import REPO, KubeApiEmulator
from wire.errors import ConfigError, NotFound, StoreError

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
async def bare() -> AsyncIterator[KubeApiEmulator]:
    """A new cluster: no edgebridge namespace, no CRDs."""
    async with KubeApiEmulator() as emulator:
        yield emulator


@pytest.fixture
async def bare_api(bare: KubeApiEmulator, tmp_path: Path) -> AsyncIterator[KubeApi]:
    client = KubeApi.from_config(bare.write_kubeconfig(tmp_path / "kubeconfig"))
    yield client
    await client.close()


def install_crds(emulator: KubeApiEmulator) -> None:
    for crd in sorted((REPO / "deploy" / "crds").glob("*.yaml")):
        emulator.seed(yaml.safe_load(crd.read_text()))


async def test_a_write_into_a_missing_namespace_is_refused(bare_api: KubeApi) -> None:
    """The emulator refuses to create an object in a namespace that does not exist."""
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "x"}}
    with pytest.raises(NotFound, match='namespaces "edgebridge" not found'):
        await bare_api.create(LEASES, "edgebridge", lease)


async def test_the_namespace_is_created_when_allowed(
    bare: KubeApiEmulator, bare_api: KubeApi
) -> None:
    """With the CRDs in place and the right to, cloudhub creates its namespace itself."""
    install_crds(bare)
    await check_cluster(bare_api, namespace="edgebridge")
    assert bare.get("namespaces", None, "edgebridge") is not None
    assert bare.objects("leases", group="coordination.k8s.io") == []  # the probe was a dry run


async def test_a_namespace_it_may_not_create_is_named_with_its_fix(
    bare: KubeApiEmulator, bare_api: KubeApi
) -> None:
    """No namespace and no right to create one: one line naming deploy/namespace.yaml."""
    install_crds(bare)
    bare.deny("create", "namespaces")
    with pytest.raises(ConfigError) as err:
        await check_cluster(bare_api, namespace="edgebridge")
    text = str(err.value)
    assert "namespace edgebridge does not exist" in text
    assert "kubectl apply -f deploy/namespace.yaml" in text and "\n" not in text


async def test_missing_crds_are_named_with_their_fix(bare_api: KubeApi) -> None:
    """Without the Device CRDs: one line naming both and deploy/crds/."""
    with pytest.raises(ConfigError) as err:
        await check_cluster(bare_api, namespace="edgebridge")
    text = str(err.value)
    assert "devices.devices.kubeedge.io" in text and "devicemodels.devices.kubeedge.io" in text
    assert "kubectl apply -f deploy/crds/" in text


async def test_a_missing_right_is_named_with_its_fix(
    bare: KubeApiEmulator, bare_api: KubeApi
) -> None:
    """A right cloudhub uses (create Secret in edgebridge) that RBAC withholds fails the start."""
    bare.install_edgebridge()
    bare.deny("create", "secrets", namespace="edgebridge")
    bare.deny("watch", "pods")
    with pytest.raises(ConfigError) as err:
        await check_cluster(bare_api, namespace="edgebridge")
    text = str(err.value)
    assert "watch pods" in text and "create secrets in edgebridge" in text
    assert "kubectl apply -f deploy/rbac.yaml" in text


async def test_missing_admin_rights_only_warn(
    bare: KubeApiEmulator, bare_api: KubeApi, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the optional edgectl rights cloudhub starts and says what edgectl cannot do."""
    bare.install_edgebridge()
    bare.deny("delete", "nodes")
    with caplog.at_level(logging.WARNING):
        found = await check_cluster(bare_api, namespace="edgebridge")
    assert [r.describe() for r in found.missing_optional] == ["delete nodes"]
    assert "edgectl apply/delete/twin will be refused" in caplog.text


def granted(docs: list[dict[str, Any]], right: Right) -> bool:
    """Whether deploy/rbac.yaml's roles give ``right`` (to the cloudhub ServiceAccount)."""
    resource = right.resource + (f"/{right.subresource}" if right.subresource else "")
    for doc in docs:
        if doc["kind"] not in ("ClusterRole", "Role"):
            continue
        ns = doc["metadata"].get("namespace", "")
        if doc["kind"] == "Role" and ns != right.namespace:
            continue
        for rule in doc["rules"]:
            names = rule.get("resourceNames")
            if (
                right.group in rule["apiGroups"]
                and resource in rule["resources"]
                and right.verb in rule["verbs"]
                and (names is None or right.name in names)
            ):
                return True
    return False


def test_rbac_yaml_grants_every_right_checked() -> None:
    """The rights table and deploy/rbac.yaml cannot drift: each checked right is granted."""
    docs = [d for d in yaml.safe_load_all((REPO / "deploy" / "rbac.yaml").read_text()) if d]
    missing = [r.describe() for r in rights("edgebridge") if not granted(docs, r)]
    assert missing == []


async def test_custom_resources_are_served_once_their_crd_exists(
    bare: KubeApiEmulator, bare_api: KubeApi
) -> None:
    """As the API server: Devices are 404 until the CRD is applied, then listed."""
    with pytest.raises(NotFound):
        await bare_api.list(DEVICES)
    install_crds(bare)
    assert (await bare_api.list(DEVICES))["items"] == []


async def test_a_denied_request_is_forbidden(bare: KubeApiEmulator, bare_api: KubeApi) -> None:
    """deny() makes the real request fail with 403, not only the review."""
    bare.deny("list", "pods")
    with pytest.raises(StoreError, match=r"HTTP 403"):
        await bare_api.list(PODS)
    assert (await bare_api.list(NODES))["items"] == []
