"""An edge's report about itself lands on its own Node; reports about other nodes are refused."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cloudhub import routes
from cloudhub.edgecontroller.controller import EdgeController
from cloudhub.store.embedded import EmbeddedStore
from edgecore.nodestatus.facts import node_labels, node_status
from hive.bus import Bus
from wire.messages import Message

pytestmark = pytest.mark.timeout(20)


def node(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}


async def answer(bus: Bus, msg: Message) -> Message:
    await bus.send(routes.EDGECONTROLLER, msg)
    while True:
        reply = await asyncio.wait_for(bus.receive(routes.HUB), 5)
        if reply.parent_id == msg.id:
            return reply


def report(sender: str, about: str) -> Message:
    return Message.new(
        source=routes.HUB,
        group="resource",
        operation="update",
        resource=f"node/{sender}/null/nodestatus/{about}",
        content={"status": node_status(cloud_host="127.0.0.1"), "labels": node_labels()},
    )


async def test_own_status_report_is_stored(controlled: tuple[Bus, EmbeddedStore]) -> None:
    """capacity, nodeInfo and os/arch labels from the edge appear on its Node."""
    bus, store = controlled
    reply = await answer(bus, report("edge-1", "edge-1"))
    assert reply.operation == "response"
    obj = await store.get("node", None, "edge-1")
    assert obj["status"]["capacity"]["pods"] == "110"
    assert obj["status"]["nodeInfo"]["operatingSystem"] == "linux"
    assert obj["metadata"]["labels"]["kubernetes.io/os"] == "linux"


async def test_report_about_another_node_is_refused(controlled: tuple[Bus, EmbeddedStore]) -> None:
    """A node cannot write another node's status; the other Node is unchanged."""
    bus, store = controlled
    before = await store.get("node", None, "edge-2")
    reply = await answer(bus, report("edge-1", "edge-2"))
    assert reply.operation == "error" and "may not" in reply.content
    assert await store.get("node", None, "edge-2") == before


async def test_malformed_report_is_refused(controlled: tuple[Bus, EmbeddedStore]) -> None:
    """A report that is not NodeStatus-shaped gets an error naming the problem."""
    bus, _ = controlled
    msg = report("edge-1", "edge-1")
    msg.content = {"status": "broken"}
    reply = await answer(bus, msg)
    assert reply.operation == "error" and "invalid node status" in reply.content


class CountingStore:
    """The embedded store behind a narrower face: counts status writes, and without
    ``merge_statuses`` when ``merging`` is false (as the Kubernetes store is)."""

    def __init__(self, store: EmbeddedStore, *, merging: bool) -> None:
        self._store = store
        self._merging = merging
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        if name == "merge_statuses":
            if not self._merging:
                raise AttributeError(name)
            return self._merge_statuses
        return getattr(self._store, name)

    async def _merge_statuses(self, *args: Any) -> Any:
        self.writes += 1
        return await self._store.merge_statuses(*args)

    async def update_statuses(self, updates: Any) -> Any:
        self.writes += 1
        return await self._store.update_statuses(updates)


@pytest.mark.parametrize("merging", [True, False])
async def test_presence_of_a_connect_storm_is_written_in_batches(
    tmp_path: Path, merging: bool
) -> None:
    """Many nodes coming online at once: every Node gets Ready=True, in a few writes; nodes
    without a Node object are skipped."""
    store = EmbeddedStore(tmp_path / "store.db")
    await store.start()
    names = [f"edge-{i}" for i in range(60)]
    await store.apply([node(n) for n in names])
    counting = CountingStore(store, merging=merging)
    bus = Bus()
    bus.register(routes.HUB, "hub")
    bus.register(routes.EDGECONTROLLER, "resource")
    ctl = EdgeController(bus=bus, store=counting)
    task = asyncio.create_task(ctl.run(), name="edgecontroller")
    try:
        await asyncio.wait_for(ctl.synced.wait(), 5)
        for n in [*names, "ghost"]:
            await bus.send(
                routes.EDGECONTROLLER,
                Message.new(
                    source=routes.HUB,
                    group="resource",
                    operation="update",
                    resource=routes.nodestatus_resource(n),
                    content=routes.NodeStatusReport(online=True, at=1_700_000_000.0),
                ),
            )

        async def all_ready() -> None:
            while True:
                objs, _ = await store.list("node")
                ready = [
                    c["status"]
                    for o in objs
                    for c in (o.get("status") or {}).get("conditions") or []
                    if c["type"] == "Ready"
                ]
                if ready.count("True") == len(names):
                    return
                await asyncio.sleep(0.01)

        await asyncio.wait_for(all_ready(), 5)
        assert 0 < counting.writes < 10
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()
