"""cloudhub records the fleet's Events and serves them as kind ``events`` on the admin API."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect

from cloudhub import app as cloud_app
from tests.support.inproc import edge_tls, join_node, start_cloud
from tests.support.procs import wait_until

pytestmark = pytest.mark.timeout(30)

DEVICE = {
    "apiVersion": "devices.kubeedge.io/v1beta1",
    "kind": "Device",
    "metadata": {"name": "t1", "namespace": "default"},
    "spec": {"deviceModelRef": {"name": "thermostat"}, "nodeName": "edge-2"},
}
POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"nodeName": "edge-1", "containers": [{"name": "app", "image": "busybox"}]},
}


async def _start(data_dir: Path) -> cloud_app.CloudApp:
    return await start_cloud(data_dir)


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[cloud_app.CloudApp]:
    app = await _start(tmp_path / "cloud")
    try:
        await app.store.apply([DEVICE, POD])
        yield app
    finally:
        await app.stop()


async def _events(cloud: cloud_app.CloudApp, query: str = "") -> list[dict[str, Any]]:
    ctx = ssl.create_default_context(cadata=cloud.authority.ca_der)
    headers = {"Authorization": f"Bearer {cloud.authority.admin_token}"}
    url = f"https://127.0.0.1:{cloud.https_port}/admin/v1/events{query}"
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(url, ssl=ctx) as resp:
            body = await resp.json()
            assert resp.status == 200, body
            items: list[dict[str, Any]] = body["items"]
            return items


def _reasons(items: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(i["reason"], i["count"]) for i in items]


async def test_node_online_offline_events_fold_counts(
    cloud: cloud_app.CloudApp, tmp_path: Path
) -> None:
    """A node connecting twice gives NodeReady count 2 and NodeNotReady; filters select it."""
    edge = await join_node(cloud, "edge-1", tmp_path / "edge-1")
    url = f"wss://127.0.0.1:{cloud.ws_port}/project/edge-1/events"
    for _ in range(2):
        async with connect(url, ssl=edge_tls(edge)):
            await wait_until(lambda: "edge-1" in cloud.hub.sessions, timeout=5)
        await wait_until(lambda: "edge-1" not in cloud.hub.sessions, timeout=5)

    async def settled() -> list[dict[str, Any]] | None:
        items = await _events(
            cloud, "?fieldSelector=involvedObject.kind=Node,involvedObject.name=edge-1"
        )
        return items if sorted(_reasons(items)) == [("NodeNotReady", 2), ("NodeReady", 2)] else None

    items = await wait_until(settled, timeout=10)
    ready = next(i for i in items if i["reason"] == "NodeReady")
    assert ready["type"] == "Normal" and ready["involvedObject"]["kind"] == "Node"
    assert ready["source"]["component"] == "edgebridge-cloudhub"
    assert ready["firstTimestamp"] <= ready["lastTimestamp"]
    assert await _events(cloud, "?kind=Node&name=edge-9") == []


async def test_pod_status_from_the_edge_records_started(cloud: cloud_app.CloudApp) -> None:
    """A pod status change (as an edge's report writes it) records Started on the pod."""
    await wait_until(lambda: cloud.fleet.synced.is_set(), timeout=5)
    running = {
        "phase": "Running",
        "containerStatuses": [{"name": "app", "state": {"running": {"startedAt": "now"}}}],
    }
    await cloud.store.update_status("pod", "default", "web", running)

    async def started() -> list[dict[str, Any]]:
        return [
            i
            for i in await _events(cloud, "?namespace=default&kind=Pod")
            if i["reason"] == "Started"
        ]

    [event] = await wait_until(started, timeout=10)
    assert event["message"] == "Started container app"
    assert event["involvedObject"]["name"] == "web"


async def test_refused_twin_report_is_a_warning_on_the_device(
    cloud: cloud_app.CloudApp, tmp_path: Path
) -> None:
    """A node writing a device bound elsewhere gets refused, and the device gets TwinRefused."""
    edge = await join_node(cloud, "edge-1", tmp_path / "edge-1")
    url = f"wss://127.0.0.1:{cloud.ws_port}/project/edge-1/events"
    report = {
        "header": {"msg_id": "m1", "timestamp": 0},
        "route": {
            "source": "twin",
            "group": "twin",
            "operation": "update",
            "resource": "default/device/t1/twin/edge_updated",
        },
        "content": {"event_id": "e", "timestamp": 1, "twin": {}},
    }
    async with connect(url, ssl=edge_tls(edge)) as ws:
        await ws.send(json.dumps(report))

        async def refused() -> list[dict[str, Any]]:
            return [
                i
                for i in await _events(cloud, "?kind=Device&name=t1")
                if i["reason"] == "TwinRefused"
            ]

        [event] = await wait_until(refused, timeout=10)
    assert event["type"] == "Warning"
    assert "not bound to node edge-1" in event["message"]


async def test_events_survive_a_restart_and_are_read_only(tmp_path: Path) -> None:
    """Embedded events are kept in store.db across restarts; writing them is refused."""
    first = await _start(tmp_path / "cloud")
    try:
        await first.store.apply([POD])
        await wait_until(lambda: first.fleet.synced.is_set(), timeout=5)
        await first.store.update_status(
            "pod", "default", "web", {"phase": "Failed", "message": "oom"}
        )
        await wait_until(lambda: first.fleet.recorded >= 1, timeout=10)
    finally:
        await first.stop()
    second = await _start(tmp_path / "cloud")
    try:
        items = await _events(second)
        assert [(i["reason"], i["message"]) for i in items] == [("Failed", "Pod failed: oom")]
        ctx = ssl.create_default_context(cadata=second.authority.ca_der)
        headers = {"Authorization": f"Bearer {second.authority.admin_token}"}
        base = f"https://127.0.0.1:{second.https_port}/admin/v1/events"
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.get(f"{base}/default/{items[0]['metadata']['name']}", ssl=ctx) as r:
                assert r.status == 200 and (await r.json())["reason"] == "Failed"
            async with session.delete(f"{base}/default/x", ssl=ctx) as r:
                assert r.status == 400
                assert "can only be listed or read" in (await r.json())["error"]
            async with session.get(f"{base}?fieldSelector=spec.x=1", ssl=ctx) as r:
                assert r.status == 400
    finally:
        await second.stop()
