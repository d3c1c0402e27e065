"""KubeStore filters on the server: edge nodes by label, scheduled pods by field, ConfigMaps
and Secrets but cloudhub's own by label."""

from __future__ import annotations

import pytest

from cloudhub.k8s.labels import MANAGED_BY_CLOUDHUB, MANAGED_BY_LABEL, NOT_MANAGED_BY_CLOUDHUB
from cloudhub.store.kubernetes import KubeStore
from tests.k8s.objects import Collector, configmap, node, pod, secret
from tests.support.kubeapi import KubeApiEmulator
from tests.support.procs import wait_until

pytestmark = pytest.mark.timeout(20)


async def test_nodes_are_listed_and_watched_with_the_edge_label_selector(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """Only edge Nodes come back, and the API server was asked for exactly those."""
    kubeapi.seed(node("edge-1"))
    kubeapi.seed(node("worker-1", edge=False))
    items, rv = await store.list("node")
    assert [n["metadata"]["name"] for n in items] == ["edge-1"]
    watch = Collector(store.watch("node", rv))
    await wait_until(lambda: kubeapi.calls("watch", "/api/v1/nodes"))
    (listed,) = kubeapi.calls("list", "/api/v1/nodes")
    (watched,) = kubeapi.calls("watch", "/api/v1/nodes")
    assert listed.query["labelSelector"] == "node-role.kubernetes.io/edge"
    assert watched.query["labelSelector"] == "node-role.kubernetes.io/edge"
    assert watched.query["allowWatchBookmarks"] == "true"
    kubeapi.seed(node("worker-2", edge=False))
    kubeapi.seed(node("edge-2"))
    await wait_until(lambda: watch.events)
    assert [e.object["metadata"]["name"] for e in watch.events] == ["edge-2"]
    await watch.stop()


async def test_pods_are_filtered_to_scheduled_ones_on_the_server(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """Unscheduled pods are not listed; the request carried ``spec.nodeName!=``."""
    kubeapi.seed(pod("bound", "edge-1"))
    kubeapi.seed(pod("pending", None))
    items, _ = await store.list("pod")
    assert [p["metadata"]["name"] for p in items] == ["bound"]
    (listed,) = kubeapi.calls("list", "/api/v1/pods")
    assert listed.query["fieldSelector"] == "spec.nodeName!="


async def test_a_pod_that_gets_scheduled_arrives_as_added(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """The scheduler binding a pod makes it match the selector: the watch reports ADDED."""
    kubeapi.seed(pod("web", None))
    _, rv = await store.list("pod")
    watch = Collector(store.watch("pod", rv))
    await wait_until(lambda: kubeapi.open_watches == 1)
    kubeapi.seed(pod("web", "edge-1"))
    await wait_until(lambda: watch.events)
    assert [(e.type, e.object["spec"]["nodeName"]) for e in watch.events] == [("ADDED", "edge-1")]
    (watched,) = kubeapi.calls("watch", "/api/v1/pods")
    assert watched.query["fieldSelector"] == "spec.nodeName!="
    await watch.stop()


async def test_a_node_that_loses_the_edge_label_is_reported_deleted(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """A Node leaving the label selector disappears from the mirror (DELETED)."""
    kubeapi.seed(node("edge-1"))
    _, rv = await store.list("node")
    watch = Collector(store.watch("node", rv))
    await wait_until(lambda: kubeapi.open_watches == 1)
    kubeapi.seed(node("edge-1", edge=False))
    await wait_until(lambda: watch.events)
    assert [e.type for e in watch.events] == ["DELETED"]
    await watch.stop()


async def test_cloudhubs_own_configmaps_are_left_out_on_the_server(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """ConfigMaps labelled managed-by edgebridge-cloudhub are neither listed nor watched, and
    the requests carried the selector that leaves them out."""
    kubeapi.seed(configmap("app", {"a": "1"}))
    kubeapi.seed(configmap("helm-app", {"a": "1"}, labels={MANAGED_BY_LABEL: "Helm"}))
    kubeapi.seed(configmap("ours", {"a": "1"}, labels={MANAGED_BY_LABEL: MANAGED_BY_CLOUDHUB}))
    items, rv = await store.list("configmap")
    assert sorted(c["metadata"]["name"] for c in items) == ["app", "helm-app"]
    watch = Collector(store.watch("configmap", rv))
    await wait_until(lambda: kubeapi.calls("watch", "/api/v1/configmaps"))
    (listed,) = kubeapi.calls("list", "/api/v1/configmaps")
    (watched,) = kubeapi.calls("watch", "/api/v1/configmaps")
    assert listed.query["labelSelector"] == NOT_MANAGED_BY_CLOUDHUB
    assert watched.query["labelSelector"] == NOT_MANAGED_BY_CLOUDHUB
    # ours first: the watch is in order, so once "app" arrived "ours" would have
    kubeapi.seed(configmap("ours", {"a": "2"}, labels={MANAGED_BY_LABEL: MANAGED_BY_CLOUDHUB}))
    kubeapi.seed(configmap("app", {"a": "2"}))
    await wait_until(lambda: watch.events)
    assert [(e.type, e.object["metadata"]["name"]) for e in watch.events] == [("MODIFIED", "app")]
    await watch.stop()


async def test_cloudhubs_own_secrets_are_left_out_on_the_server(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """The auth ledger's label keeps a Secret out of the list; the request carried the selector."""
    kubeapi.seed(secret("app", {"a": "MQ=="}))
    kubeapi.seed(secret("ledger", {"a": "MQ=="}, labels={MANAGED_BY_LABEL: MANAGED_BY_CLOUDHUB}))
    items, _ = await store.list("secret")
    assert [c["metadata"]["name"] for c in items] == ["app"]
    (listed,) = kubeapi.calls("list", "/api/v1/secrets")
    assert listed.query["labelSelector"] == NOT_MANAGED_BY_CLOUDHUB
