"""Bad frames, impersonation and missing certificates are refused clearly; others keep working."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidHandshake, InvalidStatus

from tests.integration.manifests import bundle, configmap
from tests.support.procs import Cloud, Edge, MakeEdge, wait_until
from wire.codec import encode
from wire.messages import Message

pytestmark = pytest.mark.timeout(60)


def _ctx(edge_dir: Path, *, with_cert: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(edge_dir / "ca.crt"))
    if with_cert:
        ctx.load_cert_chain(str(edge_dir / "node.crt"), str(edge_dir / "node.key"))
    return ctx


def _url(cloud: Cloud, node: str) -> str:
    return f"wss://127.0.0.1:{cloud.ws_port}/e632aba927ea4ac2b575ec1603d56f10/{node}/events"


async def _recv_json(ws: ClientConnection) -> dict:  # type: ignore[type-arg]
    return json.loads(await ws.recv())  # type: ignore[no-any-return]


async def _recv_until(ws: ClientConnection, op: str) -> dict:  # type: ignore[type-arg]
    while True:
        msg = await _recv_json(ws)
        if msg["route"]["operation"] == op:
            return msg


@pytest.fixture
async def raw(cloud: Cloud, make_edge: MakeEdge, tmp_path: Path) -> Path:
    """A joined node's credentials, used by a hand-driven websocket client."""
    edge: Edge = make_edge("raw-1")
    edge.join(cloud)
    return edge.dir


async def test_malformed_frame_gets_error_and_link_survives(cloud: Cloud, raw: Path) -> None:
    """A non-JSON frame gets an error reply naming the problem; the link keeps working."""
    # our edgecore's headers: a stock edge (node_id, no heartbeat) gets no pong
    headers = {"node_id": "raw-1", "edgebridge-heartbeat": "15"}
    async with connect(_url(cloud, "raw-1"), ssl=_ctx(raw), additional_headers=headers) as ws:
        await ws.send("{not json")
        err = await _recv_until(ws, "error")
        assert "not valid JSON" in err["content"]
        ping = Message.new(
            source="edgehub",
            group="resource",
            operation="keepalive",
            resource="node",
            content="ping",
        )
        await ws.send(encode(ping))
        pong = await _recv_until(ws, "response")
        assert pong["header"]["parent_msg_id"] == ping.id


async def test_unknown_operation_gets_error_reply(cloud: Cloud, raw: Path) -> None:
    """An operation the cloud does not handle is answered with an error naming it."""
    async with connect(_url(cloud, "raw-1"), ssl=_ctx(raw)) as ws:
        msg = Message.new(source="edgehub", group="resource", operation="explode", resource="x")
        await ws.send(encode(msg))
        err = await _recv_until(ws, "error")
        assert err["header"]["parent_msg_id"] == msg.id
        assert "unknown operation 'explode'" in err["content"]


async def test_oversized_frame_closes_only_that_link(
    cloud: Cloud, raw: Path, make_edge: MakeEdge
) -> None:
    """A frame over the limit closes the sender with 1009; another edge is still served."""
    edge: Edge = make_edge("edge-1")
    edge.join(cloud)
    await edge.start()
    async with connect(_url(cloud, "raw-1"), ssl=_ctx(raw), max_size=None) as ws:
        await ws.send("x" * (5 * 1024 * 1024))
        with pytest.raises(ConnectionClosedError) as info:
            while True:
                await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    cloud.apply(bundle())
    await wait_until(lambda: edge.has("/api/v1/namespaces/default/pods/web"))


async def test_node_id_header_that_disagrees_with_certificate_is_refused(
    cloud: Cloud, raw: Path
) -> None:
    """Claiming another node's identity in node_id is refused with 403 and a reason."""
    with pytest.raises(InvalidStatus) as info:
        async with connect(
            _url(cloud, "raw-1"), ssl=_ctx(raw), additional_headers={"node_id": "edge-9"}
        ):
            pass
    assert info.value.response.status_code == 403
    assert b"disagrees with certificate" in info.value.response.body
    assert "refused websocket" in cloud.proc.text()


async def test_path_naming_another_node_is_refused(cloud: Cloud, raw: Path) -> None:
    """A URL path naming another node is refused even without a node_id header."""
    with pytest.raises(InvalidStatus) as info:
        async with connect(_url(cloud, "edge-9"), ssl=_ctx(raw)):
            pass
    assert info.value.response.status_code == 403


async def test_connection_without_client_certificate_is_refused(cloud: Cloud, raw: Path) -> None:
    """TLS refuses a peer that presents no client certificate."""
    with pytest.raises((ssl.SSLError, OSError, ConnectionClosedError, InvalidHandshake)):
        async with connect(_url(cloud, "raw-1"), ssl=_ctx(raw, with_cert=False)) as ws:
            await ws.recv()


async def test_query_for_object_not_bound_to_node_is_refused(cloud: Cloud, raw: Path) -> None:
    """A node asking for another node's configmap gets an error, not the object."""
    cloud.apply(configmap(name="private"))
    async with connect(_url(cloud, "raw-1"), ssl=_ctx(raw)) as ws:
        q = Message.new(
            source="metamanager",
            group="resource",
            operation="query",
            resource="default/configmap/private",
        )
        await ws.send(encode(q))
        err = await _recv_until(ws, "error")
        assert err["header"]["parent_msg_id"] == q.id
        assert "not bound" in err["content"]
