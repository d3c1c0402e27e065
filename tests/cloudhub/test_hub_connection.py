"""A websocket link's frames offered to the hub's sink in the transport's callback
(:class:`cloudhub.hub.links.HubConnection`), on a real websockets server and client."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from cloudhub.hub.links import HubConnection, WebsocketLink
from tests.support.procs import wait_until

pytestmark = pytest.mark.timeout(10)


async def test_the_sink_takes_frames_while_the_reader_waits_and_the_rest_stay_in_order() -> None:
    """Frames the sink takes never reach the reader; frames it declines, and every frame
    while the reader is busy, arrive in order; binary frames are never offered."""
    taken: list[str] = []
    read: list[str | bytes] = []
    busy = asyncio.Event()
    release = asyncio.Event()

    def sink(frame: str | bytes) -> bool:
        assert isinstance(frame, str)
        if frame.startswith("ack"):
            taken.append(frame)
            return True
        return False

    async def handler(ws: ServerConnection) -> None:
        assert isinstance(ws, HubConnection)
        link = WebsocketLink(ws)
        link.take_frames(sink)
        async for frame in link:
            read.append(frame)
            if frame == "hold":
                busy.set()
                await release.wait()  # frames arriving now are queued: not offered

    async with serve(handler, "127.0.0.1", 0, create_connection=HubConnection) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}") as client:
            await client.send("ack-1")
            await wait_until(lambda: len(taken) == 1, timeout=5)
            await client.send("report")
            await wait_until(lambda: len(read) == 1, timeout=5)
            await client.send("ack-2")
            await wait_until(lambda: len(taken) == 2, timeout=5)
            await client.send(b"ack-binary")
            await wait_until(lambda: len(read) == 2, timeout=5)
            await client.send("hold")
            await busy.wait()
            await client.send("ack-3")
            await client.send("last")
            await (await client.ping())  # both frames are queued by the pong
            release.set()
            await wait_until(lambda: len(read) == 5, timeout=5)
    assert taken == ["ack-1", "ack-2"]
    assert read == ["report", b"ack-binary", "hold", "ack-3", "last"]
