"""MetaStore watchers: events after commit, filters, overflow, ending."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgecore.metastore import Change, MetaStore, StoreEvent, Subscription
from wire.errors import StoreError


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[MetaStore]:
    s = await MetaStore.open(tmp_path / "edgecore.db")
    yield s
    await s.close()


async def take(sub: Subscription, n: int) -> list[StoreEvent]:
    async with asyncio.timeout(2):
        return [await anext(sub) for _ in range(n)]


async def test_added_modified_deleted(store: MetaStore) -> None:
    """A new key is ADDED, a replaced one MODIFIED, a removed one DELETED with its last state."""
    sub = store.subscribe()
    await store.apply([Change("default/pod/a", "1", {"v": 1})])
    await store.apply([Change("default/pod/a", "2", {"v": 2})])
    await store.apply([Change("default/pod/a", None, None)])
    events = await take(sub, 3)
    assert [(e.type, e.key, e.obj, e.resource_version) for e in events] == [
        ("ADDED", "default/pod/a", {"v": 1}, "1"),
        ("MODIFIED", "default/pod/a", {"v": 2}, "2"),
        ("DELETED", "default/pod/a", {"v": 2}, "2"),
    ]
    sub.close()


async def test_event_arrives_after_commit(store: MetaStore, tmp_path: Path) -> None:
    """When a watcher sees an event, a fresh connection already reads the row."""
    sub = store.subscribe("pod")
    await store.apply([Change("default/pod/a", "1", {"v": 1})])
    (event,) = await take(sub, 1)
    other = await MetaStore.open(tmp_path / "edgecore.db")
    try:
        assert await other.get(event.key) == {"v": 1}
    finally:
        await other.close()


async def test_deleting_missing_key_emits_nothing(store: MetaStore) -> None:
    """A delete of a key that was not cached produces no event."""
    sub = store.subscribe()
    await store.apply([Change("default/pod/ghost", None, None), Change("default/pod/b", "1", {})])
    (event,) = await take(sub, 1)
    assert (event.type, event.key) == ("ADDED", "default/pod/b")


async def test_type_and_namespace_filters(store: MetaStore) -> None:
    """A subscription sees only its type and, if given, its namespace."""
    pods = store.subscribe("pod")
    in_ns = store.subscribe("pod", namespace="prod")
    await store.apply(
        [
            Change("default/configmap/c", "1", {}),
            Change("default/pod/a", "1", {}),
            Change("prod/pod/b", "1", {}),
        ]
    )
    assert [e.key for e in await take(pods, 2)] == ["default/pod/a", "prod/pod/b"]
    assert [e.key for e in await take(in_ns, 1)] == ["prod/pod/b"]


async def test_close_ends_iteration_and_unsubscribes(store: MetaStore) -> None:
    """Closing a subscription ends its async-for and removes it from the store."""
    sub = store.subscribe()
    assert store.subscribers == 1

    async def consume() -> list[StoreEvent]:
        return [e async for e in sub]

    task = asyncio.create_task(consume())
    await store.apply([Change("default/pod/a", "1", {})])
    await sub.aclose()  # what is already queued is still delivered
    async with asyncio.timeout(2):
        events = await task
    assert [e.key for e in events] == ["default/pod/a"]
    assert store.subscribers == 0


async def test_context_manager_unsubscribes(store: MetaStore) -> None:
    """Leaving ``async with`` unsubscribes."""
    async with store.subscribe("pod"):
        assert store.subscribers == 1
    assert store.subscribers == 0


async def test_slow_watcher_is_cut_off(store: MetaStore) -> None:
    """A watcher whose queue fills is marked overflowed and ends after its queued events."""
    sub = store.subscribe(maxsize=3)
    await store.apply([Change(f"default/pod/p{i}", "1", {}) for i in range(5)])
    assert sub.overflowed
    assert store.subscribers == 0
    async with asyncio.timeout(2):
        events = [e async for e in sub]
    assert [e.key for e in events] == ["default/pod/p0", "default/pod/p1", "default/pod/p2"]


async def test_store_close_ends_subscriptions(tmp_path: Path) -> None:
    """Closing the store ends every open subscription; subscribing afterwards fails."""
    store = await MetaStore.open(tmp_path / "edgecore.db")
    sub = store.subscribe()
    task = asyncio.create_task(anext(sub, None))
    await store.close()
    async with asyncio.timeout(2):
        assert await task is None
    with pytest.raises(StoreError):
        store.subscribe()
