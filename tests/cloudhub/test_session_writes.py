"""The session writer's time limit: only writes that could wait for the peer get one, and a
peer that stops reading still loses its link."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import ValidationError
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.protocol import CLOSING, OPEN, State

from cloudhub.config import HubSettings
from cloudhub.hub.session import NodeSession
from tests.support.procs import wait_until

pytestmark = pytest.mark.timeout(10)


class FakeTransport:
    """Records each write; the fake protocol ends every frame's bytes with a NUL, so the
    frames of a joined write can be told apart."""

    def __init__(self, buffered: int, frames: list[str], direct: list[str]) -> None:
        self.buffered = buffered
        self.aborted = False
        self.written: list[bytes] = []
        self._frames = frames
        self._direct = direct

    def write(self, data: bytes) -> None:
        self.written.append(data)
        frames = [f.decode() for f in data.split(b"\0")[:-1]]
        self._frames.extend(frames)
        self._direct.extend(frames)

    def is_closing(self) -> bool:
        return self.aborted

    def get_extra_info(self, name: str) -> Any:
        return None

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (8 * 1024, 32 * 1024)

    def abort(self) -> None:
        self.aborted = True


class FakeProtocol:
    """The sans-I/O side: frames handed to it wait in ``writes`` until the link flushes them."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.writes: list[bytes] = []

    def send_text(self, data: bytes) -> None:
        assert self.state is OPEN
        self.writes.append(data + b"\0")

    def data_to_send(self) -> list[bytes]:
        writes, self.writes = self.writes, []
        return writes


class FakeLink:
    """A websocket whose sends complete at once, or never (a peer that stopped reading).

    ``sent`` holds every frame in the order it reached the link, ``direct`` those written
    through the protocol object (the session's path that skips ``send``).
    """

    def __init__(self, *, buffered: int = 0, stuck: bool = False, state: State = OPEN) -> None:
        self.sent: list[str] = []
        self.direct: list[str] = []
        self.transport = FakeTransport(buffered, self.sent, self.direct)
        self.protocol = FakeProtocol(state)
        self.send_in_progress: asyncio.Future[None] | None = None
        self.paused = False
        self.stuck = stuck

    async def send(self, frame: str) -> None:
        if self.stuck:
            await asyncio.Event().wait()
        self.sent.append(frame)

    def send_data(self) -> None:
        for data in self.protocol.data_to_send():
            self.transport.write(data)


def make_session(link: FakeLink, *, send_timeout: float = 10.0) -> NodeSession:
    return NodeSession(
        node="edge-1",
        ws=link,  # type: ignore[arg-type]
        heartbeat=30.0,
        ack_timeout=5.0,
        window=16,
        send_timeout=send_timeout,
    )


@pytest.mark.parametrize(
    ("buffered", "frames", "expected"),
    [
        (0, ["x" * 100], False),  # empty buffer, small frame: cannot wait
        (9 * 1024, ["x"], True),  # above the low-water mark: may still be paused
        (0, ["x" * 8 * 1024], True),  # could reach the high-water mark
    ],
)
def test_only_writes_that_could_wait_are_timed(
    buffered: int, frames: list[str], expected: bool
) -> None:
    async def check() -> bool:
        return make_session(FakeLink(buffered=buffered))._may_wait(frames)

    assert asyncio.run(check()) is expected


async def test_queued_frames_are_written_in_order() -> None:
    link = FakeLink()
    session = make_session(link)
    session.run_writer()
    for i in range(3):
        session.send_soon(f"frame-{i}")
    await wait_until(lambda: len(link.sent) == 3, timeout=5)
    assert link.sent == ["frame-0", "frame-1", "frame-2"]
    await session.close("done")


async def test_a_peer_that_stops_reading_loses_its_link() -> None:
    """A write that waits longer than send_timeout for a frozen peer closes its link."""
    link = FakeLink(buffered=16 * 1024, stuck=True)
    session = make_session(link, send_timeout=0.1)
    session.run_writer()
    session.send_soon("frame")
    await asyncio.wait_for(session.closed.wait(), 5)
    assert link.transport.aborted and session.close_reason.startswith("write failed")


POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}}


async def started_session(link: FakeLink) -> NodeSession:
    session = make_session(link)
    session.run_writer()
    session.start({}, {})
    await wait_until(lambda: session._parked, timeout=5)
    return session


async def test_a_change_is_written_by_the_caller_when_it_cannot_wait() -> None:
    """With the writer parked and room in the buffer, deliver writes at once, no wake-up."""
    link = FakeLink()
    session = await started_session(link)
    session.downstream.update("default/pod/p", "5", POD)
    session.deliver()
    assert len(link.sent) == 1 and '"resource":"default/pod/p"' in link.sent[0]
    assert not session._wake.is_set()
    assert session.downstream.in_flight == 1
    await session.close("done")


async def test_a_change_that_could_wait_is_left_to_the_writer() -> None:
    """Above the low-water mark deliver only wakes the writer, which writes it (timed)."""
    link = FakeLink(buffered=16 * 1024)
    session = await started_session(link)
    session.downstream.update("default/pod/p", "5", POD)
    session.deliver()
    assert link.sent == [] and session._wake.is_set()
    await wait_until(lambda: len(link.sent) == 1, timeout=5)
    await session.close("done")


async def test_a_direct_write_sets_the_alarm_for_its_ack_deadline() -> None:
    """After a change written by the caller, the writer's alarm rings by the frame's ACK
    deadline (not at the idle link's keepalive expiry), and a later change does not move it."""
    link = FakeLink()
    session = await started_session(link)
    loop = asyncio.get_running_loop()
    session.downstream.update("default/pod/p", "5", POD)
    before = loop.time()
    session.deliver()
    alarm = session._alarm
    assert alarm is not None and alarm.when() <= loop.time() + 5.0
    assert alarm.when() >= before + 5.0
    session.downstream.update("default/pod/q", "1", POD)
    session.deliver()
    assert session._alarm is alarm and len(link.sent) == 2
    await session.close("done")


async def test_a_key_held_back_after_a_direct_write_goes_out_at_its_release() -> None:
    """A newer version held back by ``min_interval`` goes out when the pause ends, though the
    writer's alarm was already set for a later ACK deadline."""
    link = FakeLink()
    session = NodeSession(
        node="edge-1",
        ws=link,  # type: ignore[arg-type]
        heartbeat=30.0,
        ack_timeout=5.0,
        window=16,
        send_timeout=10.0,
        min_interval=0.2,
    )
    session.run_writer()
    session.start({}, {})
    await wait_until(lambda: session._parked, timeout=5)
    session.state.change("default/pod/p", "5", POD)
    session.deliver()
    assert len(link.sent) == 1
    msg_id = json.loads(link.sent[0])["header"]["msg_id"]
    assert not session.ack(msg_id), "nothing newer waits yet"
    session.state.change("default/pod/p", "6", POD)
    session.deliver()
    assert len(link.sent) == 1 and session.downstream.holding, "held back for now"
    await wait_until(lambda: len(link.sent) == 2, timeout=2)
    assert json.loads(link.sent[1])["header"]["resourceversion"] == "6"
    await session.close("done")


async def test_a_frame_that_cannot_wait_skips_send() -> None:
    link = FakeLink()
    session = make_session(link)
    await session.send_text("pong")
    assert link.sent == ["pong"] and link.direct == ["pong"]


@pytest.mark.parametrize("blocker", ["closing", "fragment", "paused", "aborted", "full"])
async def test_anything_send_would_decide_goes_through_send(blocker: str) -> None:
    """A link closing, a fragmented message under way, paused writing, a transport going
    down or a buffer that may fill: the frame takes ``send`` (which waits or raises)."""
    link = FakeLink(buffered=16 * 1024 if blocker == "full" else 0)
    if blocker == "closing":
        link.protocol.state = CLOSING
    elif blocker == "fragment":
        link.send_in_progress = asyncio.get_running_loop().create_future()
    elif blocker == "paused":
        link.paused = True
    elif blocker == "aborted":
        link.transport.aborted = True
    session = make_session(link)
    await session.send_text("pong")
    await session._send_all(["a", "b"])
    assert link.sent == ["pong", "a", "b"] and link.direct == []


async def test_frames_due_together_go_out_as_one_write() -> None:
    """Several frames due at once for a link are one transport write, in order; a single
    frame is one write too."""
    link = FakeLink()
    session = make_session(link)
    await session._send_all(["a", "b", "c"])
    await session.send_text("d")
    assert link.direct == ["a", "b", "c", "d"]
    assert link.transport.written == [b"a\0b\0c\0", b"d\0"]


async def test_changes_due_together_are_delivered_as_one_write() -> None:
    """Two changes ready at once, delivered from the caller: one write, no wake-up."""
    link = FakeLink()
    session = await started_session(link)
    session.downstream.update("default/pod/p", "5", POD)
    session.downstream.update("default/pod/q", "2", POD)
    session.deliver()
    assert len(link.transport.written) == 1 and len(link.direct) == 2
    assert not session._wake.is_set()
    await session.close("done")


async def test_direct_writes_reach_a_real_websockets_peer() -> None:
    """The protocol object and ``send_data`` as websockets has them: frames arrive whole,
    in order, interleaved with ``send``'s."""
    done = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        session = NodeSession(
            node="edge-1", ws=ws, heartbeat=30.0, ack_timeout=5.0, window=16, send_timeout=10.0
        )
        await session.send_text("one")
        await ws.send("two")
        await session._send_all(["three", "vier \u00e9\u00e8"])
        await session.send_text("x" * 100_000)  # could fill the buffer: takes send
        await done.wait()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", compression=None) as client:
            got = [await client.recv() for _ in range(5)]
            done.set()
    assert got == ["one", "two", "three", "vier \u00e9\u00e8", "x" * 100_000]


async def test_a_frame_that_is_not_utf8_is_left_to_send() -> None:
    """What send does with text it cannot encode (it fails the link) stays its decision."""
    link = FakeLink()
    session = make_session(link)
    await session.send_text("lone \ud800")
    assert link.sent == ["lone \ud800"] and link.direct == []


@pytest.mark.parametrize("value", [0, -1.0])
def test_send_timeout_must_be_positive(value: float) -> None:
    """HubSettings refuses a send_timeout that would drop every link at its first write."""
    with pytest.raises(ValidationError):
        HubSettings(send_timeout=value)
