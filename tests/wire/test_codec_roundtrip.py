"""Every message the codec writes, it reads back unchanged."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from wire.codec import decode, encode
from wire.messages import Header, Message, Operation, Route

#: Any JSON value Python's json module and pydantic agree on: finite floats only, since
#: NaN and infinities are not JSON.
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=20,
)

headers = st.builds(
    Header,
    msg_id=st.text(),
    parent_msg_id=st.text(),
    # Go's int64, which is what KubeEdge's beehive uses for milliseconds.
    timestamp=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    resourceversion=st.text(),
    sync=st.booleans(),
    type=st.text(),
)
routes = st.builds(
    Route,
    source=st.text(),
    destination=st.text(),
    group=st.text(),
    operation=st.sampled_from([str(op) for op in Operation]) | st.text(),
    resource=st.text(),
)
messages = st.builds(Message, header=headers, route=routes, content=json_values)


@given(messages)
def test_any_message_round_trips(message: Message) -> None:
    """decode(encode(m)) == m for every message, whatever its content."""
    assert decode(encode(message)) == message


@given(messages)
def test_round_trip_through_bytes(message: Message) -> None:
    """A frame received as UTF-8 bytes decodes the same as the text."""
    assert decode(encode(message).encode()) == message


@given(messages)
def test_encoded_frame_is_one_json_object_with_kubeedge_field_names(message: Message) -> None:
    """The frame is a JSON object whose header/route keys are KubeEdge's spelling."""
    raw = json.loads(encode(message))
    assert set(raw) == {"header", "route", "content"}
    assert set(raw["header"]) == {
        "msg_id",
        "parent_msg_id",
        "timestamp",
        "resourceversion",
        "sync",
        "type",
    }
    assert set(raw["route"]) == {"source", "destination", "group", "operation", "resource"}


def test_new_message_round_trips_with_fresh_id() -> None:
    """Message.new assigns a fresh msg_id that survives the round trip."""
    a = Message.new(source="edgecontroller", group="resource", operation="insert", resource="x")
    b = Message.new(source="edgecontroller", group="resource", operation="insert", resource="x")
    assert a.id and a.id != b.id
    assert decode(encode(a)).id == a.id


def test_new_sets_parent_version_and_timestamp() -> None:
    """Message.new carries parent id, resourceVersion and timestamp into the header."""
    m = Message.new(
        source="s",
        group="resource",
        operation="update",
        resource="default/pod/a",
        content={"k": 1},
        resource_version="42",
        parent_id="p-1",
        timestamp_ms=1_700_000_000_000,
    )
    back = decode(encode(m))
    assert back.parent_id == "p-1"
    assert back.header.resourceversion == "42"
    assert back.header.timestamp == 1_700_000_000_000
    assert back.operation == "update"
    assert back.resource == "default/pod/a"
    assert back.content == {"k": 1}
