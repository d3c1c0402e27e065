"""cloudstream over real links: a stream belongs to its node, an overrun window ends it, a
disconnect ends it with the node's name."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from cloudhub import app as cloud_app
from tests.support.inproc import edge_tls, join_node, start_cloud
from tests.support.procs import wait_until
from wire.codec import encode
from wire.streams import MIN_WINDOW, Chunk, Close, LogsRequest, Opened, StreamOp, to_message

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def two_nodes(
    tmp_path: Path,
) -> AsyncIterator[tuple[cloud_app.CloudApp, ClientConnection, ClientConnection]]:
    """A real cloudhub and hand-driven links of nodes edge-1 and edge-2."""
    cloud = await start_cloud(tmp_path / "cloud")
    try:
        links = []
        for node in ("edge-1", "edge-2"):
            edge = await join_node(cloud, node, tmp_path / node)
            ctx = edge_tls(edge)
            links.append(
                await connect(f"wss://127.0.0.1:{cloud.ws_port}/project/{node}/events", ssl=ctx)
            )
        await wait_until(lambda: {"edge-1", "edge-2"} <= set(cloud.hub.sessions), timeout=5)
        yield cloud, links[0], links[1]
        for ws in links:
            await ws.close()
    finally:
        await cloud.stop()


async def next_stream_frame(ws: ClientConnection) -> dict[str, Any]:
    """The next stream message the cloud sends this link (object syncs skipped)."""
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if frame["route"]["group"] == "stream":
            return frame  # type: ignore[no-any-return]


def chunk(stream: str, seq: int, data: bytes) -> str:
    return encode(
        to_message(
            Chunk(stream=stream, seq=seq, data=data), source="edge", resource="default/pod/p"
        )
    )


async def test_data_from_another_node_is_dropped(two_nodes: Any) -> None:
    """edge-2 cannot write into a stream opened on edge-1; edge-1's own data arrives."""
    cloud, edge1, edge2 = two_nodes
    assert cloud.cloudstream is not None
    stream = await cloud.cloudstream.open("edge-1", LogsRequest(namespace="default", pod="p"))
    opened = await next_stream_frame(edge1)
    assert opened["route"]["operation"] == StreamOp.OPEN
    assert opened["route"]["resource"] == "default/pod/p"
    sid = opened["content"]["stream"]
    await edge2.send(chunk(sid, 0, b"forged"))
    await edge1.send(chunk(sid, 0, b"real"))
    event = await asyncio.wait_for(stream.next(), 5)
    assert isinstance(event, Chunk) and event.data == b"real"


async def test_overrunning_the_window_ends_the_stream(two_nodes: Any) -> None:
    """An edge that sends past its window gets a cancel; the reader gets an error end."""
    cloud, edge1, _ = two_nodes
    stream = await cloud.cloudstream.open(
        "edge-1", LogsRequest(namespace="default", pod="p"), window=MIN_WINDOW
    )
    sid = (await next_stream_frame(edge1))["content"]["stream"]
    await edge1.send(chunk(sid, 0, b"x" * MIN_WINDOW))
    await edge1.send(chunk(sid, 1, b"y"))
    assert isinstance(await asyncio.wait_for(stream.next(), 5), Chunk)
    end = await asyncio.wait_for(stream.next(), 5)
    assert isinstance(end, Close) and "over the window" in (end.error or "")
    cancel = await next_stream_frame(edge1)
    assert cancel["route"]["operation"] == StreamOp.CANCEL


async def test_credit_follows_consumption(two_nodes: Any) -> None:
    """Consuming a quarter of the window sends the edge a credit of what was consumed."""
    cloud, edge1, _ = two_nodes
    stream = await cloud.cloudstream.open(
        "edge-1", LogsRequest(namespace="default", pod="p"), window=MIN_WINDOW
    )
    sid = (await next_stream_frame(edge1))["content"]["stream"]
    await edge1.send(chunk(sid, 0, b"z" * (MIN_WINDOW // 4)))
    event = await asyncio.wait_for(stream.next(), 5)
    assert isinstance(event, Chunk)
    stream.consumed(len(event.data))
    credit = await next_stream_frame(edge1)
    assert credit["route"]["operation"] == StreamOp.CREDIT
    assert credit["content"] == {"stream": sid, "consumed": MIN_WINDOW // 4}


async def test_a_disconnect_ends_the_nodes_streams(two_nodes: Any) -> None:
    """When the node's link goes, its streams end with an error naming the node."""
    cloud, edge1, _ = two_nodes
    stream = await cloud.cloudstream.open("edge-1", LogsRequest(namespace="default", pod="p"))
    await next_stream_frame(edge1)
    await edge1.close()
    end = await asyncio.wait_for(stream.next(), 10)
    assert isinstance(end, Close) and end.error == "node edge-1 disconnected"
    assert not cloud.cloudstream.streams


async def test_a_node_that_does_not_answer_an_open_is_one_line(two_nodes: Any) -> None:
    """An edge that says nothing about an open gets a cancel; the reader gets one line naming
    the node and the bound."""
    cloud, edge1, _ = two_nodes
    cloud.cloudstream.answer_timeout = 0.5
    stream = await cloud.cloudstream.open("edge-1", LogsRequest(namespace="default", pod="p"))
    sid = (await next_stream_frame(edge1))["content"]["stream"]
    end = await asyncio.wait_for(stream.next(), 5)
    assert isinstance(end, Close)
    assert (end.error, end.reason) == ("node edge-1 did not answer within 0.5s", "Unavailable")
    cancel = await next_stream_frame(edge1)
    assert cancel["route"]["operation"] == StreamOp.CANCEL
    assert cancel["content"]["stream"] == sid
    assert not cloud.cloudstream.streams


async def test_an_opened_stream_may_stay_silent(two_nodes: Any) -> None:
    """Once the edge answered ``opened``, a quiet stream (exec -- sleep) is not cut short."""
    cloud, edge1, _ = two_nodes
    cloud.cloudstream.answer_timeout = 0.2
    stream = await cloud.cloudstream.open("edge-1", LogsRequest(namespace="default", pod="p"))
    sid = (await next_stream_frame(edge1))["content"]["stream"]
    await edge1.send(
        encode(to_message(Opened(stream=sid), source="edge", resource="default/pod/p"))
    )
    with pytest.raises(TimeoutError):  # well past the bound: nothing ends the stream
        await asyncio.wait_for(stream.next(), 1.0)
    assert sid in cloud.cloudstream.streams
    await edge1.send(chunk(sid, 0, b"late"))
    event = await asyncio.wait_for(stream.next(), 5)
    assert isinstance(event, Chunk) and event.data == b"late"
