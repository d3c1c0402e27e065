"""Documents are per device per batch (the state before the batch and the newest), results per
message; the bus messages the twin builds cheaply are the same models ``Message.new`` makes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecore.devicetwin.bus_messages import MessageIds, bus_message
from edgecore.devicetwin.store import WriteSet
from tests.edgecore.test_twin_support import DEV, report, running_edge
from wire.codec import decode, encode
from wire.errors import StoreError
from wire.messages import Message


def _mqtt(topic: str, payload: dict[str, object], event_id: str) -> Message:
    body = dict(payload, event_id=event_id)
    return Message.new(
        source="eventbus",
        group="twin",
        operation="message",
        resource=topic,
        content=json.dumps(body),
    )


async def test_one_document_per_device_per_batch(tmp_path: Path) -> None:
    """Three reports committed together: three results, one document from before to newest."""
    async with running_edge(tmp_path) as edge:
        await edge.mqtt(f"{DEV}/twin/update", report(temperature="1"))
        await edge.published(f"{DEV}/twin/update/document")
        edge.drain()
        batch = [
            _mqtt(f"{DEV}/twin/update", report(temperature=v), f"e{v}") for v in ("2", "3", "4")
        ]
        await edge.module.process(batch)
        await edge.barrier()
        pubs = edge.drain()
        results = [p for t, p in pubs if t == f"{DEV}/twin/update/result"]
        docs = [p for t, p in pubs if t == f"{DEV}/twin/update/document"]
        assert [r["event_id"] for r in results] == ["e2", "e3", "e4"]
        assert [r["twin"]["temperature"]["actual"]["value"] for r in results] == ["2", "3", "4"]
        (doc,) = docs
        assert doc["event_id"] == "e4"
        assert doc["twin"]["temperature"]["last"]["actual"]["value"] == "1"
        assert doc["twin"]["temperature"]["current"] == results[-1]["twin"]["temperature"]


async def test_document_of_a_failed_batch_is_not_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Documents, like results, follow the commit: none when nothing was stored."""
    async with running_edge(tmp_path) as edge:

        async def refuse(_writes: WriteSet) -> int:
            raise StoreError("disk full")

        monkeypatch.setattr(edge.module.store, "commit", refuse)
        await edge.module.process([_mqtt(f"{DEV}/twin/update", report(temperature="1"), "x")])
        topics = [t for t, _ in edge.drain()]
        assert topics == [f"{DEV}/twin/update/result"]


def test_bus_message_is_what_message_new_makes() -> None:
    """The cheaply built message has the same fields, encodes the same, and decodes back."""
    ids = MessageIds()
    msg_id = ids.next()
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
    got = [a.next() for _ in range(1000)] + [b.next() for _ in range(1000)]
    assert len(set(got)) == len(got)
    assert all(len(i) == 36 and i.count("-") == 4 for i in got)
