"""Embedded Events are bounded on disk as in memory: by age and by count, across restarts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cloudhub.fleet.derive import node_event
from cloudhub.fleet.eventstore import EmbeddedEvents
from cloudhub.store.embedded import EmbeddedStore

pytestmark = pytest.mark.timeout(20)


async def _reopened(
    path: Path, *, retention: float = 3600.0, max_events: int = 2
) -> tuple[EmbeddedStore, EmbeddedEvents]:
    store = EmbeddedStore(path)
    await store.start()
    events = EmbeddedEvents(store, retention=retention, max_events=max_events)
    await events.start()
    return store, events


async def test_count_cap_and_age_hold_on_disk(tmp_path: Path) -> None:
    """Three nodes' events with a cap of two keep the newest two after a restart; events older
    than the retention are gone after a restart too; repeats keep their count."""
    now = time.time()
    store, events = await _reopened(tmp_path / "store.db", max_events=2)
    await events.record([node_event(f"edge-{i}", online=True, at=now - 30 + i) for i in range(3)])
    await events.record([node_event("edge-2", online=True, at=now)])
    await events.record([node_event("edge-9", online=False, at=now - 7200)])  # already too old
    await store.close()

    store, events = await _reopened(tmp_path / "store.db", max_events=2)
    kept = await events.list()
    assert [(e.involved_object.name, e.count) for e in kept] == [("edge-1", 1), ("edge-2", 2)]
    await store.close()

    store, events = await _reopened(tmp_path / "store.db", retention=10, max_events=2)
    assert [e.involved_object.name for e in await events.list()] == ["edge-2"]
    await store.close()
