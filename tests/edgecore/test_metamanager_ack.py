"""MetaManager: cloud messages are stored, then ACKed to the hub; bad ones get error replies."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edgecore.config import MetaSettings
from edgecore.metamanager.module import MetaManager
from edgecore.metastore import MetaStore
from hive.bus import Bus
from wire.messages import Message


def cloud_msg(operation: str, resource: str, content: Any = None, *, rv: str = "") -> Message:
    return Message.new(
        source="edgecontroller",
        group="resource",
        operation=operation,
        resource=resource,
        content=content,
        resource_version=rv,
    )


def pod(name: str, rv: str = "1") -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": rv},
    }


def read_rv(path: Path, key: str) -> str | None:
    """resourceVersion of ``key`` as a separate, fresh connection sees it (committed data)."""
    db = sqlite3.connect(path)
    try:
        row = db.execute("SELECT resource_version FROM meta WHERE key = ?", (key,)).fetchone()
    finally:
        db.close()
    return None if row is None else str(row[0])


class Edge:
    """A bus with metamanager and a stand-in edgehub inbox, the module running."""

    def __init__(self, bus: Bus, store: MetaStore, module: MetaManager, path: Path) -> None:
        self.bus, self.store, self.module, self.path = bus, store, module, path

    async def send(self, msg: Message) -> None:
        await self.bus.send("metamanager", msg)

    async def reply(self) -> Message:
        async with asyncio.timeout(2):
            return await self.bus.receive("edgehub")


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[Edge]:
    path = tmp_path / "edgecore.db"
    store = await MetaStore.open(path)
    bus = Bus()
    bus.register("metamanager", "meta")
    bus.register("edgehub", "hub")
    module = MetaManager(bus=bus, store=store, settings=MetaSettings())
    task = asyncio.create_task(module.run())
    yield Edge(bus, store, module, path)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await store.close()


async def test_insert_is_acked_after_commit(edge: Edge) -> None:
    """An insert's ACK reaches edgehub only once the row is committed in SQLite."""
    msg = cloud_msg("insert", "default/pod/nginx", pod("nginx", "3"), rv="3")
    await edge.send(msg)
    ack = await edge.reply()
    assert read_rv(edge.path, "default/pod/nginx") == "3"
    assert (ack.operation, ack.parent_id, ack.content) == ("response", msg.id, "OK")
    assert ack.route.source == "metamanager"
    assert ack.resource == "default/pod/nginx"


async def test_rv_falls_back_to_object_metadata(edge: Edge) -> None:
    """Without header.resourceversion the object's metadata.resourceVersion is stored."""
    await edge.send(cloud_msg("update", "default/pod/a", pod("a", "42")))
    await edge.reply()
    assert await edge.store.inventory() == {"default/pod/a": "42"}


async def test_patch_replaces_and_delete_removes(edge: Edge) -> None:
    """patch stores the whole object; delete (with or without content) removes the key."""
    await edge.send(cloud_msg("insert", "default/pod/a", pod("a", "1"), rv="1"))
    await edge.send(cloud_msg("patch", "default/pod/a", {"kind": "Pod", "x": 1}, rv="2"))
    await edge.reply()
    await edge.reply()
    assert await edge.store.get("default/pod/a") == {"kind": "Pod", "x": 1}
    await edge.send(cloud_msg("delete", "default/pod/a", pod("a", "3")))
    await edge.send(cloud_msg("delete", "default/pod/never-there"))
    assert (await edge.reply()).content == "OK"
    assert (await edge.reply()).content == "OK"
    assert await edge.store.inventory() == {}


async def test_bad_messages_get_errors_and_do_not_fail_others(edge: Edge) -> None:
    """Unknown operation, bad resource or non-object content is refused; the rest is stored."""
    bad = [
        cloud_msg("frobnicate", "default/pod/a", pod("a")),
        cloud_msg("insert", "default/pod", pod("a")),
        cloud_msg("insert", "default/pod/a", "not an object"),
        cloud_msg("delete", "default/pod/a", ["list"]),
    ]
    good = cloud_msg("insert", "default/pod/ok", pod("ok"), rv="9")
    # all in the inbox before the module wakes, so they form one batch
    for m in [*bad, good]:
        edge.bus.send_nowait("metamanager", m)
    replies = {r.parent_id: r for r in [await edge.reply() for _ in range(5)]}
    for m in bad:
        assert replies[m.id].operation == "error", m.operation
        assert isinstance(replies[m.id].content, str) and replies[m.id].content
    assert replies[good.id].content == "OK"
    assert await edge.store.inventory() == {"default/pod/ok": "9"}


async def test_query_answers_from_cache(edge: Edge) -> None:
    """query replies with the cached object, or an error 'not found'."""
    await edge.send(cloud_msg("insert", "default/configmap/c", {"kind": "ConfigMap"}, rv="1"))
    await edge.reply()
    q = cloud_msg("query", "default/configmap/c")
    await edge.send(q)
    answer = await edge.reply()
    assert (answer.operation, answer.parent_id, answer.content) == (
        "response",
        q.id,
        {"kind": "ConfigMap"},
    )
    await edge.send(cloud_msg("query", "default/configmap/missing"))
    missing = await edge.reply()
    assert (missing.operation, missing.content) == ("error", "not found")


async def test_send_sync_caller_gets_the_reply(edge: Edge) -> None:
    """A local module using send_sync gets metamanager's reply directly, not via edgehub."""
    await edge.send(cloud_msg("insert", "null/node/edge-1", {"kind": "Node"}, rv="1"))
    await edge.reply()
    q = cloud_msg("query", "null/node/edge-1")
    answer = await edge.bus.send_sync("metamanager", q, timeout=2)
    assert answer.content == {"kind": "Node"}
    assert edge.bus.receive_nowait("edgehub") is None


async def test_answers_are_not_answered(edge: Edge) -> None:
    """response and error messages are dropped, never replied to."""
    await edge.send(cloud_msg("response", "default/pod/a", "OK"))
    await edge.send(cloud_msg("error", "default/pod/a", "nope"))
    ping = cloud_msg("delete", "default/pod/x")
    await edge.send(ping)
    assert (await edge.reply()).parent_id == ping.id


async def test_batch_of_1000_commits_in_few_transactions(edge: Edge) -> None:
    """1000 waiting messages are stored in a handful of transactions and all ACKed."""
    msgs = [cloud_msg("insert", f"default/pod/p{i}", pod(f"p{i}"), rv="1") for i in range(1000)]
    for m in msgs:
        assert edge.bus.send_nowait("metamanager", m)
    acked = {(await edge.reply()).parent_id for _ in range(1000)}
    assert acked == {m.id for m in msgs}
    assert len(await edge.store.inventory()) == 1000
    assert edge.store.commits <= 4
    assert edge.module.stored == 1000


async def test_failed_commit_sends_no_acks(tmp_path: Path) -> None:
    """When SQLite refuses a batch, nothing of it is stored or ACKed; the next batch works."""
    path = tmp_path / "edgecore.db"
    store = await MetaStore.open(path)
    bus = Bus()
    bus.register("metamanager", "meta")
    bus.register("edgehub", "hub")
    module = MetaManager(bus=bus, store=store, settings=MetaSettings())
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON meta WHEN NEW.name = 'boom'"
        " BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
    )
    db.commit()
    db.close()
    try:
        await module.process(
            [
                cloud_msg("insert", "default/pod/fine", pod("fine")),
                cloud_msg("insert", "default/pod/boom", pod("boom")),
            ]
        )
        assert bus.receive_nowait("edgehub") is None
        assert await store.inventory() == {}
        later = cloud_msg("insert", "default/pod/later", pod("later"), rv="5")
        await module.process([later])
        ack = bus.receive_nowait("edgehub")
        assert ack is not None and ack.parent_id == later.id
        assert await store.inventory() == {"default/pod/later": "5"}
    finally:
        await store.close()
