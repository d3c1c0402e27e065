"""Unauthenticated connections are capped per address and in total, and slow ones time out,
so one hostile peer cannot keep edges from connecting."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.security.conftest import StartCloud, join_node, link
from tests.support.inproc import edge_tls
from tests.support.procs import wait_until

pytestmark = pytest.mark.timeout(20)


async def _silent(port: int, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection from ``source`` that never says anything."""
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await reader.read(1) == b""
    except ConnectionError:
        return True


async def test_one_address_cannot_use_up_handshake_slots(
    start_cloud: StartCloud, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Beyond the per-address cap, a flood's connections are closed at accept; an edge from
    another address still connects."""
    cloud = await start_cloud(max_pending_per_ip=4, handshake_timeout=5.0)
    edge = await join_node(cloud, tmp_path)
    with caplog.at_level(logging.WARNING):
        flood = [await _silent(cloud.ws_port, "127.0.0.2") for _ in range(12)]
        await wait_until(lambda: cloud.hub.gate.refused >= 8, timeout=5)
    assert cloud.hub.gate.pending_from("127.0.0.2") == 4
    closed = await asyncio.gather(*(_closed_by_server(r) for r, _ in flood[4:]))
    assert all(closed)
    assert any("handshakes pending from that address" in r.getMessage() for r in caplog.records)
    async with link(cloud, edge):
        await wait_until(lambda: "edge-1" in cloud.hub.sessions, timeout=5)
    for _, w in flood:
        w.close()


async def test_total_cap_refuses_at_accept(start_cloud: StartCloud) -> None:
    """When the total cap of pending handshakes is reached, more connections are refused."""
    cloud = await start_cloud(max_pending_handshakes=3, handshake_timeout=5.0)
    conns = [await _silent(cloud.ws_port, f"127.0.0.{i}") for i in range(2, 8)]
    await wait_until(lambda: cloud.hub.gate.refused >= 3, timeout=5)
    assert cloud.hub.gate.pending == 3
    for _, w in conns:
        w.close()
    await wait_until(lambda: cloud.hub.gate.pending == 0, timeout=5)


async def test_silent_tcp_connection_times_out(start_cloud: StartCloud) -> None:
    """A connection that never starts TLS is closed after the handshake timeout."""
    cloud = await start_cloud(handshake_timeout=0.3)
    reader, writer = await _silent(cloud.ws_port, "127.0.0.2")
    started = time.monotonic()
    assert await asyncio.wait_for(_closed_by_server(reader), 5)
    assert time.monotonic() - started < 3
    writer.close()
    await wait_until(lambda: cloud.hub.gate.pending == 0, timeout=5)


async def test_tls_without_websocket_upgrade_times_out(
    start_cloud: StartCloud, tmp_path: Path
) -> None:
    """A peer that completes TLS but never sends the upgrade request is closed in time."""
    cloud = await start_cloud(handshake_timeout=0.3)
    edge = await join_node(cloud, tmp_path)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", cloud.ws_port, ssl=edge_tls(edge), server_hostname="127.0.0.1"
    )
    started = time.monotonic()
    assert await asyncio.wait_for(_closed_by_server(reader), 5)
    assert time.monotonic() - started < 3
    writer.close()


async def test_authenticated_link_frees_its_handshake_slot(
    start_cloud: StartCloud, tmp_path: Path
) -> None:
    """A connected edge does not count against the cap: more edges than the cap connect."""
    cloud = await start_cloud(max_pending_per_ip=1)
    edges = [await join_node(cloud, tmp_path, f"edge-{i}") for i in range(3)]
    async with link(cloud, edges[0]), link(cloud, edges[1]), link(cloud, edges[2]):
        await wait_until(lambda: len(cloud.hub.sessions) == 3, timeout=5)
        assert cloud.hub.gate.pending == 0


async def test_https_port_has_a_handshake_timeout(start_cloud: StartCloud) -> None:
    """The join/admin port also drops a client that never finishes TLS."""
    cloud = await start_cloud(handshake_timeout=0.3)
    reader, writer = await _silent(cloud.https_port, "127.0.0.2")
    writer.write(b"\x16\x03\x01")  # the first bytes of a TLS record, then nothing
    started = time.monotonic()
    assert await asyncio.wait_for(_closed_by_server(reader), 5)
    assert time.monotonic() - started < 3
    writer.close()


async def test_edge_connects_while_flood_is_pending(
    start_cloud: StartCloud, tmp_path: Path
) -> None:
    """With the flood's slots full, a real edgecore link still comes up promptly."""
    cloud = await start_cloud(max_pending_per_ip=2, handshake_timeout=5.0)
    edge = await join_node(cloud, tmp_path)
    flood = [await _silent(cloud.ws_port, "127.0.0.3") for _ in range(20)]
    started = time.monotonic()
    async with connect(
        f"wss://127.0.0.1:{cloud.ws_port}/p/edge-1/events", ssl=edge_tls(edge), open_timeout=5
    ):
        assert time.monotonic() - started < 2
    for _, w in flood:
        w.close()
