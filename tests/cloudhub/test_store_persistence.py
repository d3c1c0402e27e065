"""EmbeddedStore on disk: file permissions, durability across restarts, the RV counter."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cloudhub.store.embedded import EmbeddedStore
from cloudhub.store.settings import StoreSettings
from wire.errors import Gone, StoreError


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


async def opened(path: Path, **settings: int) -> EmbeddedStore:
    store = EmbeddedStore(path, StoreSettings(**settings))
    await store.start()
    return store


async def test_database_file_is_private(tmp_path: Path) -> None:
    """store.db (and its WAL companions) are created mode 0600, parent folders included."""
    path = tmp_path / "data" / "cloud" / "store.db"
    store = await opened(path)
    await store.apply([configmap("c")])
    try:
        for file in path.parent.iterdir():
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file.name
    finally:
        await store.close()


async def test_loose_permissions_are_tightened(tmp_path: Path) -> None:
    """An existing store.db readable by others is set back to 0600 on start."""
    path = tmp_path / "store.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    store = await opened(path)
    await store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_objects_and_counter_survive_restart(tmp_path: Path) -> None:
    """After a restart objects are still there and new writes continue the RV sequence."""
    path = tmp_path / "store.db"
    store = await opened(path)
    (created,) = [a.object for a in await store.apply([configmap("a", k="v")])]
    await store.apply([configmap("b")])
    await store.delete("configmap", None, "b")  # rv 3: the highest, and deleted
    await store.close()

    store = await opened(path)
    try:
        assert await store.get("configmap", None, "a") == created
        objs, list_rv = await store.list("configmap")
        assert list_rv == "3" and len(objs) == 1
        (again,) = [a.object for a in await store.apply([configmap("b")])]
        assert again["metadata"]["resourceVersion"] == "4"
    finally:
        await store.close()


async def test_watch_resumes_across_restart(tmp_path: Path) -> None:
    """The event log persists: a watch after a restart replays what it missed."""
    path = tmp_path / "store.db"
    store = await opened(path)
    await store.apply([configmap("a")])
    await store.apply([configmap("b")])
    await store.close()

    store = await opened(path)
    try:
        event = await asyncio.wait_for(anext(store.watch("configmap", "1")), 2.0)
        assert (event.type, event.object["metadata"]["name"]) == ("ADDED", "b")
    finally:
        await store.close()


async def test_trimmed_history_stays_trimmed_after_restart(tmp_path: Path) -> None:
    """Compaction is remembered: resuming from before it is Gone after a restart too."""
    path = tmp_path / "store.db"
    store = await opened(path, history=1)
    await store.apply([configmap(f"c{i}") for i in range(3)])
    await store.close()

    store = await opened(path, history=1)
    try:
        with pytest.raises(Gone):
            store.watch("configmap", "0")
    finally:
        await store.close()


async def test_close_twice_is_safe_and_use_after_close_fails(tmp_path: Path) -> None:
    """close() may be called twice; using a closed store raises StoreError."""
    store = await opened(tmp_path / "store.db")
    await store.close()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.list("pod")


async def test_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    """A file that is not SQLite fails start() with StoreError naming the file."""
    path = tmp_path / "store.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"store\.db"):
        await opened(path)


@pytest.mark.parametrize(
    "bad",
    [
        {"history": 0},
        {"watch_buffer": 0},
        {"replay_page": 0},
        {"read_chunk": 0},
        {"read_chunk": 8192},
        {"rows_per_statement": 5462},
    ],
)
def test_settings_out_of_range_are_refused(bad: dict[str, int]) -> None:
    """Sizes below 1, or batches past SQLite's parameter limit, fail validation."""
    with pytest.raises(ValidationError):
        StoreSettings(**bad)


async def test_counter_comes_from_the_log_not_the_meta_table(tmp_path: Path) -> None:
    """A meta table behind the log (an older file, a crash) does not make RVs repeat."""
    path = tmp_path / "store.db"
    store = await opened(path)
    await store.apply([configmap("a"), configmap("b")])
    await store.delete("configmap", None, "b")  # rv 3 exists only in the log
    await store.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = 0")
    store = await opened(path)
    try:
        (again,) = [a.object for a in await store.apply([configmap("c")])]
        assert again["metadata"]["resourceVersion"] == "4"
    finally:
        await store.close()


async def test_log_is_trimmed_in_steps_and_gone_follows_what_was_trimmed(tmp_path: Path) -> None:
    """Trimming waits for 1% of history; until it happens the older events still replay."""
    path = tmp_path / "store.db"
    store = await opened(path, history=200)  # trims in steps of 2 events
    try:
        await store.apply([configmap(f"c{i}") for i in range(201)])  # 1 over: kept
        first = await asyncio.wait_for(anext(store.watch("configmap", "0")), 2.0)
        assert first.object["metadata"]["resourceVersion"] == "1"
        await store.apply([configmap("more")])  # 2 over: rv 1 and 2 trimmed
        with pytest.raises(Gone):
            store.watch("configmap", "1")
        store.watch("configmap", "2")
    finally:
        await store.close()
    store = await opened(path, history=200)
    try:
        with pytest.raises(Gone):
            store.watch("configmap", "1")
        store.watch("configmap", "2")
    finally:
        await store.close()
