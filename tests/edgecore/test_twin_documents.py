"""Documents are per device per batch (the state before the batch and the newest), results per
message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecore.devicetwin.store import WriteSet
from tests.edgecore.test_twin_support import DEV, report, running_edge
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
