"""What the edgecontroller tells the hub: the changes of one commit in one message, in order,
and anything else it sends after the changes that came before it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cloudhub import routes
from cloudhub.edgecontroller.controller import FANOUT_BATCH, EdgeController
from cloudhub.store.embedded import EmbeddedStore
from hive.bus import Bus
from wire.messages import Message

pytestmark = pytest.mark.timeout(20)


def pod(name: str, node_name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"nodeName": node_name, "containers": [{"name": "c", "image": "nginx"}]},
    }


async def next_for_hub(bus: Bus) -> Message:
    return await asyncio.wait_for(bus.receive(routes.HUB), 5)


async def test_one_commit_reaches_the_hub_as_one_message_in_order(
    controlled: tuple[Bus, EmbeddedStore],
) -> None:
    """Three pods applied together: one message, their three changes in the applied order,
    each for its own node and carrying the stored text."""
    bus, store = controlled
    stored = [
        a.object
        for a in await store.apply(
            [pod("c", "edge-1"), pod("a", "edge-2"), pod("b", "edge-1", v="1")]
        )
    ]
    msg = await next_for_hub(bus)
    assert isinstance(msg.content, routes.Fanouts)
    changes = msg.content.changes
    assert [(f.key, f.nodes) for f in changes] == [
        ("default/pod/c", ("edge-1",)),
        ("default/pod/a", ("edge-2",)),
        ("default/pod/b", ("edge-1",)),
    ]
    assert [f.resource_version for f in changes] == [
        o["metadata"]["resourceVersion"] for o in stored
    ]
    assert all(f.body is not None for f in changes)
    assert bus.receive_nowait(routes.HUB) is None


async def test_a_large_commit_is_split_and_a_removal_has_no_version(
    controlled: tuple[Bus, EmbeddedStore],
) -> None:
    """More changes than FANOUT_BATCH go in several messages, none lost or reordered; a
    deleted pod becomes a change without a resourceVersion."""
    bus, store = controlled
    n = FANOUT_BATCH + 3
    await store.apply([pod(f"p{i:04d}", "edge-1") for i in range(n)])
    keys: list[str] = []
    while len(keys) < n:
        msg = await next_for_hub(bus)
        assert isinstance(msg.content, routes.Fanouts)
        assert len(msg.content.changes) <= FANOUT_BATCH
        keys += [f.key for f in msg.content.changes]
    assert keys == [f"default/pod/p{i:04d}" for i in range(n)]
    await store.delete("pod", "default", "p0000")
    (removal,) = (await next_for_hub(bus)).content.changes
    assert removal.key == "default/pod/p0000" and removal.resource_version is None


async def test_a_desired_answer_comes_after_the_changes_it_includes(
    controlled: tuple[Bus, EmbeddedStore],
) -> None:
    """A node's desired set, asked right after a commit, reaches the hub after that commit's
    changes: the hub never applies an older change on top of a newer desired set."""
    bus, store = controlled
    await store.apply([pod("web", "edge-1")])
    query = Message.new(
        source=routes.HUB,
        group="resource",
        operation="query",
        resource=f"node/edge-1/{routes.DESIRED}",
    )
    await bus.send(routes.EDGECONTROLLER, query)
    first, second = await next_for_hub(bus), await next_for_hub(bus)
    assert isinstance(first.content, routes.Fanouts)
    assert second.parent_id == query.id
    assert "default/pod/web" in second.content


async def test_a_relist_removes_what_was_deleted_while_no_watch_ran(tmp_path: Path) -> None:
    """What the controller holds of a type and a re-list lacks (deleted during a 410) leaves
    its node; what the re-list still has, unchanged, is not sent again."""
    store = EmbeddedStore(tmp_path / "store.db")
    await store.start()
    bus = Bus()
    bus.register(routes.HUB, "hub")
    bus.register(routes.EDGECONTROLLER, "resource")
    ctl = EdgeController(bus=bus, store=store, mark_offline_on_start=False)
    try:
        kept, gone = pod("kept", "edge-1"), pod("gone", "edge-1")
        await ctl._relist("pod", [kept, gone])
        while bus.receive_nowait(routes.HUB) is not None:
            pass
        await ctl._relist("pod", [kept])
        msg = await next_for_hub(bus)
        assert isinstance(msg.content, routes.Fanouts)
        assert [(f.key, f.resource_version, f.nodes) for f in msg.content.changes] == [
            ("default/pod/gone", None, ("edge-1",))
        ]
        assert bus.receive_nowait(routes.HUB) is None
        assert ctl.index.keys("pod") == {"default/pod/kept"}
    finally:
        await store.close()
