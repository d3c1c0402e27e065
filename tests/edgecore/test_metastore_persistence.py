"""MetaStore on disk: survives reopen, owner-only files, schema version, damaged data."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from edgecore.db import MIGRATIONS
from edgecore.metastore import Change, MetaStore
from wire.errors import ConfigError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_data_survives_reopen(tmp_path: Path) -> None:
    """Objects applied before close are there after reopening the file."""
    path = tmp_path / "edgecore.db"
    store = await MetaStore.open(path)
    await store.apply([Change("null/node/edge-1", "5", {"kind": "Node", "metadata": {}})])
    await store.close()
    store = await MetaStore.open(path)
    try:
        assert await store.inventory() == {"null/node/edge-1": "5"}
        assert await store.get("null/node/edge-1") == {"kind": "Node", "metadata": {}}
    finally:
        await store.close()


async def test_files_are_owner_only(tmp_path: Path) -> None:
    """The database and its -wal/-shm files are created with mode 0600."""
    path = tmp_path / "edgecore.db"
    store = await MetaStore.open(path)
    try:
        await store.apply([Change("default/secret/s", "1", {"kind": "Secret", "data": {}})])
        for name in ("edgecore.db", "edgecore.db-wal", "edgecore.db-shm"):
            assert mode(tmp_path / name) == 0o600, name
    finally:
        await store.close()


async def test_existing_file_is_tightened_to_owner_only(tmp_path: Path) -> None:
    """A pre-existing world-readable database file is made 0600 on open."""
    path = tmp_path / "edgecore.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    store = await MetaStore.open(path)
    await store.close()
    assert mode(path) == 0o600


async def test_wal_mode_and_schema_version(tmp_path: Path) -> None:
    """The file is in WAL mode with user_version at the newest migration."""
    path = tmp_path / "edgecore.db"
    store = await MetaStore.open(path)
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        cols = [r[1] for r in db.execute("PRAGMA table_info(meta)")]
    db.close()
    assert cols == ["key", "type", "namespace", "name", "resource_version", "value"]


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database written by a newer schema raises ConfigError instead of being touched."""
    path = tmp_path / "edgecore.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(ConfigError, match="schema version"):
        await MetaStore.open(path)


async def test_not_a_database_is_a_config_error(tmp_path: Path) -> None:
    """A file that is not SQLite raises ConfigError naming the path."""
    path = tmp_path / "edgecore.db"
    path.write_bytes(b"this is not a database, just some text that is long enough" * 20)
    with pytest.raises(ConfigError, match=r"edgecore\.db"):
        await MetaStore.open(path)


async def test_corrupt_json_row_is_skipped(tmp_path: Path) -> None:
    """A row whose value is not a JSON object is ignored by get, list and inventory."""
    path = tmp_path / "edgecore.db"
    store = await MetaStore.open(path)
    await store.apply(
        [
            Change("default/pod/good", "1", {"kind": "Pod"}),
            Change("default/pod/bad", "1", {"kind": "Pod"}),
            Change("default/pod/list", "1", {"kind": "Pod"}),
        ]
    )
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE meta SET value = '{not json' WHERE key = 'default/pod/bad'")
        db.execute("UPDATE meta SET value = '[1, 2]' WHERE key = 'default/pod/list'")
    db.close()
    try:
        assert await store.get("default/pod/bad") is None
        assert await store.get("default/pod/list") is None
        assert await store.list("pod") == [{"kind": "Pod"}]
        assert await store.inventory() == {"default/pod/good": "1"}
        # and the damaged rows can be overwritten by the cloud's resend
        await store.apply([Change("default/pod/bad", "2", {"kind": "Pod", "ok": True})])
        assert await store.get("default/pod/bad") == {"kind": "Pod", "ok": True}
    finally:
        await store.close()
