"""Node heartbeats as a kubelet writes them: the node Lease and the Node's status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cloudhub.k8s.api import KubeApi
from cloudhub.k8s.nodelease import NodeHeartbeat, node_status_patch, ready_condition
from tests.k8s.objects import node
from tests.support.kubeapi import KubeApiEmulator
from wire.errors import NotFound

pytestmark = pytest.mark.timeout(20)

NODE_LEASE = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/edge-1"
NODE_STATUS = "/api/v1/nodes/edge-1/status"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
REPORTED: dict[str, Any] = {
    "capacity": {"cpu": "4", "memory": "8052000Ki", "pods": "110"},
    "allocatable": {"cpu": "4", "memory": "8052000Ki", "pods": "110"},
    "addresses": [
        {"type": "InternalIP", "address": "192.0.2.10"},
        {"type": "Hostname", "address": "gw-1"},
    ],
    "nodeInfo": {"architecture": "arm64", "operatingSystem": "linux", "kernelVersion": "6.1.0"},
    "phase": "ignored: not a field an edge reports",
}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def heartbeat(api: KubeApi, clock: Clock) -> NodeHeartbeat:
    return NodeHeartbeat(api, clock=clock)


async def test_the_node_lease_is_created_owned_by_the_node_then_renewed(
    kubeapi: KubeApiEmulator, heartbeat: NodeHeartbeat, clock: Clock
) -> None:
    """kube-node-lease/{node}: holder the node, 40 s, owned by the Node; renewals move renewTime."""
    uid = kubeapi.seed(node("edge-1"))["metadata"]["uid"]
    await heartbeat.renew_lease("edge-1")
    lease = kubeapi.get("leases", "kube-node-lease", "edge-1", group="coordination.k8s.io")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "edge-1"
    assert lease["spec"]["leaseDurationSeconds"] == 40
    assert lease["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Node", "name": "edge-1", "uid": uid}
    ]
    assert heartbeat.renew_interval == 10
    kubeapi.reset_counts()
    clock.now += timedelta(seconds=10)
    await heartbeat.renew_lease("edge-1")
    renewed = kubeapi.get("leases", "kube-node-lease", "edge-1", group="coordination.k8s.io")
    assert renewed is not None and renewed["spec"]["renewTime"] == "2026-01-01T00:00:10.000000Z"
    assert kubeapi.count() == 1 and kubeapi.count("patch", NODE_LEASE) == 1


async def test_status_report_sets_ready_and_what_the_edge_reported(
    kubeapi: KubeApiEmulator, heartbeat: NodeHeartbeat
) -> None:
    """Ready=True plus capacity, allocatable, addresses and nodeInfo; unknown keys dropped."""
    seeded = node("edge-1")
    seeded["status"] = {"conditions": [{"type": "MemoryPressure", "status": "False"}]}
    kubeapi.seed(seeded)
    written = await heartbeat.report_status("edge-1", ready=True, reported=REPORTED)
    status = written["status"]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "MemoryPressure": "False",
        "Ready": "True",
    }
    for field in ("capacity", "allocatable", "addresses", "nodeInfo"):
        assert status[field] == REPORTED[field]
    assert "phase" not in status
    assert kubeapi.count("patch", NODE_STATUS) == 1


async def test_transition_time_moves_only_when_ready_changes(
    kubeapi: KubeApiEmulator, heartbeat: NodeHeartbeat, clock: Clock
) -> None:
    """Heartbeats refresh lastHeartbeatTime; lastTransitionTime marks the last flip."""
    kubeapi.seed(node("edge-1"))

    def ready(obj: dict[str, Any]) -> dict[str, Any]:
        return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")

    first = ready(await heartbeat.report_status("edge-1", ready=True))
    clock.now += timedelta(seconds=30)
    second = ready(await heartbeat.report_status("edge-1", ready=True))
    assert second["lastTransitionTime"] == first["lastTransitionTime"]
    assert second["lastHeartbeatTime"] != first["lastHeartbeatTime"]
    clock.now += timedelta(seconds=30)
    gone = ready(await heartbeat.report_status("edge-1", ready=False))
    assert gone["status"] == "Unknown" and gone["lastTransitionTime"] == "2026-01-01T00:01:00Z"


async def test_a_conflicting_status_patch_is_retried(
    kubeapi: KubeApiEmulator, heartbeat: NodeHeartbeat
) -> None:
    """A 409 re-reads the conditions and patches again."""
    kubeapi.seed(node("edge-1"))
    kubeapi.inject_conflict(method="PATCH", path=NODE_STATUS)
    written = await heartbeat.report_status("edge-1", ready=True)
    assert written["status"]["conditions"][0]["status"] == "True"
    assert kubeapi.count("patch", NODE_STATUS) == 2


async def test_no_node_lease_is_created_for_a_missing_node(
    kubeapi: KubeApiEmulator, heartbeat: NodeHeartbeat
) -> None:
    """A renewal racing the Node's deletion does not bring its lease back: NotFound."""
    with pytest.raises(NotFound):
        await heartbeat.renew_lease("edge-1")
    assert kubeapi.get("leases", "kube-node-lease", "edge-1", group="coordination.k8s.io") is None


async def test_status_of_a_missing_node_is_not_found(heartbeat: NodeHeartbeat) -> None:
    """No Node, no status: NotFound for the caller to act on."""
    with pytest.raises(NotFound):
        await heartbeat.report_status("edge-1", ready=True)


async def test_label_patch_keeps_other_labels(
    kubeapi: KubeApiEmulator, heartbeat: NodeHeartbeat
) -> None:
    """patch_labels merges: the edge role label stays."""
    kubeapi.seed(node("edge-1"))
    written = await heartbeat.patch_labels("edge-1", {"kubernetes.io/arch": "arm64"})
    assert written["metadata"]["labels"] == {
        "node-role.kubernetes.io/edge": "",
        "kubernetes.io/arch": "arm64",
    }


def test_status_patch_without_a_report_only_touches_conditions() -> None:
    """With nothing reported the patch carries conditions alone (capacity etc. untouched)."""
    patch = node_status_patch(ready=True, now=T0, conditions=[])
    assert list(patch["status"]) == ["conditions"]
    assert patch["status"]["conditions"] == [ready_condition(ready=True, now=T0, previous=None)]
