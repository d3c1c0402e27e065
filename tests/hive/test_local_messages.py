"""Bus messages built without validation are the same models ``Message.new`` makes."""

from __future__ import annotations

from hive.local_messages import MessageIds, bus_message
from wire.codec import decode, encode
from wire.messages import Message


def test_bus_message_is_what_message_new_makes() -> None:
    """The cheaply built message has the same fields, encodes the same, and decodes back."""
    ids = MessageIds()
    msg_id = ids()
    cheap = bus_message(
        source="twin",
        group="bus",
        operation="publish",
        resource="$hw/events/device/d/twin/update/result",
        content={"event_id": "e", "timestamp": 1},
        msg_id=msg_id,
        timestamp=7,
    )
    full = Message.new(
        source="twin",
        group="bus",
        operation="publish",
        resource="$hw/events/device/d/twin/update/result",
        content={"event_id": "e", "timestamp": 1},
        timestamp_ms=7,
    )
    full.header.msg_id = msg_id
    assert cheap == full
    assert encode(cheap) == encode(full)
    assert decode(encode(cheap)) == full
    assert (cheap.id, cheap.operation, cheap.resource, cheap.route.source) == (
        msg_id,
        "publish",
        "$hw/events/device/d/twin/update/result",
        "twin",
    )
    assert cheap.model_copy(deep=True) == cheap


def test_message_ids_are_unique_and_uuid_shaped() -> None:
    """Internal message ids never repeat within a process and look like UUIDs."""
    a, b = MessageIds(), MessageIds()
    got = [a() for _ in range(1000)] + [b() for _ in range(1000)]
    assert len(set(got)) == len(got)
    assert all(len(i) == 36 and i.count("-") == 4 for i in got)
