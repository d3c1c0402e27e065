"""A whole cloudhub on an (emulated) cluster: start-up checks, failed joins, deleted Nodes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cloudhub import app as cloud_app
from cloudhub.config import CloudSettings
from cloudhub.k8s.api import NODES, KubeApi
from tests.k8s.objects import pod
from tests.support.inproc import cloud_settings, join_node
from tests.support.kubeapi import KubeApiEmulator
from tests.support.procs import wait_until
from wire.errors import BridgeError, ConfigError

pytestmark = pytest.mark.timeout(30)

LEASE_GROUP = "coordination.k8s.io"
SECRETS = "/api/v1/namespaces/edgebridge/secrets"


def settings(tmp_path: Path, kubeconfig: Path) -> CloudSettings:
    return cloud_settings(tmp_path / "cloud", kubeconfig=kubeconfig, replica="a")


@pytest.fixture
async def cloud(tmp_path: Path, kubeconfig: Path) -> AsyncIterator[cloud_app.CloudApp]:
    app = await cloud_app.start(settings(tmp_path, kubeconfig))
    yield app
    await app.stop()


async def join_edge(cloud: cloud_app.CloudApp, tmp_path: Path, name: str = "edge-1") -> None:
    await join_node(cloud, name, tmp_path / name)


def lease(name: str, namespace: str, holder: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"leaseDurationSeconds": 20}
    if holder is not None:
        spec |= {"holderIdentity": holder, "renewTime": "2099-01-01T00:00:00.000000Z"}
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


async def test_cloudhub_without_crds_does_not_start(tmp_path: Path) -> None:
    """A cluster without the CRDs: start fails with one line naming deploy/crds/."""
    async with KubeApiEmulator() as bare:
        kubeconfig = bare.write_kubeconfig(tmp_path / "kubeconfig")
        with pytest.raises(ConfigError, match=r"kubectl apply -f deploy/crds/"):
            await cloud_app.start(settings(tmp_path, kubeconfig))


async def test_cloudhub_creates_its_namespace(tmp_path: Path) -> None:
    """A cluster with the CRDs but no edgebridge namespace: cloudhub creates it and joins work."""
    async with KubeApiEmulator() as kube:
        kube.install_edgebridge()
        kube.state.objects.pop(("", "namespaces", "", "edgebridge"))
        app = await cloud_app.start(settings(tmp_path, kube.write_kubeconfig(tmp_path / "kc")))
        try:
            assert kube.get("namespaces", None, "edgebridge") is not None
            await join_edge(app, tmp_path)
            assert kube.get("secrets", "edgebridge", "edgebridge-auth") is not None
        finally:
            await app.stop()


async def test_a_failed_join_leaves_no_node(
    kubeapi: KubeApiEmulator, cloud: cloud_app.CloudApp, tmp_path: Path
) -> None:
    """The certificate cannot be recorded (Secret write fails): the Node created is removed."""
    kubeapi.inject(500, method="POST", path=SECRETS, times=1000)
    with pytest.raises(BridgeError, match="cannot record the certificate"):
        await join_edge(cloud, tmp_path)
    assert kubeapi.get("nodes", None, "edge-1") is None
    kubeapi.clear_injections()
    await join_edge(cloud, tmp_path)  # and a later join succeeds
    assert kubeapi.get("nodes", None, "edge-1") is not None


async def test_a_deleted_node_takes_its_leases_and_pods_along(
    kubeapi: KubeApiEmulator, cloud: cloud_app.CloudApp, tmp_path: Path, api: KubeApi
) -> None:
    """kubectl delete node: its ownership and node Leases go, and its pods after the quarantine."""
    assert cloud.cluster is not None
    cloud.cluster.reaper.pod_quarantine = 0.2
    await join_edge(cloud, tmp_path)
    kubeapi.seed(lease("edge-1", "edgebridge", holder="a"))
    kubeapi.seed(lease("edge-1", "kube-node-lease", holder="edge-1"))
    kubeapi.seed(pod("web", "edge-1"))
    kubeapi.seed(pod("other", "edge-2"))
    await api.delete(NODES, None, "edge-1")
    await wait_until(
        lambda: (
            kubeapi.get("leases", "edgebridge", "edge-1", group=LEASE_GROUP) is None
            and kubeapi.get("leases", "kube-node-lease", "edge-1", group=LEASE_GROUP) is None
            and kubeapi.get("pods", "default", "web") is None
        )
    )
    assert kubeapi.get("pods", "default", "other") is not None


async def test_a_node_back_within_the_quarantine_keeps_its_pods(
    kubeapi: KubeApiEmulator, cloud: cloud_app.CloudApp, tmp_path: Path, api: KubeApi
) -> None:
    """Deleted and joined again at once (same name): its pods are not collected."""
    assert cloud.cluster is not None
    cloud.cluster.reaper.pod_quarantine = 1.0
    await join_edge(cloud, tmp_path)
    kubeapi.seed(pod("web", "edge-1"))
    await api.delete(NODES, None, "edge-1")
    await wait_until(lambda: cloud.cluster is not None and cloud.cluster.reaper.reaped == 1)
    await join_edge(cloud, tmp_path)
    await wait_until(lambda: cloud.cluster is not None and cloud.cluster.reaper.collected == 1)
    assert kubeapi.get("pods", "default", "web") is not None


async def test_edgectl_delete_node_releases_its_lease(
    kubeapi: KubeApiEmulator, cloud: cloud_app.CloudApp, tmp_path: Path
) -> None:
    """Deleting through the admin API (edgectl delete node) cleans up the same way."""
    await join_edge(cloud, tmp_path)
    kubeapi.seed(lease("edge-1", "edgebridge", holder="a"))
    await cloud.store.delete("node", None, "edge-1")
    await wait_until(
        lambda: kubeapi.get("leases", "edgebridge", "edge-1", group=LEASE_GROUP) is None
    )


async def test_leases_of_nodes_deleted_while_down_are_swept_at_start(
    kubeapi: KubeApiEmulator, tmp_path: Path, kubeconfig: Path
) -> None:
    """An unheld ownership Lease without its Node is removed at start; a held one stays."""
    kubeapi.seed(lease("gone-1", "edgebridge"))
    kubeapi.seed(lease("busy-1", "edgebridge", holder="b"))
    app = await cloud_app.start(settings(tmp_path, kubeconfig))
    try:
        await wait_until(
            lambda: kubeapi.get("leases", "edgebridge", "gone-1", group=LEASE_GROUP) is None
        )
        assert kubeapi.get("leases", "edgebridge", "busy-1", group=LEASE_GROUP) is not None
    finally:
        await app.stop()
