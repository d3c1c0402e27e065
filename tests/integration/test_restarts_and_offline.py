"""kill -9 of either side loses nothing; an edge restarted with no cloud serves from SQLite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.manifests import bundle, configmap
from tests.support.procs import Cloud, Edge, MakeEdge, wait_until

pytestmark = pytest.mark.timeout(90)

POD = "/api/v1/namespaces/default/pods/web"
CM = "/api/v1/namespaces/default/configmaps/web-config"
SECRET = "/api/v1/namespaces/default/secrets/web-secret"


async def _mirrored(cloud: Cloud, make_edge: MakeEdge) -> Edge:
    edge: Edge = make_edge()
    edge.join(cloud)
    await edge.start()
    cloud.apply(bundle())
    await wait_until(lambda: edge.has(POD) and edge.has(CM) and edge.has(SECRET))
    return edge


async def test_kill9_cloudhub_restart_loses_nothing(cloud: Cloud, make_edge: MakeEdge) -> None:
    """After kill -9 and restart, cloudhub still has every object and edits flow again."""
    edge = await _mirrored(cloud, make_edge)
    cloud.proc.kill9()
    await cloud.start()
    assert cloud.get_json("pods", "web")["spec"]["nodeName"] == "edge-1"
    await wait_until(lambda: cloud.node_ready("edge-1"), timeout=10)
    cloud.apply(configmap(value="after-restart"))
    await wait_until(lambda: edge.get(CM)[1]["data"]["LEVEL"] == "after-restart")
    assert edge.has(POD) and edge.has(SECRET)


async def test_node_shown_offline_after_cloud_restart_until_it_returns(
    cloud: Cloud, make_edge: MakeEdge
) -> None:
    """A node is not reported Ready by a cloudhub it has not reconnected to."""
    edge = await _mirrored(cloud, make_edge)
    edge.proc.kill9()
    cloud.proc.kill9()
    await cloud.start()
    assert not cloud.node_ready("edge-1")
    await edge.start()
    await wait_until(lambda: cloud.node_ready("edge-1"))


async def test_object_deleted_while_edge_away_is_deleted_on_return(
    cloud: Cloud, make_edge: MakeEdge
) -> None:
    """A pod deleted while the edge was down disappears from the edge when it reconnects."""
    edge = await _mirrored(cloud, make_edge)
    edge.proc.kill9()
    cloud.edgectl("delete", "pod", "web")
    cloud.apply(configmap(value="changed-while-away"))
    await edge.start()
    # served from the cache at once, then corrected by the inventory diff
    await wait_until(lambda: edge.gone(POD) and edge.gone(CM) and edge.gone(SECRET))


async def test_edge_restarted_without_cloud_serves_its_cache(
    cloud: Cloud, make_edge: MakeEdge
) -> None:
    """kill -9 of edgecore with the cloud down: the restarted edge serves everything from SQLite."""
    edge = await _mirrored(cloud, make_edge)
    cloud.proc.kill9()
    edge.proc.kill9()
    await edge.start()
    assert edge.get("/healthz") == (200, "ok")
    assert edge.get(POD)[1]["spec"]["nodeName"] == "edge-1"
    assert edge.get(CM)[1]["data"]["LEVEL"] == "1"
    assert edge.has(SECRET)
    status, pods = edge.get("/api/v1/pods")
    assert status == 200 and [p["metadata"]["name"] for p in pods["items"]] == ["web"]


def _children(pid: int) -> set[int]:
    """Child process ids of ``pid`` (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(c) for c in (task / "children").read_text().split())
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1][:1] != "Z"


async def test_link_workers_do_not_outlive_a_killed_cloudhub(
    tmp_path: Path, make_edge: MakeEdge
) -> None:
    """kill -9 of cloudhub: its link workers exit, and a restart on the same ports serves."""
    cloud = Cloud(tmp_path, extra=["--link-workers", "2"])
    try:
        await cloud.start()
        assert cloud.proc.popen is not None
        pid = cloud.proc.popen.pid
        await wait_until(lambda: len(_children(pid)) == 2, timeout=10)
        workers = _children(pid)
        edge = await _mirrored(cloud, make_edge)
        cloud.proc.kill9()
        await wait_until(lambda: not any(_alive(p) for p in workers), timeout=10)
        await cloud.start()
        await wait_until(lambda: cloud.node_ready("edge-1"), timeout=15)
        cloud.apply(configmap(value="after-restart"))
        await wait_until(lambda: edge.get(CM)[1]["data"]["LEVEL"] == "after-restart")
    finally:
        cloud.proc.stop()
