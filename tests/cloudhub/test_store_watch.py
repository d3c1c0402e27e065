"""EmbeddedStore watches: replay from a resourceVersion, live fan-out, Gone, slow watchers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cloudhub.store.base import WatchEvent
from cloudhub.store.embedded import EmbeddedStore
from cloudhub.store.settings import StoreSettings
from wire.errors import Gone
from wire.manifests import validate_all

WAIT = 2.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    s = EmbeddedStore(tmp_path / "store.db")
    await s.start()
    yield s
    await s.close()


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def node(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}


async def take(watch: AsyncIterator[WatchEvent], n: int) -> list[tuple[str, str, str]]:
    """The next ``n`` events as (type, name, resourceVersion), failing after WAIT seconds."""
    out: list[tuple[str, str, str]] = []
    for _ in range(n):
        event = await asyncio.wait_for(anext(watch), WAIT)
        meta = event.object["metadata"]
        out.append((event.type, meta["name"], meta["resourceVersion"]))
    return out


async def test_watch_replays_history_then_goes_live(store: EmbeddedStore) -> None:
    """Events after `since` come from the log first, then new writes arrive live."""
    await store.apply([configmap("a")])
    await store.apply([configmap("b")])
    watch = store.watch("configmap", "1")
    assert await take(watch, 1) == [("ADDED", "b", "2")]
    await store.apply([configmap("a", x="1")])
    await store.delete("configmap", None, "b")
    assert await take(watch, 2) == [("MODIFIED", "a", "3"), ("DELETED", "b", "4")]


async def test_watch_from_list_rv_sees_only_later_changes(store: EmbeddedStore) -> None:
    """A watch started at a list's resourceVersion starts right after that list."""
    await store.apply([configmap("a"), configmap("b")])
    _, list_rv = await store.list("configmap")
    watch = store.watch("configmap", list_rv)
    await store.apply([configmap("c")])
    assert await take(watch, 1) == [("ADDED", "c", "3")]


async def test_empty_since_means_from_now(store: EmbeddedStore) -> None:
    """since="" replays nothing and reports writes made after the watch() call."""
    await store.apply([configmap("old")])
    watch = store.watch("configmap", "")
    await store.apply([configmap("new")])
    assert await take(watch, 1) == [("ADDED", "new", "2")]


async def test_events_ready_together_say_more_is_coming_but_the_last(
    store: EmbeddedStore,
) -> None:
    """A commit of three objects reaches a live watcher as three events, the first two marked
    ``more`` (a consumer may batch until the last); a replay marks its page the same way."""
    _, since = await store.list("configmap")
    await store.apply([configmap("x")])
    watch = store.watch("configmap", since)
    assert (await take(watch, 1))[0][1] == "x"  # replayed: the watch is live from here
    await store.apply([configmap("a"), configmap("b"), configmap("c")])
    live = [await asyncio.wait_for(anext(watch), WAIT) for _ in range(3)]
    assert [(e.object["metadata"]["name"], e.more) for e in live] == [
        ("a", True),
        ("b", True),
        ("c", False),
    ]
    replay = store.watch("configmap", since)
    again = [await asyncio.wait_for(anext(replay), WAIT) for _ in range(4)]
    assert [e.more for e in again] == [True, True, True, False]
    for stream in (watch, replay):
        assert isinstance(stream, AsyncGenerator)
        await stream.aclose()


async def test_watch_sees_only_its_type(store: EmbeddedStore) -> None:
    """A configmap watch skips node events."""
    watch = store.watch("configmap", "0")
    await store.apply([node("n"), configmap("c"), node("m")])
    assert await take(watch, 1) == [("ADDED", "c", "2")]


async def test_every_watcher_gets_every_event(store: EmbeddedStore) -> None:
    """Several watchers of one type each receive all events, in order."""
    one = store.watch("configmap", "0")
    two = store.watch("configmap", "0")
    await store.apply([configmap("a"), configmap("b")])
    expected = [("ADDED", "a", "1"), ("ADDED", "b", "2")]
    assert await take(one, 2) == expected
    assert await take(two, 2) == expected


async def test_watchers_get_private_copies(store: EmbeddedStore) -> None:
    """Mutating an event's object does not affect another watcher's copy."""
    one = store.watch("configmap", "0")
    two = store.watch("configmap", "0")
    await store.apply([configmap("a", k="v")])
    first = await asyncio.wait_for(anext(one), WAIT)
    first.object["data"]["k"] = "changed"
    second = await asyncio.wait_for(anext(two), WAIT)
    assert second.object["data"] == {"k": "v"}


async def test_events_carry_the_stored_text(store: EmbeddedStore) -> None:
    """Replayed and live events hand over the object's JSON exactly as the store holds it."""
    (applied,) = await store.apply([configmap("a", k="v")])
    replayed = await asyncio.wait_for(anext(store.watch("configmap", "0")), WAIT)
    live = store.watch("configmap", "1")
    (changed,) = await store.apply([configmap("a", k="w")])
    event = await asyncio.wait_for(anext(live), WAIT)
    assert replayed.body == applied.body and json.loads(applied.body) == replayed.object
    assert event.body == changed.body and json.loads(changed.body) == event.object


async def test_watcher_copy_is_not_the_callers(store: EmbeddedStore) -> None:
    """What apply hands back and what a watcher reads are separate objects."""
    watch = store.watch("configmap", "0")
    (applied,) = [a.object for a in await store.apply([configmap("a", k="v")])]
    applied["data"]["k"] = "changed by the caller"
    event = await asyncio.wait_for(anext(watch), WAIT)
    assert event.object["data"] == {"k": "v"}


async def test_one_dict_applied_twice_reaches_watchers_as_stored(store: EmbeddedStore) -> None:
    """A caller handing over the same dict twice in one batch: the second is unchanged, and
    the event's object is still what was stored."""
    obj = validate_all([configmap("a", k="v")])[0]
    watch = store.watch("configmap", "0")
    out = await store.apply([obj, obj, configmap("b")], owned=True)
    assert [a.action for a in out] == ["created", "unchanged", "created"]
    first = await asyncio.wait_for(anext(watch), WAIT)
    assert first.body is not None and json.loads(first.body) == first.object
    assert first.object == await store.get("configmap", "default", "a")


async def test_no_op_apply_emits_no_event(store: EmbeddedStore) -> None:
    """Applying an unchanged object produces no watch event."""
    await store.apply([configmap("a")])
    watch = store.watch("configmap", "1")
    await store.apply([configmap("a")])
    await store.apply([configmap("b")])
    assert await take(watch, 1) == [("ADDED", "b", "2")]


async def test_status_update_is_a_modified_event(store: EmbeddedStore) -> None:
    """update_status reaches watchers as MODIFIED with the merged status."""
    await store.apply([node("n")])
    watch = store.watch("node", "1")
    await store.update_status("node", None, "n", {"phase": "Ready"})
    event = await asyncio.wait_for(anext(watch), WAIT)
    assert event.type == "MODIFIED" and event.object["status"] == {"phase": "Ready"}


async def test_trimmed_history_is_gone(tmp_path: Path) -> None:
    """Resuming from before the kept history raises Gone; from its edge it still works."""
    store = EmbeddedStore(tmp_path / "store.db", StoreSettings(history=2))
    await store.start()
    try:
        await store.apply([configmap(f"c{i}") for i in range(5)])  # rv 1..5, log keeps 4..5
        with pytest.raises(Gone, match="older than the kept history"):
            await anext(store.watch("configmap", "2"))
        assert await take(store.watch("configmap", "3"), 2) == [
            ("ADDED", "c3", "4"),
            ("ADDED", "c4", "5"),
        ]
    finally:
        await store.close()


async def test_untrimmed_history_replays_from_zero(store: EmbeddedStore) -> None:
    """With nothing trimmed, a watch from 0 replays everything."""
    await store.apply([configmap("a"), configmap("b")])
    assert await take(store.watch("configmap", "0"), 2) == [
        ("ADDED", "a", "1"),
        ("ADDED", "b", "2"),
    ]


@pytest.mark.parametrize("since", ["99", "abc", "-1"])
async def test_foreign_resource_version_is_gone(store: EmbeddedStore, since: str) -> None:
    """A resourceVersion this store never issued (e.g. from a wiped store) raises Gone."""
    await store.apply([configmap("a")])
    with pytest.raises(Gone, match="not issued"):
        await anext(store.watch("configmap", since))


async def test_slow_watcher_is_dropped_without_blocking_writers(tmp_path: Path) -> None:
    """A watcher that falls behind its buffer gets Gone; writers and other watchers carry on."""
    store = EmbeddedStore(tmp_path / "store.db", StoreSettings(watch_buffer=3))
    await store.start()
    try:
        slow = store.watch("configmap", "")
        fast = store.watch("configmap", "")
        await store.apply([configmap("a")])
        assert await take(slow, 1) == [("ADDED", "a", "1")]
        assert await take(fast, 1) == [("ADDED", "a", "1")]
        for i in range(5):
            await asyncio.wait_for(store.apply([configmap(f"b{i}")]), WAIT)
            assert await take(fast, 1) == [("ADDED", f"b{i}", str(i + 2))]
        with pytest.raises(Gone, match="fell more than 3 events behind"):
            await anext(slow)
    finally:
        await store.close()


async def test_replay_and_concurrent_writes_lose_and_repeat_nothing(tmp_path: Path) -> None:
    """While a watch replays a long log page by page, concurrent writes arrive once, in order."""
    store = EmbeddedStore(tmp_path / "store.db", StoreSettings(replay_page=7))
    await store.start()
    try:
        await _replay_while_writing(store)
    finally:
        await store.close()


async def _replay_while_writing(store: EmbeddedStore) -> None:
    for i in range(30):
        await store.apply([configmap(f"a{i}", n="1")])
        await store.apply([configmap(f"a{i}", n="2")])
    for i in range(30):
        await store.apply([configmap(f"c{i}")])
    watch = store.watch("configmap", "0")

    async def writer() -> None:
        for i in range(50):
            await store.apply([configmap(f"w{i}")])

    consumer = asyncio.ensure_future(take(watch, 140))
    await writer()
    events = await consumer
    assert [int(rv) for _, _, rv in events] == list(range(1, 141))


async def test_history_trimmed_during_replay_is_gone(tmp_path: Path) -> None:
    """If writes trim the log past a replaying watcher's position, it gets Gone."""
    store = EmbeddedStore(tmp_path / "store.db", StoreSettings(history=5, replay_page=2))
    await store.start()
    try:
        await store.apply([configmap(f"a{i}") for i in range(5)])
        watch = store.watch("configmap", "0")
        assert await take(watch, 2) == [("ADDED", "a0", "1"), ("ADDED", "a1", "2")]
        await store.apply([configmap(f"b{i}") for i in range(5)])
        with pytest.raises(Gone, match="trimmed"):
            await take(watch, 1)
    finally:
        await store.close()


async def test_watch_is_registered_by_the_call(store: EmbeddedStore) -> None:
    """Writes made between watch() and the first read are not missed."""
    watch = store.watch("configmap", "")
    await store.apply([configmap("a")])
    await store.apply([configmap("b")])
    assert await take(watch, 2) == [("ADDED", "a", "1"), ("ADDED", "b", "2")]


async def test_close_ends_watches(tmp_path: Path) -> None:
    """Closing the store ends every open watch's iteration."""
    store = EmbeddedStore(tmp_path / "store.db")
    await store.start()
    watch = store.watch("node", "")

    async def drain() -> list[WatchEvent]:
        return [event async for event in watch]

    task = asyncio.ensure_future(drain())
    await store.close()
    assert await asyncio.wait_for(task, WAIT) == []
