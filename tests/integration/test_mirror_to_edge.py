"""Objects applied in the cloud reach the edge's local API; edits and deletes follow."""

from __future__ import annotations

import pytest

from tests.integration.manifests import bundle, configmap, pod
from tests.support.procs import Cloud, Edge, MakeEdge, wait_until

pytestmark = pytest.mark.timeout(60)

POD = "/api/v1/namespaces/default/pods/web"
CM = "/api/v1/namespaces/default/configmaps/web-config"
SECRET = "/api/v1/namespaces/default/secrets/web-secret"


async def test_pod_configmap_and_secret_reach_the_edge(cloud: Cloud, make_edge: MakeEdge) -> None:
    """A pod bound to the node, with its configmap and secret, is served by the local API."""
    edge: Edge = make_edge()
    edge.join(cloud)
    await edge.start()
    await wait_until(lambda: cloud.node_ready("edge-1"))
    cloud.apply(bundle())
    await wait_until(lambda: edge.has(POD) and edge.has(CM) and edge.has(SECRET), timeout=5)
    status, obj = edge.get(POD)
    assert status == 200
    assert obj["spec"]["nodeName"] == "edge-1"
    assert edge.get(SECRET)[1]["data"]["password"] == "c2VjcmV0"
    assert edge.get("/api/v1/nodes/edge-1")[0] == 200


async def test_edits_and_deletes_follow(cloud: Cloud, make_edge: MakeEdge) -> None:
    """An edited configmap reaches the edge; a deleted pod and its orphaned refs disappear."""
    edge: Edge = make_edge()
    edge.join(cloud)
    await edge.start()
    cloud.apply(bundle())
    await wait_until(lambda: edge.has(CM))
    cloud.apply(configmap(value="2"))
    await wait_until(lambda: edge.get(CM)[1]["data"]["LEVEL"] == "2")
    cloud.edgectl("delete", "pod", "web")
    await wait_until(lambda: edge.gone(POD) and edge.gone(CM) and edge.gone(SECRET))


async def test_only_what_is_bound_reaches_a_node(cloud: Cloud, make_edge: MakeEdge) -> None:
    """A pod for another node, and that pod's configmap, never reach this edge."""
    edge: Edge = make_edge()
    edge.join(cloud)
    await edge.start()
    cloud.apply(
        configmap(name="other-config")
        + "\n---\n"
        + pod(name="other", node="edge-2", cm="other-config", secret="nosuch")
    )
    cloud.apply(bundle())
    await wait_until(lambda: edge.has(POD))
    assert edge.gone("/api/v1/namespaces/default/pods/other")
    assert edge.gone("/api/v1/namespaces/default/configmaps/other-config")


async def test_pod_moved_away_is_deleted_at_the_edge(cloud: Cloud, make_edge: MakeEdge) -> None:
    """Rebinding a pod to another node deletes it at the old node."""
    edge: Edge = make_edge()
    edge.join(cloud)
    await edge.start()
    cloud.apply(bundle())
    await wait_until(lambda: edge.has(POD))
    cloud.apply(pod(node="edge-2"))
    await wait_until(lambda: edge.gone(POD) and edge.gone(CM))
