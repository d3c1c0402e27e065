"""Watching: the admin API's JSON-lines watch stream and `edgectl get -w` as a process."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from cloudhub.httpserver.watch import WatchView
from tests.edgectl.conftest import Cloud, Links
from tests.support.procs import read_row, start_edgectl
from wire.selectors import parse_selector

pytestmark = pytest.mark.timeout(60)


def _pod(name: str, ns: str = "default", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"nodeName": "edge-1", "containers": [{"name": "c", "image": "busybox"}]},
    }


class Stream:
    """An open watch: read its lines with a deadline."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        line = await asyncio.wait_for(self.response.content.readline(), timeout)
        assert line, "the stream ended"
        event: dict[str, Any] = json.loads(line)
        return event

    async def next_change(self, timeout: float = 5.0) -> tuple[str, str]:
        """The next non-bookmark event as (type, name)."""
        while True:
            event = await self.next(timeout)
            if event["type"] != "BOOKMARK":
                return event["type"], event["object"]["metadata"]["name"]


@pytest.fixture
async def session(cloud: Cloud) -> AsyncIterator[aiohttp.ClientSession]:
    ctx = ssl.create_default_context(cafile=str(cloud.data_dir / "ca.crt"))
    async with aiohttp.ClientSession(
        base_url=cloud.server,
        connector=aiohttp.TCPConnector(ssl=ctx),
        headers={"Authorization": f"Bearer {cloud.authority.admin_token}"},
    ) as s:
        yield s


async def test_watch_lists_then_follows_a_filtered_view(
    cloud: Cloud, session: aiohttp.ClientSession
) -> None:
    """ADDED for what matches, then changes; leaving the selector's view is DELETED."""
    await cloud.store.apply([_pod("a", app="web"), _pod("b", app="db"), _pod("c", "x", app="web")])
    async with session.get(
        "/admin/v1/pods",
        params={"watch": "true", "namespace": "default", "labelSelector": "app=web"},
    ) as response:
        assert response.status == 200
        stream = Stream(response)
        assert await stream.next_change() == ("ADDED", "a")
        await cloud.store.apply([_pod("d", app="web"), _pod("e", app="db")])
        assert await stream.next_change() == ("ADDED", "d")
        await cloud.store.apply([_pod("a", app="db")])  # leaves the view
        assert await stream.next_change() == ("DELETED", "a")
        await cloud.store.apply([_pod("b", app="web")])  # enters it
        assert await stream.next_change() == ("ADDED", "b")
        await cloud.store.delete("pod", "default", "d")
        assert await stream.next_change() == ("DELETED", "d")


async def test_watch_from_unknown_version_is_410(session: aiohttp.ClientSession) -> None:
    """A resourceVersion the store never issued is 410 with one line, before streaming."""
    async with session.get(
        "/admin/v1/pods", params={"watch": "true", "resourceVersion": "999999"}
    ) as response:
        assert response.status == 410
        assert "error" in await response.json()
    async with session.get(
        "/admin/v1/pods", params={"watch": "true", "labelSelector": "a in b"}
    ) as response:
        assert response.status == 400
        assert (await response.json())["error"].startswith("invalid label selector")


async def test_node_watch_reports_presence_changes(linked_cloud: Cloud, links: Links) -> None:
    """A node going online or offline is a MODIFIED event with its Ready condition."""
    cloud = linked_cloud
    await cloud.store.apply([{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "edge-1"}}])
    ctx = ssl.create_default_context(cafile=str(cloud.data_dir / "ca.crt"))
    headers = {"Authorization": f"Bearer {cloud.authority.admin_token}"}
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx), headers=headers) as s,
        s.get(f"{cloud.server}/admin/v1/nodes?watch=true") as response,
    ):
        stream = Stream(response)
        first = await stream.next()
        assert first["type"] == "ADDED"
        links.online["edge-1"] = time.time()
        while (event := await stream.next())["type"] == "BOOKMARK":
            pass
        assert event["type"] == "MODIFIED"
        ready = [c for c in event["object"]["status"]["conditions"] if c["type"] == "Ready"]
        assert ready[0]["status"] == "True"
        del links.online["edge-1"]
        while (event := await stream.next())["type"] == "BOOKMARK":
            pass
        ready = [c for c in event["object"]["status"]["conditions"] if c["type"] == "Ready"]
        assert ready[0]["status"] == "Unknown"


def test_watch_view_tracks_membership() -> None:
    """The view sends ADDED/MODIFIED/DELETED by membership, not by the store's event type."""
    view = WatchView(namespace="default", selector=parse_selector("app=web"))
    assert view.listed([_pod("a", app="web"), _pod("b", app="db")]) == [_pod("a", app="web")]
    assert view.event("MODIFIED", _pod("a", app="web")) == "MODIFIED"
    assert view.event("MODIFIED", _pod("b", app="db")) is None
    assert view.event("MODIFIED", _pod("b", app="web")) == "ADDED"
    assert view.event("ADDED", _pod("z", "other", app="web")) is None
    assert view.event("MODIFIED", _pod("a", app="db")) == "DELETED"
    assert view.event("DELETED", _pod("a", app="db")) is None
    assert view.event("DELETED", _pod("b", app="web")) == "DELETED"
    assert view.shown == {}


async def test_edgectl_get_watch_prints_rows_as_changes_happen(cloud: Cloud) -> None:
    """`edgectl get pods -w` prints the table, then a row per change, until stopped."""
    await cloud.store.apply([_pod("first")])
    proc = await start_edgectl("get", "pods", "-w", "-n", "default", *cloud.globals)
    try:
        assert (await read_row(proc, 15))[:3] == ["NAME", "READY", "STATUS"]
        assert (await read_row(proc, 15))[:3] == ["first", "0/1", "Pending"]
        await cloud.store.apply([_pod("second")])
        assert (await read_row(proc, 15))[:3] == ["second", "0/1", "Pending"]
        status = {
            "phase": "Running",
            "containerStatuses": [
                {"name": "c", "ready": True, "restartCount": 0, "state": {"running": {}}}
            ],
        }
        await cloud.store.update_status("pod", "default", "second", status)
        assert (await read_row(proc, 15))[:3] == ["second", "1/1", "Running"]
    finally:
        proc.terminate()
        await proc.wait()


async def test_streams_end_when_cloudhub_stops(cloud: Cloud) -> None:
    """An open watch does not hold up cloudhub's stop; edgectl then exits 1 with one line."""
    await cloud.store.apply([{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "edge-1"}}])
    proc = await start_edgectl("get", "nodes", "-w", *cloud.globals)
    assert proc.stdout is not None
    try:
        for _ in range(2):  # header and the node: the list is done, the watch follows
            assert await asyncio.wait_for(proc.stdout.readline(), 15)
        started = time.monotonic()
        await cloud.stop()
        assert time.monotonic() - started < 1.5  # not the 2 s shutdown grace: streams ended
        _, err = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 1
        assert err.decode().startswith("edgectl: ") and err.decode().count("\n") == 1
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
