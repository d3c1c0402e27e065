"""The hub's cheap frames: ACKs and keepalives recognised without a full decode, and frames
spliced from templates, all held to exactly what wire.codec produces; then over a live link."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection

from cloudhub import app as cloud_app
from cloudhub import routes
from cloudhub.hub.links import WebsocketLink
from cloudhub.hub.reader import _CHEAP_FRAME
from cloudhub.hub.session import object_frame, response_frame
from hive.local_messages import MessageIds
from tests.support.procs import wait_until
from wire.codec import decode, encode, encode_content, encode_with_content
from wire.errors import WireError
from wire.messages import Header, Message, Route

pytestmark = pytest.mark.timeout(30)

#: strings that need no JSON escaping, and any strings at all
plain = st.text(
    alphabet=st.characters(blacklist_characters='"\\', blacklist_categories=("Cc", "Cs")),
    max_size=40,
)
anything = st.text(max_size=40)


def _without_msg_id(frame: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(frame)
    del doc["header"]["msg_id"]
    return doc


@given(
    op=st.sampled_from(["response", "keepalive"]),
    ident=plain,
    parent=plain,
    group=plain,
    resource=plain,
    content=st.one_of(plain, st.none()),
    timestamp=st.integers(0, 10**18 - 1),  # milliseconds: up to the year 31 million
)
def test_encoded_acks_and_keepalives_take_the_fast_path(
    op: str, ident: str, parent: str, group: str, resource: str, content: Any, timestamp: int
) -> None:
    """What wire.codec.encode writes for an ACK or keepalive matches, with the same fields."""
    msg = Message(
        header=Header(msg_id=ident, parent_msg_id=parent, timestamp=timestamp),
        route=Route(source="edgehub", group=group, operation=op, resource=resource),
        content=content,
    )
    match = _CHEAP_FRAME.fullmatch(encode(msg))
    assert match is not None
    assert (match["op"], match["id"], match["parent"]) == (op, ident, parent)
    assert (match["group"], match["resource"]) == (group, resource)


@given(
    op=st.sampled_from(["response", "keepalive", "update", "query"]),
    ident=anything,
    parent=anything,
    group=anything,
    resource=anything,
    content=st.one_of(anything, st.none(), st.integers(), st.dictionaries(anything, anything)),
    cut=st.integers(0, 400),
    insert=st.sampled_from(['"', "\\", " ", "}", ",", "\x00", "x"]),
)
def test_fast_path_never_disagrees_with_decode(
    op: str,
    ident: str,
    parent: str,
    group: str,
    resource: str,
    content: Any,
    cut: int,
    insert: str,
) -> None:
    """Whenever a frame (intact or damaged) matches, decode accepts it with the same fields."""
    msg = Message(
        header=Header(msg_id=ident, parent_msg_id=parent),
        route=Route(group=group, operation=op, resource=resource),
        content=content,
    )
    frame = encode(msg)
    for candidate in (frame, frame[:cut] + insert + frame[cut:], frame[:cut] + frame[cut + 1 :]):
        match = _CHEAP_FRAME.fullmatch(candidate)
        if match is None:
            continue
        try:
            decoded = decode(candidate)
        except WireError:
            pytest.fail(f"fast path matched a frame decode refuses: {candidate!r}")
        assert decoded.operation == match["op"]
        assert (decoded.id, decoded.parent_id) == (match["id"], match["parent"])
        assert (decoded.route.group, decoded.resource) == (match["group"], match["resource"])


def test_frames_with_other_layouts_take_the_full_decode() -> None:
    """Extra fields, whitespace, escapes or structured content are left to the full decode."""
    frame = encode(Message.new(source="e", group="g", operation="keepalive", resource="r"))
    assert _CHEAP_FRAME.fullmatch(frame) is not None
    doc = json.loads(frame)
    assert _CHEAP_FRAME.fullmatch(json.dumps(doc)) is None  # ", " and ": " separators
    doc["extra"] = 1
    assert _CHEAP_FRAME.fullmatch(json.dumps(doc, separators=(",", ":"))) is None
    doc = json.loads(frame)
    doc["route"]["resource"] = 'a"b'
    assert _CHEAP_FRAME.fullmatch(json.dumps(doc, separators=(",", ":"))) is None
    doc = json.loads(frame)
    doc["content"] = {"ping": True}
    assert _CHEAP_FRAME.fullmatch(json.dumps(doc, separators=(",", ":"))) is None


@given(parent=anything, group=anything, resource=anything, content=st.one_of(anything, st.none()))
def test_response_template_is_what_the_codec_writes(
    parent: str, group: str, resource: str, content: Any
) -> None:
    """response_frame equals encode(msg.reply(...)) but for the msg_id; byte for byte when
    the strings need no escaping."""
    original = Message(
        header=Header(msg_id=parent),
        route=Route(source="edgehub", group=group, operation="keepalive", resource=resource),
    )
    expected = encode(original.reply(content, source=routes.HUB))
    frame = response_frame(
        msg_id="id-1",
        parent_id=parent,
        source=routes.HUB,
        group=group,
        resource=resource,
        content_json=encode_content(content),
    )
    assert _without_msg_id(frame) == _without_msg_id(expected)
    assert json.loads(frame)["header"]["msg_id"] == "id-1"
    if not re.search(r'["\\\x00-\x1f]', parent + group + resource):
        assert frame == expected.replace(json.loads(expected)["header"]["msg_id"], "id-1", 1)


@given(
    msg_id=anything,
    rv=anything,
    key=anything,
    op=st.sampled_from(["insert", "update", "delete"]),
    timestamp=st.integers(0, 2**62),
)
def test_object_template_is_what_the_codec_writes(
    msg_id: str, rv: str, key: str, op: str, timestamp: int
) -> None:
    """object_frame decodes to the message encode_with_content builds from models."""
    content = encode_content({"kind": "Pod", "metadata": {"name": "p"}})
    frame = object_frame(
        msg_id=msg_id,
        timestamp=timestamp,
        resource_version=rv,
        operation=op,
        key=key,
        content_json=content,
    )
    expected = encode_with_content(
        Header(msg_id=msg_id, timestamp=timestamp, resourceversion=rv),
        Route(source="edgecontroller", group="resource", operation=op, resource=key),
        content,
    )
    assert json.loads(frame) == json.loads(expected)
    assert decode(frame) == decode(expected)


def test_message_ids_are_unique_and_uuid_shaped() -> None:
    """Ids from one generator never repeat; two generators do not share a prefix."""
    ids = MessageIds()
    drawn = [ids() for _ in range(10_000)]
    assert len(set(drawn)) == len(drawn)
    shape = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
    assert all(shape.fullmatch(i) for i in drawn[:100])
    assert MessageIds()()[:24] != ids()[:24]


# -- over a live link ---------------------------------------------------------------------------


async def _answers(ws: ClientConnection, ids: set[str]) -> dict[str, dict[str, Any]]:
    """The cloud's answers (by parent id) to the messages ``ids``, skipping everything else."""
    got: dict[str, dict[str, Any]] = {}
    while ids - got.keys():
        frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
        parent = frame["header"]["parent_msg_id"]
        if parent in ids:
            got[parent] = frame
    return got


async def test_keepalives_are_answered_on_both_paths(
    linked: tuple[cloud_app.CloudApp, ClientConnection],
) -> None:
    """A keepalive gets the same pong whether it takes the fast path or the full decode."""
    _, ws = linked
    fast = Message.new(source="edgehub", group="resource", operation="keepalive", resource="node")
    slow = Message.new(source="edgehub", group="resource", operation="keepalive", resource="node")
    await ws.send(encode(fast))
    await ws.send(json.dumps(json.loads(encode(slow)), indent=1))  # not the canonical layout
    answers = await _answers(ws, {fast.id, slow.id})
    for msg in (fast, slow):
        pong = answers[msg.id]
        assert pong["route"] == {
            "source": routes.HUB,
            "destination": "",
            "group": "resource",
            "operation": "response",
            "resource": "node",
        }
        assert pong["content"] == "pong"
    assert answers[fast.id]["header"]["msg_id"] != answers[slow.id]["header"]["msg_id"]


async def test_device_reports_are_answered_once_each_after_the_commit(
    linked: tuple[cloud_app.CloudApp, ClientConnection],
) -> None:
    """Reports sent together are each ACKed (one batch of replies); the status is stored; the
    link is not left corked after writing the batch."""
    cloud, ws = linked
    reports = [
        Message.new(
            source="devicetwin",
            group="twin",
            operation="update",
            resource="default/device/t1/twin/edge_updated",
            content={
                "twin": {
                    "temperature": {
                        "actual": {"value": str(v)},
                        "actual_version": {"cloud": 0, "edge": v},
                    }
                }
            },
        )
        for v in range(1, 6)
    ]
    for msg in reports:
        await ws.send(encode(msg))
    answers = await _answers(ws, {m.id for m in reports})
    for msg in reports:
        assert answers[msg.id]["route"]["operation"] == "response"
        assert answers[msg.id]["route"]["resource"] == msg.resource
        assert answers[msg.id]["content"] == "OK"
    device = await cloud.store.get("device", "default", "t1")
    assert device["status"]["twins"][0]["reported"]["value"] == "5"
    link = cloud.hub.sessions["edge-1"].link
    sock = link._socket if isinstance(link, WebsocketLink) else None
    if sock is not None and hasattr(socket, "TCP_CORK"):
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK) == 0


async def test_ack_shaped_frames_for_unknown_ids_change_nothing(
    linked: tuple[cloud_app.CloudApp, ClientConnection],
) -> None:
    """An ACK nobody waits for is dropped quietly; the link keeps working."""
    cloud, ws = linked
    stray = Message.new(source="e", group="resource", operation="keepalive", resource="node")
    await ws.send(encode(stray.reply("OK")))
    ping = Message.new(source="e", group="resource", operation="keepalive", resource="node")
    await ws.send(encode(ping))
    assert (await _answers(ws, {ping.id}))[ping.id]["content"] == "pong"
    assert "edge-1" in cloud.hub.sessions


async def test_objects_reach_the_edge_as_the_store_holds_them(
    linked: tuple[cloud_app.CloudApp, ClientConnection],
) -> None:
    """An update applied after the link is up is sent with the store's own JSON text of that
    version (not encoded again), and reads back as the stored object."""
    cloud, ws = linked
    await ws.send(encode_inventory({}))
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p1", "namespace": "default", "annotations": {"note": "héllo ✓"}},
        "spec": {"nodeName": "edge-1", "containers": [{"name": "c", "image": "i"}]},
    }
    await wait_until(lambda: cloud.hub.sessions["edge-1"].started, timeout=5)
    (applied,) = await cloud.store.apply([pod])
    while True:
        frame = await asyncio.wait_for(ws.recv(), 5)
        doc = json.loads(frame)
        if doc["route"]["resource"] == "default/pod/p1":
            break
    assert isinstance(frame, str) and frame.endswith(f',"content":{applied.body}}}')
    assert doc["content"] == await cloud.store.get("pod", "default", "p1")


def encode_inventory(inventory: dict[str, str]) -> str:
    return encode(
        Message.new(
            source="edgehub",
            group="resource",
            operation="inventory",
            resource="null/node/edge-1",
            content=inventory,
        )
    )
