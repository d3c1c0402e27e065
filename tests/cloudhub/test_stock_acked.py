"""Stock edges after a reconnect or a cloud restart get only what changed (their acked record)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudhub.app import CloudApp
from cloudhub.hub.acked import AckedLog, AckedRecord, MemoryAcked, SqliteAcked
from edgecore.config import EdgeSettings
from tests.k8s.objects import pod
from tests.support.inproc import join_node, start_cloud
from tests.support.procs import wait_until
from tests.support.stock_edge import StockEdge, stock_connect
from wire.delivery import Downstream

pytestmark = pytest.mark.timeout(60)

PODS = [f"default/pod/p{i:02d}" for i in range(20)]
#: the issue's target: a changed pod at its stock edge this soon after the edge reconnects
AT_EDGE_WITHIN = 0.5


def _changed(name: str) -> dict[str, Any]:
    obj = pod(name)
    obj["metadata"]["annotations"] = {"changed": "1"}
    return obj


def _key(frame: dict[str, Any]) -> str:
    return str(frame["route"]["resource"])


def _keyed(key: str) -> Callable[[dict[str, Any]], bool]:
    """A frame match: any frame about ``key``."""

    def match(frame: dict[str, Any]) -> bool:
        return _key(frame) == key

    return match


def _object(key: str) -> Callable[[dict[str, Any]], bool]:
    """A frame match: an object frame (group ``resource``) about ``key``."""

    def match(frame: dict[str, Any]) -> bool:
        return _key(frame) == key and bool(frame["route"]["group"] == "resource")

    return match


async def _receive_all(cloud: CloudApp, link: StockEdge, keys: list[str]) -> None:
    """Until every key arrived and the hub holds every ACK."""
    for key in keys:
        await link.until(_object(key))
    session = cloud.hub.sessions["edge-1"]
    await wait_until(lambda: session.downstream.backlog == 0, timeout=5)


async def _only_these(cloud: CloudApp, link: StockEdge, expect: set[str]) -> float:
    """Seconds from now until the last of ``expect`` arrived; nothing else was sent."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    for key in sorted(expect):
        await link.until(_keyed(key))
    took = loop.time() - began
    session = cloud.hub.sessions["edge-1"]
    await wait_until(lambda: session.started and session.downstream.backlog == 0, timeout=5)
    assert {_key(f) for f in link.objects()} == expect
    return took


async def _first_sync(tmp_path: Path) -> tuple[EdgeSettings, CloudApp]:
    cloud = await start_cloud(tmp_path / "cloud")
    await cloud.store.apply([pod(k.rsplit("/", 1)[1]) for k in PODS])
    edge = await join_node(cloud, "edge-1", tmp_path / "edge-1")
    async with stock_connect(cloud, edge, "edge-1") as link:
        await _receive_all(cloud, link, PODS)
    await wait_until(lambda: "edge-1" not in cloud.hub.sessions, timeout=5)
    return edge, cloud


async def test_a_restarted_cloud_sends_a_stock_edge_only_what_changed(tmp_path: Path) -> None:
    """After a cloud restart a stock edge gets the pod changed and the pod deleted meanwhile,
    within 0.5 s of connecting, and nothing else (it sent no inventory)."""
    edge, cloud = await _first_sync(tmp_path)
    await cloud.stop()
    cloud = await start_cloud(tmp_path / "cloud")
    try:
        await cloud.store.apply([_changed("p03")])
        await cloud.store.delete("pod", "default", "p07")
        async with stock_connect(cloud, edge, "edge-1") as link:
            took = await _only_these(cloud, link, {"default/pod/p03", "default/pod/p07"})
        deleted = next(f for f in link.frames if _key(f) == "default/pod/p07")
        assert deleted["route"]["operation"] == "delete"
        assert took <= AT_EDGE_WITHIN
        assert cloud.hub.acked is not None and cloud.hub.acked.used == 1
    finally:
        await cloud.stop()


async def test_a_reconnecting_stock_edge_gets_only_what_changed(tmp_path: Path) -> None:
    """The same without a restart: the link drops, two pods change, the edge comes back."""
    edge, cloud = await _first_sync(tmp_path)
    try:
        await cloud.store.apply([_changed("p01"), _changed("p02")])
        async with stock_connect(cloud, edge, "edge-1") as link:
            await _only_these(cloud, link, {"default/pod/p01", "default/pod/p02"})
    finally:
        await cloud.stop()


async def test_a_stock_edge_with_a_new_certificate_gets_everything(tmp_path: Path) -> None:
    """An edge that joined again (its data dir wiped: a new certificate) holds nothing the
    record says: it gets every pod."""
    _, cloud = await _first_sync(tmp_path)
    try:
        fresh = await join_node(cloud, "edge-1", tmp_path / "edge-1-again")
        async with stock_connect(cloud, fresh, "edge-1") as link:
            await _only_these(cloud, link, set(PODS))
    finally:
        await cloud.stop()


def _delivered(keys: dict[str, str]) -> Downstream:
    down = Downstream(window=1000)
    down.start({}, {k: (rv, {}) for k, rv in keys.items()})
    for out in down.poll(0.0):
        down.ack(out.msg_id)
    return down


async def test_the_log_writes_a_node_only_when_its_delivery_moved() -> None:
    """Snapshots of unchanged nodes write nothing; a link's end writes its last state; a
    record is used only under the certificate it was written for."""
    store = MemoryAcked()
    log = AckedLog(store)
    down = _delivered({"a": "1", "b": "2"})
    log.track("n", 7, down)
    log.snapshot()
    await log.flush()
    assert store.records["n"] == AckedRecord(serial=7, acked={"a": "1", "b": "2"})
    log.snapshot()
    await log.flush()
    assert store.saves == 1
    down.update("a", "3", {})
    (out,) = down.poll(1.0)
    log.untrack("n", down)  # in flight: the record keeps the version the edge confirmed
    await log.flush()
    assert store.records["n"].acked == {"a": "1", "b": "2"}
    down.ack(out.msg_id)
    assert down.known() == {"a": "3", "b": "2"}
    assert await log.inventory("n", 8) is None
    assert await log.inventory("n", 7) == {"a": "1", "b": "2"}
    assert await log.inventory("other", 7) is None


async def test_a_link_replacing_a_live_one_starts_from_its_state() -> None:
    """A new link while the node's previous one is still tracked: the inventory is that
    link's state, and it is written (that link's end no longer writes it)."""
    store = MemoryAcked()
    log = AckedLog(store)
    old = _delivered({"a": "1"})
    log.track("n", 7, old)
    assert await log.inventory("n", 7) == {"a": "1"}
    log.track("n", 7, Downstream())
    log.untrack("n", old)
    await log.flush()
    assert store.records["n"] == AckedRecord(serial=7, acked={"a": "1"})


async def test_keys_in_flight_are_recorded_without_a_version() -> None:
    """A key sent but not yet ACKed is in the record with an empty version."""
    down = Downstream()
    down.start({}, {"a": ("1", {})})
    down.poll(0.0)
    assert down.known() == {"a": ""}


async def test_sqlite_records_survive_a_reopen(tmp_path: Path) -> None:
    """Records written to the SQLite file are read back by a new instance; a corrupt one is
    a StoreError (the hub then resyncs in full)."""
    first = SqliteAcked(tmp_path / "acked.db")
    await first.save({"n": AckedRecord(serial=1, acked={"k": "9"})})
    await first.close()
    second = SqliteAcked(tmp_path / "acked.db")
    try:
        assert await second.load("n") == AckedRecord(serial=1, acked={"k": "9"})
        assert await second.load("missing") is None
    finally:
        await second.close()


@given(
    serial=st.integers(min_value=0, max_value=2**159),
    acked=st.dictionaries(st.text(max_size=40), st.text(max_size=12), max_size=30),
)
def test_records_round_trip(serial: int, acked: dict[str, str]) -> None:
    """Any record decodes to itself."""
    record = AckedRecord(serial=serial, acked=acked)
    assert AckedRecord.decode(record.encode()) == record


@given(st.binary(max_size=64))
def test_garbage_is_not_a_record(data: bytes) -> None:
    """Bytes that are not a record raise ValueError, never anything else."""
    try:
        AckedRecord.decode(data)
    except ValueError:
        pass


async def test_the_log_stops_when_cancelled_as_a_link_end_wakes_it() -> None:
    """Cancelled in the same turn as a wake-up (a link ending as cloudhub stops), it stops."""
    acked = AckedLog(MemoryAcked())
    task = asyncio.create_task(acked.run())
    await asyncio.sleep(0)  # let it reach its wait
    acked._wake.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(2):
            await task
