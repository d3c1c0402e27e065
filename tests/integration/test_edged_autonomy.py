"""Offline autonomy of edged: re-adoption after kill -9, pods start after a reboot offline."""

from __future__ import annotations

import pytest

from edgecore.cri.client import CriClient
from tests.support.containerd import unique_node
from tests.support.pods import busybox_pod, container_status, is_running, running_ids, runtime_state
from tests.support.procs import Cloud, Edge, MakeEdge, wait_until

pytestmark = pytest.mark.timeout(120)


async def _running_pod(
    cloud: Cloud, make_edge: MakeEdge, endpoint: str
) -> tuple[Edge, str, set[str]]:
    node = unique_node()
    edge: Edge = make_edge(node, runtime_endpoint=endpoint)
    edge.join(cloud)
    await edge.start()
    cloud.apply(busybox_pod("web", node))
    await wait_until(lambda: is_running(cloud, "web"), timeout=30)
    ids = await running_ids(endpoint, node)
    assert len(ids) == 1
    return edge, node, ids


async def test_kill9_and_restart_online_readopts(
    cloud: Cloud, make_edge: MakeEdge, cri_endpoint: str
) -> None:
    """kill -9 of edgecore and a restart keep the running container: same id, no restart."""
    edge, node, ids = await _running_pod(cloud, make_edge, cri_endpoint)
    edge.proc.kill9()
    await edge.start()
    await wait_until(lambda: edge.proc.text().count("edged: first sync") >= 2, timeout=15)
    assert (
        "1 running containers found in the runtime (re-adopted), 0 pods to change"
        in (edge.proc.text().split("edged: first sync")[-1])
    )
    assert await running_ids(cri_endpoint, node) == ids
    assert container_status(cloud, "web")["restartCount"] == 0
    assert container_status(cloud, "web")["containerID"] == f"containerd://{ids.pop()}"


async def test_kill9_and_restart_offline_readopts(
    cloud: Cloud, make_edge: MakeEdge, cri_endpoint: str
) -> None:
    """With the cloud away, a restarted edgecore keeps the running pod as it is."""
    edge, node, ids = await _running_pod(cloud, make_edge, cri_endpoint)
    cloud.proc.stop()
    edge.proc.kill9()
    await edge.start()
    await wait_until(lambda: edge.proc.text().count("edged: first sync") >= 2, timeout=15)
    assert "0 pods to change" in edge.proc.text().split("edged: first sync")[-1]
    assert await running_ids(cri_endpoint, node) == ids
    await cloud.start()
    await wait_until(lambda: is_running(cloud, "web"), timeout=30)
    assert await running_ids(cri_endpoint, node) == ids


async def test_after_a_reboot_offline_the_cached_pods_start(
    cloud: Cloud, make_edge: MakeEdge, cri_endpoint: str
) -> None:
    """A reboot (sandbox and containers dead) with the cloud away: the pod starts from the cache,
    and the status written offline reaches the cloud when it returns."""
    edge, node, ids = await _running_pod(cloud, make_edge, cri_endpoint)
    cloud.proc.stop()
    edge.proc.stop()
    boxes, _ = await runtime_state(cri_endpoint, node)
    async with CriClient(cri_endpoint) as cri:  # what a power cut leaves: nothing running
        for sb in boxes:
            await cri.stop_pod_sandbox(sb.id)
    assert await running_ids(cri_endpoint, node) == set()
    await edge.start()

    async def restarted() -> bool:
        now = await running_ids(cri_endpoint, node)
        return len(now) == 1 and now != ids

    await wait_until(restarted, timeout=30)
    await cloud.start()

    def converged() -> bool:
        cs = container_status(cloud, "web")
        return is_running(cloud, "web") and cs.get("restartCount") == 1

    await wait_until(converged, timeout=30)
