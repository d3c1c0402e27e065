"""``edgecore.db``: one migration scheme for the whole file, one transaction helper, and files
written by the release before the single scheme still open with their data."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

import pytest

from edgecore import db
from edgecore.devicetwin.store import TwinStore
from edgecore.edged.statusbox import StatusBox
from edgecore.metastore import MetaStore
from wire.errors import ConfigError

pytestmark = pytest.mark.timeout(30)

#: edgecore.db as the release at 703cf06 wrote it (MetaStore, TwinStore and StatusBox of that
#: release, one row each; see data/README.md): user_version 1, twin_schema version 2
PREVIOUS = Path(__file__).parent / "data" / "edgecore-before-one-schema.db"


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
    conn.close()
    return {r[0] for r in rows}


def version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        v = int(conn.execute("PRAGMA user_version").fetchone()[0])
    conn.close()
    return v


@pytest.fixture
def previous(tmp_path: Path) -> Path:
    path = tmp_path / "edgecore.db"
    shutil.copyfile(PREVIOUS, path)
    return path


async def test_fixture_is_the_old_layout(previous: Path) -> None:
    """The fixture has the old two counters (user_version 1 and a twin_schema table)."""
    assert version(previous) == 1
    assert "twin_schema" in tables(previous)


@pytest.mark.parametrize("first", ["meta", "twin", "status"])
async def test_previous_release_file_opens_with_its_data(previous: Path, first: str) -> None:
    """Whichever store opens it first, an old file is migrated once and every row reads back."""
    if first == "meta":
        await (await MetaStore.open(previous)).close()
    elif first == "twin":
        await (await TwinStore.open(previous)).close()
    else:
        await (await StatusBox.open(previous)).close()
    assert version(previous) == len(db.MIGRATIONS)
    assert "twin_schema" not in tables(previous)
    meta = await MetaStore.open(previous)
    twin = await TwinStore.open(previous)
    box = await StatusBox.open(previous)
    try:
        pod = await meta.get("default/pod/web")
        assert pod is not None and pod["spec"]["nodeName"] == "edge-1"
        assert await meta.inventory() == {"default/pod/web": "7"}
        devices, twins = await twin.load()
        assert devices["default/thermo"].state == "online"
        (row,) = twins
        assert row.twin.actual is not None and row.twin.actual.value == "21.5"
        assert [r.msg_id for r in await twin.pending()] == ["m-1"]
        assert list(await twin.kept_models()) == ["default/thermometer"]
        (status,) = await box.pending()
        assert (status.key, status.status) == ("default/web", {"phase": "Running"})
        # the seq counter carries on after the old rows
        (newer,) = await box.put([("default/web", "uid-1", {"phase": "Failed"})])
        assert newer.seq > status.seq
    finally:
        await box.close()
        await twin.close()
        await meta.close()


async def test_new_file_has_every_table_at_the_newest_version(tmp_path: Path) -> None:
    """A new file gets the whole schema from the first store that opens it."""
    path = tmp_path / "edgecore.db"
    await (await TwinStore.open(path)).close()
    assert version(path) == len(db.MIGRATIONS)
    expected = {"meta", "device", "device_twin", "outbox", "kept_model", "pod_status_outbox"}
    assert expected <= tables(path)
    assert "twin_schema" not in tables(path)


async def test_stores_opening_at_once_migrate_once(tmp_path: Path) -> None:
    """Three stores opening a new file concurrently all succeed on one migrated schema."""
    path = tmp_path / "edgecore.db"
    stores = await asyncio.gather(MetaStore.open(path), TwinStore.open(path), StatusBox.open(path))
    for store in stores:
        await store.close()
    assert version(path) == len(db.MIGRATIONS)


@pytest.mark.parametrize("opener", [MetaStore.open, TwinStore.open])
async def test_newer_schema_is_refused_untouched(tmp_path: Path, opener: object) -> None:
    """A file from a newer edgecore is refused with one line naming its version."""
    path = tmp_path / "edgecore.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(db.MIGRATIONS) + 3}")
    conn.close()
    assert callable(opener)
    with pytest.raises(ConfigError, match=f"schema version {len(db.MIGRATIONS) + 3}"):
        await opener(path)
    assert version(path) == len(db.MIGRATIONS) + 3
    assert "meta" not in tables(path)


async def test_newer_schema_stops_the_pod_status_outbox(tmp_path: Path) -> None:
    """edged's outbox refuses a newer file with a StoreError (edged restarts, the app lives)."""
    from wire.errors import StoreError

    path = tmp_path / "edgecore.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(db.MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(StoreError, match="schema version"):
        await StatusBox.open(path)


async def test_transaction_commits_or_rolls_back_whole(tmp_path: Path) -> None:
    """A block that raises leaves nothing written and the connection free for the next one."""
    path = tmp_path / "edgecore.db"
    conn = await db.connect(path, what="the test database")
    try:
        with pytest.raises(RuntimeError):
            async with db.transaction(conn):
                await conn.execute("INSERT INTO kept_model (id, body) VALUES ('a', '{}')")
                raise RuntimeError("boom")
        async with db.transaction(conn):
            await conn.execute("INSERT INTO kept_model (id, body) VALUES ('b', '{}')")
        async with conn.execute("SELECT id FROM kept_model") as cur:
            assert [r[0] for r in await cur.fetchall()] == ["b"]
        assert not conn.in_transaction
    finally:
        await conn.close()


async def test_cancelled_transaction_rolls_back(tmp_path: Path) -> None:
    """A transaction cancelled mid-way is rolled back, so the next writer is not blocked."""
    path = tmp_path / "edgecore.db"
    conn = await db.connect(path, what="the test database")
    started = asyncio.Event()

    async def slow() -> None:
        async with db.transaction(conn):
            await conn.execute("INSERT INTO kept_model (id, body) VALUES ('a', '{}')")
            started.set()
            await asyncio.Event().wait()

    try:
        task = asyncio.create_task(slow())
        await asyncio.wait_for(started.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not conn.in_transaction
        other = await TwinStore.open(path)  # takes the write lock to check the schema
        await other.close()
        async with conn.execute("SELECT count(*) FROM kept_model") as cur:
            assert (await cur.fetchone()) == (0,)
    finally:
        await conn.close()


async def test_not_a_database_names_the_file(tmp_path: Path) -> None:
    """A file that is not SQLite is one ConfigError line naming it."""
    path = tmp_path / "edgecore.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError, match=r"cannot open the twin tables in .*edgecore\.db"):
        await TwinStore.open(path)
