"""Followers of one type share one list+watch; watch events carry the server's bytes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from cloudhub.k8s.watchlines import parse_event
from cloudhub.store.base import WatchEvent
from cloudhub.store.follow import follow
from cloudhub.store.kubernetes import KubeStore
from tests.k8s.objects import pod
from tests.support.kubeapi import KubeApiEmulator
from tests.support.procs import wait_until

pytestmark = pytest.mark.timeout(20)


class Follower:
    """What one follow() call was told: every ``listed`` and the events' (type, name)."""

    def __init__(self) -> None:
        self.lists: list[list[str]] = []
        self.events: list[tuple[str, str]] = []
        self.bodies: list[str | None] = []

    async def listed(self, objects: list[dict[str, Any]]) -> None:
        self.lists.append(sorted(o["metadata"]["name"] for o in objects))

    async def changed(self, event: WatchEvent) -> None:
        self.events.append((event.type, event.object["metadata"]["name"]))
        self.bodies.append(event.body)

    def names(self) -> set[str]:
        """What this follower holds: the last list plus the events since."""
        held = set(self.lists[-1]) if self.lists else set()
        for kind, name in self.events:
            if kind == "DELETED":
                held.discard(name)
            else:
                held.add(name)
        return held


def start(store: KubeStore, f: Follower, tg: asyncio.TaskGroup) -> asyncio.Task[None]:
    return tg.create_task(follow(store, "pod", listed=f.listed, changed=f.changed))


async def test_two_followers_share_one_watch_and_see_the_same_events(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """Two followers of pods: one list and one watch request, both get every event."""
    kubeapi.seed(pod("a"))
    first, second = Follower(), Follower()
    async with asyncio.TaskGroup() as tg:
        tasks = [start(store, first, tg), start(store, second, tg)]
        await wait_until(lambda: first.lists and second.lists and kubeapi.open_watches == 1)
        kubeapi.seed(pod("b"))
        await wait_until(lambda: len(first.events) == len(second.events) == 1)
        for task in tasks:
            task.cancel()
    assert first.lists == second.lists == [["a"]]
    assert first.events == second.events == [("ADDED", "b")]
    assert kubeapi.count("watch", "/api/v1/pods") == 1
    assert kubeapi.count("list", "/api/v1/pods") == 1


async def test_a_late_follower_lists_for_itself_and_misses_nothing(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """Joining a running watch: its own list, then the shared events; it ends up equal."""
    kubeapi.seed(pod("a"))
    early, late = Follower(), Follower()
    async with asyncio.TaskGroup() as tg:
        tasks = [start(store, early, tg)]
        await wait_until(lambda: early.lists and kubeapi.open_watches == 1)
        tasks.append(start(store, late, tg))
        kubeapi.seed(pod("b"))
        await wait_until(lambda: late.lists and "b" in late.names() and "b" in early.names())
        kubeapi.seed(pod("c"))
        await wait_until(lambda: "c" in late.names() and "c" in early.names())
        assert kubeapi.open_watches == 1
        tasks[0].cancel()  # the follower running the watch stops: the other takes over
        await wait_until(lambda: len(late.lists) == 2)
        kubeapi.seed(pod("d"))
        await wait_until(lambda: "d" in late.names())
        tasks[1].cancel()
    assert early.names() == {"a", "b", "c"}
    assert late.names() == {"a", "b", "c", "d"}


async def test_watch_events_carry_the_objects_bytes_as_sent(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """The event's body is the server's JSON of the object, equal to the decoded object."""
    f = Follower()
    async with asyncio.TaskGroup() as tg:
        task = start(store, f, tg)
        await wait_until(lambda: f.lists and kubeapi.open_watches == 1)
        kubeapi.seed(pod("a"))
        await wait_until(lambda: f.bodies)
        task.cancel()
    (body,) = f.bodies
    assert body is not None
    decoded = json.loads(body)
    assert decoded["metadata"]["name"] == "a" and decoded["kind"] == "Pod"


def test_a_watch_line_is_cut_into_its_object_only_when_it_has_the_servers_shape() -> None:
    """Compact two-member lines give the object's bytes; any other shape gives none."""
    obj = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "ü"}}
    compact = json.dumps({"type": "ADDED", "object": obj}, separators=(",", ":")).encode()
    event = parse_event(compact, more=True)
    assert event.type == "ADDED" and event.more and event.object == obj
    assert event.body is not None and json.loads(event.body) == obj
    spaced = json.dumps({"type": "ADDED", "object": obj}).encode()
    assert parse_event(spaced).body is None and parse_event(spaced).object == obj
    reordered = json.dumps({"object": obj, "type": "ADDED"}, separators=(",", ":")).encode()
    assert parse_event(reordered).body is None
    with pytest.raises(ValueError):
        parse_event(b'["not", "an", "event"]')
