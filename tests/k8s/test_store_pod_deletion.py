"""``kubectl delete pod`` on an edge node: the edge sees DELETED, cloudhub confirms the deletion."""

from __future__ import annotations

import pytest

from cloudhub.k8s.api import PODS, KubeApi
from cloudhub.store.kubernetes import KubeStore
from tests.k8s.objects import Collector, node, pod
from tests.support.kubeapi import KubeApiEmulator
from tests.support.procs import wait_until

pytestmark = pytest.mark.timeout(20)


async def test_graceful_delete_on_an_edge_node_is_confirmed(
    kubeapi: KubeApiEmulator, store: KubeStore, api: KubeApi
) -> None:
    """The marked pod is reported DELETED at once and then removed by cloudhub (no kubelet)."""
    kubeapi.seed(node("edge-1"))
    kubeapi.seed(pod("a", "edge-1"))
    _, rv = await store.list("pod")
    watch = Collector(store.watch("pod", rv))
    await wait_until(lambda: kubeapi.open_watches == 1)
    marked = await api.delete(PODS, "default", "a")  # as kubectl does: default grace period
    assert marked["metadata"]["deletionTimestamp"]
    await wait_until(lambda: watch.seen("DELETED", "a"))
    await wait_until(lambda: kubeapi.get("pods", "default", "a") is None)
    await watch.stop()


async def test_graceful_delete_of_a_pod_whose_node_is_gone_is_confirmed(
    kubeapi: KubeApiEmulator, store: KubeStore, api: KubeApi
) -> None:
    """A pod bound to a deleted Node does not stay Terminating: cloudhub confirms (podgc)."""
    kubeapi.seed(pod("a", "edge-gone"))
    _, rv = await store.list("pod")
    watch = Collector(store.watch("pod", rv))
    await wait_until(lambda: kubeapi.open_watches == 1)
    await api.delete(PODS, "default", "a")
    await wait_until(lambda: watch.seen("DELETED", "a"))
    await wait_until(lambda: kubeapi.get("pods", "default", "a") is None)
    await watch.stop()


async def test_graceful_delete_on_a_kubelet_node_is_left_to_the_kubelet(
    kubeapi: KubeApiEmulator, store: KubeStore, api: KubeApi
) -> None:
    """A pod on an ordinary node is not force-deleted by cloudhub."""
    kubeapi.seed(node("worker-1", edge=False))
    kubeapi.seed(pod("a", "worker-1"))
    _, rv = await store.list("pod")
    watch = Collector(store.watch("pod", rv))
    await wait_until(lambda: kubeapi.open_watches == 1)
    await api.delete(PODS, "default", "a")
    await wait_until(lambda: watch.seen("DELETED", "a"))
    await wait_until(lambda: kubeapi.count("get", "/api/v1/nodes/worker-1") == 1)
    remaining = kubeapi.get("pods", "default", "a")
    assert remaining is not None and remaining["metadata"]["deletionTimestamp"]
    assert kubeapi.count("delete", "/api/v1/namespaces/default/pods/a") == 1
    await watch.stop()


async def test_terminating_pods_are_not_listed(
    kubeapi: KubeApiEmulator, store: KubeStore, api: KubeApi
) -> None:
    """A re-list after a missed deletion does not bring a terminating pod back."""
    kubeapi.seed(node("worker-1", edge=False))
    kubeapi.seed(pod("a", "worker-1"))
    await api.delete(PODS, "default", "a")
    items, _ = await store.list("pod")
    assert items == []
