"""Links terminated by a link worker process behave as links cloudhub terminates itself:
identity from the certificate, refusals with the reason, closes, frame limits, pacing; a
worker that dies is replaced and its edges reconnect."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import ssl
import struct
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import BINARY, TEXT, Frame

from cloudhub import app as cloud_app
from cloudhub.config import CloudSettings, HubSettings
from cloudhub.limits import ConnectionGate
from cloudhub.linkworker.pool import PAUSE_AT, RESUME_AT, RelayedLink
from cloudhub.linkworker.records import Kind
from cloudhub.linkworker.worker import Relay, WorkerConfig
from edgecore.config import EdgeSettings
from tests.security.conftest import join_node, link
from tests.support.inproc import edge_tls
from tests.support.procs import wait_until
from wire.codec import encode
from wire.messages import Group, Message, Operation

pytestmark = pytest.mark.timeout(30)


@contextlib.asynccontextmanager
async def _one_worker(tmp_path: Path, **hub: Any) -> AsyncIterator[cloud_app.CloudApp]:
    """A cloudhub on free ports with one link worker and these hub settings."""
    cloud = await cloud_app.start(
        CloudSettings(
            data_dir=tmp_path / "cloud",
            https_port=0,
            hub=HubSettings(bind="127.0.0.1", ws_port=0, link_workers=1, **hub),
        )
    )
    try:
        yield cloud
    finally:
        await cloud.stop()


@pytest.fixture
async def relayed(tmp_path: Path) -> AsyncIterator[tuple[cloud_app.CloudApp, EdgeSettings]]:
    """A cloudhub with one link worker (frames up to 64 KiB), and node edge-1 joined to it."""
    async with _one_worker(tmp_path, max_frame=64 * 1024) as cloud:
        yield cloud, await join_node(cloud, tmp_path)


async def _close_code(ws: ClientConnection) -> int | None:
    """Read until cloudhub closes the link (within 5 s); the close code it sent."""
    with pytest.raises(ConnectionClosed) as info:
        async with asyncio.timeout(5):
            while True:
                await ws.recv()
    return None if info.value.rcvd is None else info.value.rcvd.code


async def _synced(ws: ClientConnection) -> dict[str, Any]:
    """State an empty inventory; the first object message (the node's own Node)."""
    await ws.send(
        encode(
            Message.new(
                source="edgehub",
                group=Group.RESOURCE,
                operation=Operation.INVENTORY,
                resource="",
                content={},
            )
        )
    )
    while True:
        msg = json.loads(await ws.recv())
        if msg["route"]["operation"] in ("insert", "update"):
            return dict(msg)


async def test_an_edge_linked_through_a_worker_is_served_by_cloudhub(
    relayed: tuple[cloud_app.CloudApp, EdgeSettings],
) -> None:
    """The session holds a relayed link; the edge gets its Node and its ACK is taken."""
    cloud, edge = relayed
    async with link(cloud, edge) as ws:
        await wait_until(lambda: "edge-1" in cloud.hub.sessions, timeout=5)
        assert isinstance(cloud.hub.sessions["edge-1"].link, RelayedLink)
        msg = await _synced(ws)
        assert msg["route"]["resource"].endswith("node/edge-1")
        session = cloud.hub.sessions["edge-1"]
        assert session.downstream.in_flight
        await ws.send(
            encode(
                Message.new(
                    source="edgehub",
                    group=Group.RESOURCE,
                    operation=Operation.RESPONSE,
                    resource=msg["route"]["resource"],
                    content="OK",
                    parent_id=msg["header"]["msg_id"],
                )
            )
        )
        await wait_until(lambda: not session.downstream.in_flight, timeout=5)


async def test_a_worker_refuses_an_impersonating_peer_with_the_reason(
    relayed: tuple[cloud_app.CloudApp, EdgeSettings], tmp_path: Path
) -> None:
    """A node_id header naming another node gets cloudhub's 403 and reason, via the worker."""
    cloud, edge = relayed
    await join_node(cloud, tmp_path, "edge-2")
    with pytest.raises(InvalidStatus) as info:
        async with link(cloud, edge, additional_headers={"node_id": "edge-2"}):
            pass
    assert info.value.response.status_code == 403
    assert b"disagrees with certificate" in info.value.response.body
    assert not cloud.hub.sessions


async def test_cloudhub_dropping_a_link_closes_it_at_the_edge(
    relayed: tuple[cloud_app.CloudApp, EdgeSettings],
) -> None:
    """hub.drop (ownership lost, revocation) reaches the worker: the edge's link ends."""
    cloud, edge = relayed
    async with link(cloud, edge) as ws:
        await wait_until(lambda: "edge-1" in cloud.hub.sessions, timeout=5)
        cloud.hub.drop("edge-1", "test")
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(5):
                while True:
                    await ws.recv()
    await wait_until(lambda: "edge-1" not in cloud.hub.sessions, timeout=5)


async def test_an_oversized_frame_closes_only_that_link(
    relayed: tuple[cloud_app.CloudApp, EdgeSettings], tmp_path: Path
) -> None:
    """A frame over max_frame closes its link with 1009; another edge's link stays up."""
    cloud, edge = relayed
    other = await join_node(cloud, tmp_path, "edge-2")
    async with link(cloud, other) as bystander, link(cloud, edge) as ws:
        await wait_until(lambda: {"edge-1", "edge-2"} <= set(cloud.hub.sessions), timeout=5)
        await ws.send("x" * (65 * 1024))
        assert await _close_code(ws) == 1009
        await wait_until(lambda: "edge-1" not in cloud.hub.sessions, timeout=5)
        assert "edge-2" in cloud.hub.sessions
        await _synced(bystander)


async def test_a_killed_worker_is_replaced_and_its_edges_reconnect(
    relayed: tuple[cloud_app.CloudApp, EdgeSettings],
) -> None:
    """kill -9 of a link worker: its links end in cloudhub, a new worker serves reconnects."""
    cloud, edge = relayed
    workers = cloud.hub.workers
    assert workers is not None
    async with link(cloud, edge):
        await wait_until(lambda: "edge-1" in cloud.hub.sessions, timeout=5)
        os.kill(workers.pids[0], signal.SIGKILL)
        await wait_until(lambda: "edge-1" not in cloud.hub.sessions, timeout=5)
    await wait_until(lambda: workers.started_total == 2 and len(workers.pids) == 1, timeout=15)

    # The listening socket stayed open in cloudhub: this waits in its backlog for the new worker.
    async with link(cloud, edge) as ws:
        await _synced(ws)


def _hold_verdicts(
    cloud: cloud_app.CloudApp, *, until: threading.Event
) -> tuple[threading.Event, list[str]]:
    """Make cloudhub's decision on each upgrade block its loop until ``until`` is set.

    Returns an event set once a decision has started, and the nodes admitted since.
    """
    workers = cloud.hub.workers
    assert workers is not None
    admit = workers._admit
    deciding = threading.Event()
    served: list[str] = []

    def held(hello: Any) -> Any:
        deciding.set()
        until.wait(5)
        peer = admit(hello)
        served.append(peer.node)
        return peer

    workers._admit = held
    return deciding, served


def _upgrade_request(cloud: cloud_app.CloudApp, edge: EdgeSettings) -> ssl.SSLSocket:
    """A blocking TLS connection as ``edge`` that has sent a websocket upgrade request and
    not read the answer (a raw socket, so a test can reset it or read the status line)."""
    raw = socket.create_connection(("127.0.0.1", cloud.ws_port))
    tls = edge_tls(edge).wrap_socket(raw, server_hostname="127.0.0.1")
    tls.sendall(
        b"GET /project/edge-1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    return tls


class _FakeChannel:
    """What a RelayedLink writes to: the records it emitted."""

    def __init__(self) -> None:
        self.emitted: list[tuple[Kind, int, bytes]] = []
        self.writable = asyncio.Event()
        self.writable.set()

    def emit(self, kind: Kind, conn: int, payload: bytes = b"") -> None:
        self.emitted.append((kind, conn, payload))

    def forget(self, conn: int) -> None:
        pass


async def test_a_link_the_hub_does_not_keep_up_with_is_paused_at_its_worker() -> None:
    """PAUSE once PAUSE_AT frames wait unread, RESUME when the reader is back to RESUME_AT."""
    channel = _FakeChannel()
    relayed = RelayedLink(channel, 7, ("127.0.0.1", 1))  # type: ignore[arg-type]
    for i in range(PAUSE_AT + 10):
        relayed.feed(f"frame-{i}")
    assert [k for k, _, _ in channel.emitted] == [Kind.PAUSE]
    frames = aiter(relayed)
    for _ in range(PAUSE_AT + 10 - RESUME_AT):
        await anext(frames)
    assert [k for k, _, _ in channel.emitted] == [Kind.PAUSE, Kind.RESUME]


async def test_frames_read_before_the_edge_left_are_still_handled() -> None:
    """An end reported by the worker keeps what was read; an abort by cloudhub drops it."""
    channel = _FakeChannel()
    ended = RelayedLink(channel, 1, ())  # type: ignore[arg-type]
    ended.feed("a")
    ended.ended()
    assert [f async for f in ended] == ["a"]
    aborted = RelayedLink(channel, 2, ())  # type: ignore[arg-type]
    aborted.feed("b")
    aborted.abort()
    assert [f async for f in aborted] == []
    assert (Kind.CLOSE, 2, b"") in channel.emitted
    with pytest.raises(ConnectionClosed):
        await aborted.send("late")


async def test_a_worker_caps_unauthenticated_connections_per_address(tmp_path: Path) -> None:
    """Beyond max_pending_per_ip, a worker closes a flood's connections at accept; an edge
    from another address still connects."""
    async with _one_worker(tmp_path, max_pending_per_ip=4) as cloud:
        edge = await join_node(cloud, tmp_path)
        flood = [
            await asyncio.open_connection("127.0.0.1", cloud.ws_port, local_addr=("127.0.0.2", 0))
            for _ in range(12)
        ]

        async def closed(reader: asyncio.StreamReader) -> bool:
            try:
                return await reader.read(1) == b""
            except ConnectionError:
                return True

        async with asyncio.timeout(10):
            results = await asyncio.gather(*(closed(r) for r, _ in flood[4:]))
        assert all(results)
        async with link(cloud, edge) as ws:
            await _synced(ws)
        for _, writer in flood:
            writer.close()


async def test_an_edge_that_leaves_during_the_upgrade_leaves_no_session(
    relayed: tuple[cloud_app.CloudApp, EdgeSettings],
) -> None:
    """A peer that resets its connection while cloudhub decides on its upgrade does not stay
    online in cloudhub until its keepalive runs out."""
    cloud, edge = relayed
    reset_sent = threading.Event()
    deciding, served = _hold_verdicts(cloud, until=reset_sent)

    def upgrade_then_reset() -> None:
        try:
            with _upgrade_request(cloud, edge) as tls:
                deciding.wait(5)  # the worker has sent HELLO; cloudhub is deciding
                tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                tls.close()  # an RST, not a goodbye
        finally:
            reset_sent.set()

    reset = asyncio.get_running_loop().run_in_executor(None, upgrade_then_reset)
    await wait_until(lambda: served == ["edge-1"], timeout=5)
    await reset
    await wait_until(lambda: "edge-1" not in cloud.hub.sessions, timeout=5)


async def test_an_upgrade_cloudhub_answers_too_late_leaves_no_session(tmp_path: Path) -> None:
    """The worker answers 503 when cloudhub's verdict comes after the handshake timeout;
    cloudhub's late ACCEPT then finds the link gone instead of keeping it online."""
    async with _one_worker(tmp_path, handshake_timeout=0.5) as cloud:
        edge = await join_node(cloud, tmp_path)
        refused = threading.Event()
        _, served = _hold_verdicts(cloud, until=refused)  # past the worker's timeout

        def attempt() -> int:
            try:
                with _upgrade_request(cloud, edge) as tls:
                    return int(tls.recv(64).split()[1])
            finally:
                refused.set()

        status = await asyncio.get_running_loop().run_in_executor(None, attempt)
        assert status == 503
        await wait_until(lambda: served == ["edge-1"], timeout=5)
        await wait_until(lambda: "edge-1" not in cloud.hub.sessions, timeout=5)


async def test_a_text_frame_that_is_not_utf8_closes_its_link_with_1007(
    relayed: tuple[cloud_app.CloudApp, EdgeSettings],
) -> None:
    """The worker relays no text frame that is not UTF-8: the link is failed with 1007, as a
    link cloudhub terminates itself would be."""
    cloud, edge = relayed
    async with link(cloud, edge) as ws:
        await _synced(ws)
        await ws.send(b"\xff\xfe not text", text=True)
        assert await _close_code(ws) == 1007
    await wait_until(lambda: "edge-1" not in cloud.hub.sessions, timeout=5)


async def test_a_worker_relays_a_whole_message_at_once_unless_it_must_wait(
    tmp_path: Path,
) -> None:
    """A complete frame becomes its record in the callback that parsed it, except while its
    link is paused, the channel is congested or the text is not UTF-8 (then it queues for the
    handler, which keeps the order and the errors websockets gives)."""
    relay = Relay(
        WorkerConfig(
            index=0,
            listen_fd=-1,
            channel_fd=-1,
            server_cert=tmp_path / "c",
            server_key=tmp_path / "k",
            ca_cert=tmp_path / "ca",
            max_frame=1024,
            handshake_timeout=1.0,
            send_timeout=1.0,
            max_pending_handshakes=1,
            max_pending_per_ip=1,
        ),
        ConnectionGate(name="test", max_pending=1, max_pending_per_ip=1),
    )
    emitted: list[tuple[Kind, int, bytes]] = []
    relay.channel.emit = lambda kind, conn, payload=b"": emitted.append((kind, conn, payload))  # type: ignore[method-assign]
    reading = relay._reading[5] = asyncio.Event()
    reading.set()

    assert relay.take(5, Frame(TEXT, b'{"ack": 1}'))
    assert relay.take(5, Frame(BINARY, b"\x00\x01"))
    assert emitted == [(Kind.TEXT, 5, b'{"ack": 1}'), (Kind.BINARY, 5, b"\x00\x01")]
    assert not relay.take(5, Frame(TEXT, b"\xff"))
    assert not relay.take(6, Frame(TEXT, b"{}"))  # not (or no longer) a link being served
    reading.clear()
    assert not relay.take(5, Frame(TEXT, b"{}"))
    reading.set()
    relay.channel.writable.clear()
    assert not relay.take(5, Frame(TEXT, b"{}"))
    assert len(emitted) == 2
