"""Every fast path of wire.codec equals the slow path it stands in for: the ACK/keepalive
match agrees with decode, the reply and object templates write what encode writes, and
bus_message builds what Message.new builds."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire.codec import (
    ACK_COMMON,
    ACK_OR_KEEPALIVE,
    ack_or_keepalive,
    ack_parent,
    bus_message,
    decode,
    encode,
    encode_content,
    encode_with_content,
    object_frame,
    response_frame,
)
from wire.errors import WireError
from wire.messages import Header, Message, Route

pytestmark = pytest.mark.timeout(60)

HUB = "cloudhub"
#: a character a JSON string must escape
_ESCAPED = re.compile(r'["\\\x00-\x1f]')

#: strings that need no JSON escaping, and any strings at all
plain = st.text(
    alphabet=st.characters(blacklist_characters='"\\', blacklist_categories=("Cc", "Cs")),
    max_size=40,
)
anything = st.text(max_size=40)


def _go_frame(msg: Message) -> str:
    """``msg`` as a stock KubeEdge edgecore writes it (Go's encoding/json): the same field
    order, empty strings and a false ``sync`` left out (``omitempty``; ``msg_id`` and
    ``timestamp`` never), and a newline after the object."""
    header = msg.header.model_dump()
    route = msg.route.model_dump()
    doc = {
        "header": {
            k: v for k, v in header.items() if k in ("msg_id", "timestamp") or v not in ("", False)
        },
        "route": {k: v for k, v in route.items() if v != ""},
        "content": msg.content,
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n"


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
    match = ACK_OR_KEEPALIVE.fullmatch(encode(msg))
    assert match is not None
    assert (match["op"], match["id"], match["parent"]) == (op, ident, parent)
    assert (match["group"], match["resource"]) == (group, resource)


@given(
    op=st.sampled_from(["response", "keepalive"]),
    ident=plain,
    parent=plain,
    source=plain,
    group=plain,
    resource=plain,
    sync=st.booleans(),
    content=st.one_of(plain, st.none()),
    timestamp=st.integers(0, 10**18 - 1),
)
def test_stock_edge_acks_and_keepalives_take_the_fast_path(
    op: str,
    ident: str,
    parent: str,
    source: str,
    group: str,
    resource: str,
    sync: bool,
    content: Any,
    timestamp: int,
) -> None:
    """An ACK or keepalive as a stock edgecore writes it (empty fields left out, a newline
    after it) matches, with the fields decode gives, and decodes to the same message."""
    msg = Message(
        header=Header(msg_id=ident, parent_msg_id=parent, timestamp=timestamp, sync=sync),
        route=Route(source=source, group=group, operation=op, resource=resource),
        content=content,
    )
    frame = _go_frame(msg)
    cheap = ack_or_keepalive(frame)
    assert cheap is not None
    assert decode(frame) == msg
    assert cheap == (ident, parent, group, op, resource)


def test_a_stock_edge_ack_as_captured_takes_the_fast_path() -> None:
    """The frames a stock v1.15 edgecore sent in the peer bench: an ACK and a keepalive."""
    ack = (
        '{"header":{"msg_id":"3f0c","parent_msg_id":"9a1e","timestamp":1796670000000},'
        '"route":{"source":"edgecontroller","group":"resource","operation":"response",'
        '"resource":"pb-ours/pod/p0014"},"content":"OK"}\n'
    )
    ping = (
        '{"header":{"msg_id":"77d2","timestamp":1796670000000},"route":{"source":"websocket",'
        '"group":"resource","operation":"keepalive","resource":"node"},"content":"ping"}\n'
    )
    assert ack_or_keepalive(ack) == ("3f0c", "9a1e", "resource", "response", "pb-ours/pod/p0014")
    assert ack_or_keepalive(ping) == ("77d2", "", "resource", "keepalive", "node")
    assert (ack_parent(ack), ack_parent(ping)) == ("9a1e", None)
    assert decode(ping).parent_id == ""


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
    for frame in (encode(msg), _go_frame(msg)):
        for candidate in (
            frame,
            frame[:cut] + insert + frame[cut:],
            frame[:cut] + frame[cut + 1 :],
        ):
            cheap = ack_or_keepalive(candidate)
            ack = cheap.parent if cheap is not None and cheap.op == "response" else None
            assert ack_parent(candidate) == ack
            if cheap is None:
                continue
            try:
                decoded = decode(candidate)
            except WireError:
                pytest.fail(f"fast path matched a frame decode refuses: {candidate!r}")
            assert decoded.operation == cheap.op
            assert (decoded.id, decoded.parent_id) == (cheap.id, cheap.parent)
            assert (decoded.route.group, decoded.resource) == (cheap.group, cheap.resource)


def _regex_ack_parent(frame: str) -> str | None:
    """ack_parent's answer as ACK_OR_KEEPALIVE alone gives it (what ACK_COMMON must equal)."""
    match = ACK_OR_KEEPALIVE.fullmatch(frame)
    if match is None or match["op"] != "response":
        return None
    return match["parent"] or ""


#: mostly plain strings that Go would not leave out, now and then an empty one or one with a
#: character JSON escapes
ack_strings = st.one_of(*[plain.filter(bool)] * 8, plain, anything)


@given(
    op=st.sampled_from(["response"] * 6 + ["keepalive", "update"]),
    ident=ack_strings,
    parent=ack_strings,
    source=ack_strings,
    group=ack_strings,
    resource=ack_strings,
    sync=st.sampled_from([False] * 6 + [True]),
    content=st.one_of(*[st.just("OK")] * 6, st.none(), ack_strings, st.integers()),
    timestamp=st.one_of(*[st.integers(0, 10**18 - 1)] * 6, st.just(0), st.integers(10**18, 2**63)),
    edits=st.lists(
        st.tuples(
            st.integers(0, 400),
            st.sampled_from(["insert", "delete", "replace"]),
            st.sampled_from(['"', "\\", " ", "}", "{", ",", ":", "\x00", "\n", "x", "0", "é"]),
        ),
        max_size=2,
    ),
)
def test_common_ack_layouts_agree_with_the_full_pattern(
    op: str,
    ident: str,
    parent: str,
    source: str,
    group: str,
    resource: str,
    sync: bool,
    content: Any,
    timestamp: int,
    edits: list[tuple[int, str, str]],
) -> None:
    """ack_parent (ACK_COMMON first) answers what ACK_OR_KEEPALIVE alone answers, for ACKs and
    other frames in our layout and a stock edge's, intact or damaged."""
    msg = Message(
        header=Header(msg_id=ident, parent_msg_id=parent, timestamp=timestamp, sync=sync),
        route=Route(source=source, group=group, operation=op, resource=resource),
        content=content,
    )
    for frame in (encode(msg), _go_frame(msg)):
        candidate = frame
        for at, how, char in edits:
            cut = min(at, len(candidate))
            if how == "insert":
                candidate = candidate[:cut] + char + candidate[cut:]
            elif how == "delete":
                candidate = candidate[:cut] + candidate[cut + 1 :]
            else:
                candidate = candidate[:cut] + char + candidate[cut + 1 :]
        assert ack_parent(candidate) == _regex_ack_parent(candidate), candidate


@given(
    ident=plain,
    parent=plain.filter(bool),
    source=plain.filter(bool),
    group=plain.filter(bool),
    resource=plain.filter(bool),
    content=st.one_of(st.just("OK"), plain),
    timestamp=st.integers(0, 10**18 - 1),
)
def test_plain_acks_take_the_common_layouts(
    ident: str, parent: str, source: str, group: str, resource: str, content: str, timestamp: int
) -> None:
    """An ACK as our edge or a stock edge writes it, its strings free of escapes, takes
    ACK_COMMON, with the parent ACK_OR_KEEPALIVE gives."""
    msg = Message(
        header=Header(msg_id=ident, parent_msg_id=parent, timestamp=timestamp),
        route=Route(source=source, group=group, operation="response", resource=resource),
        content=content,
    )
    for frame in (encode(msg), _go_frame(msg)):
        match = ACK_COMMON.fullmatch(frame)
        assert match is not None, frame
        assert match["parent"] == parent == _regex_ack_parent(frame) == ack_parent(frame)


def test_frames_with_other_layouts_take_the_full_decode() -> None:
    """Extra fields, whitespace, escapes or structured content are left to the full decode."""
    frame = encode(Message.new(source="e", group="g", operation="keepalive", resource="r"))
    assert ACK_OR_KEEPALIVE.fullmatch(frame) is not None
    doc = json.loads(frame)
    assert ACK_OR_KEEPALIVE.fullmatch(json.dumps(doc)) is None  # ", " and ": " separators
    doc["extra"] = 1
    assert ACK_OR_KEEPALIVE.fullmatch(json.dumps(doc, separators=(",", ":"))) is None
    doc = json.loads(frame)
    doc["route"]["resource"] = 'a"b'
    assert ACK_OR_KEEPALIVE.fullmatch(json.dumps(doc, separators=(",", ":"))) is None
    doc = json.loads(frame)
    doc["content"] = {"ping": True}
    assert ACK_OR_KEEPALIVE.fullmatch(json.dumps(doc, separators=(",", ":"))) is None


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
    expected = encode(original.reply(content, source=HUB))
    frame = response_frame(
        msg_id="id-1",
        parent_id=parent,
        source=HUB,
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


#: JSON-able contents a message may carry
contents = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), anything),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(anything, inner, max_size=3)
    ),
    max_leaves=8,
)


@given(
    msg_id=anything,
    parent=anything,
    source=anything,
    group=anything,
    resource=anything,
    op=st.sampled_from(["response", "keepalive", "insert", "update", "delete", "publish"]),
    content=contents,
    timestamp=st.integers(0, 10**18 - 1),
)
def test_every_fast_path_equals_the_slow_path(
    msg_id: str,
    parent: str,
    source: str,
    group: str,
    resource: str,
    op: str,
    content: Any,
    timestamp: int,
) -> None:
    """For the same message, each fast path gives what encode/decode/Message.new give."""
    header = Header(msg_id=msg_id, parent_msg_id=parent, timestamp=timestamp)
    route = Route(source=source, group=group, operation=op, resource=resource)
    msg = Message(header=header, route=route, content=content)
    text = encode(msg)
    # ACK_OR_KEEPALIVE: a match names the fields decode reads
    match = ACK_OR_KEEPALIVE.fullmatch(text)
    if match is not None:
        assert decode(text) == msg
        assert (match["id"], match["parent"], match["op"]) == (msg_id, parent, op)
        assert (match["group"], match["resource"]) == (group, resource)
    elif op in ("response", "keepalive") and isinstance(content, str | None):
        # ... and every ACK or keepalive without escapes takes the fast path
        fields = (msg_id, parent, source, group, resource, content or "")
        assert any(_ESCAPED.search(f) for f in fields)
    # response_frame: what encode writes for msg.reply(content)
    reply = msg.reply(content, source=HUB)
    spliced = response_frame(
        msg_id=reply.id,
        parent_id=msg_id,
        source=HUB,
        group=group,
        resource=resource,
        content_json=encode_content(content),
    )
    assert decode(spliced) == decode(encode(reply))
    # object_frame: what encode_with_content writes for the same header and route
    body = encode_content(content)
    spliced = object_frame(
        msg_id=msg_id,
        timestamp=timestamp,
        resource_version=parent,
        operation=op,
        key=resource,
        content_json=body,
        source=source,
    )
    expected = encode_with_content(
        Header(msg_id=msg_id, timestamp=timestamp, resourceversion=parent),
        Route(source=source, group="resource", operation=op, resource=resource),
        body,
    )
    assert spliced == expected
    # bus_message: the model Message.new makes, encoded and decoded alike
    built = bus_message(
        source=source,
        group=group,
        operation=op,
        resource=resource,
        content=content,
        msg_id=msg_id,
        timestamp=timestamp,
    )
    made = Message.new(
        source=source,
        group=group,
        operation=op,
        resource=resource,
        content=content,
        timestamp_ms=timestamp,
    )
    made.header.msg_id = msg_id
    assert built == made
    assert encode(built) == encode(made)
    assert built.model_copy(deep=True) == built
