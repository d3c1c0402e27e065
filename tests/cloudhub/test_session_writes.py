"""The session writer's time limit: only writes that could wait for the peer get one, and a
peer that stops reading still loses its link."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cloudhub.hub import session as session_module
from cloudhub.hub.session import NodeSession
from tests.support.procs import wait_until

pytestmark = pytest.mark.timeout(10)


class FakeTransport:
    def __init__(self, buffered: int) -> None:
        self.buffered = buffered
        self.aborted = False

    def get_extra_info(self, name: str) -> Any:
        return None

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (8 * 1024, 32 * 1024)

    def abort(self) -> None:
        self.aborted = True


class FakeLink:
    """A websocket whose sends complete at once, or never (a peer that stopped reading)."""

    def __init__(self, *, buffered: int = 0, stuck: bool = False) -> None:
        self.transport = FakeTransport(buffered)
        self.stuck = stuck
        self.sent: list[str] = []

    async def send(self, frame: str) -> None:
        if self.stuck:
            await asyncio.Event().wait()
        self.sent.append(frame)


def make_session(link: FakeLink) -> NodeSession:
    return NodeSession(
        node="edge-1",
        ws=link,  # type: ignore[arg-type]
        heartbeat=30.0,
        ack_timeout=5.0,
        window=16,
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


async def test_a_peer_that_stops_reading_loses_its_link(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_module, "SEND_TIMEOUT", 0.1)
    link = FakeLink(buffered=16 * 1024, stuck=True)
    session = make_session(link)
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
    await session.deliver()
    assert len(link.sent) == 1 and '"resource":"default/pod/p"' in link.sent[0]
    assert not session._wake.is_set()
    assert session.downstream.in_flight == 1
    await session.close("done")


async def test_a_change_that_could_wait_is_left_to_the_writer() -> None:
    """Above the low-water mark deliver only wakes the writer, which writes it (timed)."""
    link = FakeLink(buffered=16 * 1024)
    session = await started_session(link)
    session.downstream.update("default/pod/p", "5", POD)
    await session.deliver()
    assert link.sent == [] and session._wake.is_set()
    await wait_until(lambda: len(link.sent) == 1, timeout=5)
    await session.close("done")
