"""The twin's tables share ``edgecore.db`` and its one schema with metamanager."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edgecore.db import MIGRATIONS
from edgecore.devicetwin.store import (
    DeviceRecord,
    NewOutboxRow,
    TwinRecord,
    TwinStore,
    WriteSet,
)
from edgecore.metastore import Change, MetaStore
from wire import twin as m


@pytest.mark.parametrize("twin_first", [True, False])
async def test_shares_the_file_with_metamanager(tmp_path: Path, twin_first: bool) -> None:
    """Opened before or after metamanager's cache, both schemas are there and both write."""
    path = tmp_path / "edgecore.db"
    if twin_first:
        twin = await TwinStore.open(path)
        meta = await MetaStore.open(path)
    else:
        meta = await MetaStore.open(path)
        twin = await TwinStore.open(path)
    try:
        await meta.apply([Change("default/pod/a", "1", {"kind": "Pod"})])
        await twin.commit(
            WriteSet(devices={"default/d": DeviceRecord("default/d", "d", "default")})
        )
        assert await meta.get("default/pod/a") == {"kind": "Pod"}
        devices, _ = await twin.load()
        assert list(devices) == ["default/d"]
    finally:
        await twin.close()
        await meta.close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"meta", "device", "device_twin", "outbox", "kept_model"} <= tables
        assert "twin_schema" not in tables
    finally:
        db.close()


async def test_rows_round_trip_through_reopen(tmp_path: Path) -> None:
    """Twin values (with tombstones), optional flags and outbox rows read back as written."""
    path = tmp_path / "edgecore.db"
    twin = m.Twin(
        expected=m.cloud_removed(generation=3, timestamp=7),
        actual=m.reported("21.5", hlc=99, timestamp=98),
    )
    store = await TwinStore.open(path)
    await store.commit(
        WriteSet(
            devices={"default/d": DeviceRecord("default/d", "d", "default", state="online")},
            twins={("default/d", "t"): TwinRecord("default/d", "t", twin, True, "float")},
            outbox=[NewOutboxRow("id-1", "default/device/d/state/update", {"state": "x"}, 5)],
        )
    )
    await store.close()
    store = await TwinStore.open(path)
    try:
        devices, twins = await store.load()
        assert devices["default/d"].state == "online"
        assert twins == [TwinRecord("default/d", "t", twin, True, "float")]
        (row,) = await store.pending()
        assert (row.msg_id, row.content) == ("id-1", {"state": "x"})
        await store.commit(WriteSet(acked={"id-1"}))
        assert await store.outbox_size() == 0
    finally:
        await store.close()
