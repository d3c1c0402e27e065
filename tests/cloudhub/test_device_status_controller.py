"""devicecontroller applies a node's reports to its own devices only, ACKing after commit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cloudhub import routes
from cloudhub.devicecontroller.controller import DeviceController
from cloudhub.routes import Replies
from cloudhub.store.base import ObjectStore
from cloudhub.store.embedded import EmbeddedStore
from hive.bus import Bus
from tests.cloudhub.stores import ProtocolOnlyStore
from wire.errors import StoreError
from wire.messages import Message

pytestmark = pytest.mark.timeout(20)

MODEL = {
    "apiVersion": "devices.kubeedge.io/v1beta1",
    "kind": "DeviceModel",
    "metadata": {"name": "thermostat", "namespace": "default"},
    "spec": {"properties": [{"name": "temperature", "type": "FLOAT", "accessMode": "ReadOnly"}]},
}


def device(name: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"deviceModelRef": {"name": "thermostat"}, "nodeName": node},
    }


def twin_update(node: str, dev: str, value: str, edge: int) -> Message:
    return Message.new(
        source=routes.HUB,
        group="twin",
        operation="update",
        resource=f"node/{node}/default/device/{dev}/twin/edge_updated",
        content={
            "event_id": "e1",
            "timestamp": 1000,
            "twin": {
                "temperature": {
                    "actual": {"value": value},
                    "actual_version": {"cloud": 0, "edge": edge},
                    "metadata": {"type": "float"},
                }
            },
        },
    )


@pytest.fixture(params=["embedded", "protocol-only"])
async def setup(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Bus, EmbeddedStore, DeviceController]]:
    """The controller on the embedded store (one read-merge-write per batch) and on a store
    with only the protocol's methods (a read per device, then update_statuses)."""
    store = EmbeddedStore(tmp_path / "store.db")
    await store.start()
    await store.apply([MODEL, device("t1", "edge-1"), device("t2", "edge-2")])
    bus = Bus()
    bus.register(routes.HUB, "hub")
    bus.register(routes.DEVICECONTROLLER, "device")
    served: ObjectStore = store if request.param == "embedded" else ProtocolOnlyStore(store)
    yield bus, store, DeviceController(bus=bus, store=served)
    await store.close()


async def replies(bus: Bus) -> list[Message]:
    """What the hub was sent, one message per answered request (batched ACKs expanded)."""
    out: list[Message] = []
    while (m := bus.receive_nowait(routes.HUB)) is not None:
        if isinstance(m.content, Replies):
            assert m.operation == "response"
            out.extend(
                Message.new(
                    source=m.route.source,
                    group=m.route.group,
                    operation="response",
                    resource="",
                    content=m.content.content,
                    parent_id=parent,
                )
                for parent in m.content.parent_ids
            )
        else:
            out.append(m)
    return out


async def test_report_lands_in_status_and_is_acked(setup: Any) -> None:
    """An accepted report is stored in status.twins and answered with a response."""
    bus, store, ctl = setup
    msg = twin_update("edge-1", "t1", "21.5", 7)
    await ctl.process([msg])
    (reply,) = await replies(bus)
    assert reply.operation == "response" and reply.parent_id == msg.id
    obj = await store.get("device", "default", "t1")
    assert obj["status"]["twins"][0]["reported"]["value"] == "21.5"


async def test_write_to_another_nodes_device_is_refused(setup: Any) -> None:
    """A node reporting for a device bound to another node gets an error; nothing changes."""
    bus, store, ctl = setup
    before = await store.get("device", "default", "t2")
    await ctl.process([twin_update("edge-1", "t2", "99", 1)])
    (reply,) = await replies(bus)
    assert reply.operation == "error" and "not bound to node edge-1" in reply.content
    assert await store.get("device", "default", "t2") == before


async def test_unknown_device_and_bad_payload_are_refused(setup: Any) -> None:
    """Reports for unknown devices or with malformed content get errors naming the problem."""
    bus, _, ctl = setup
    bad = twin_update("edge-1", "t1", "1", 1)
    bad.content = {"twin": "nope"}
    await ctl.process([twin_update("edge-1", "ghost", "1", 1), bad])
    errors = [r.content for r in await replies(bus)]
    assert any("ghost not found" in e for e in errors)
    assert any("invalid twin/edge_updated" in e for e in errors)


async def test_batch_is_one_write_and_replays_are_harmless(setup: Any) -> None:
    """Many reports in a batch commit together; re-sending them changes nothing."""
    bus, store, ctl = setup
    batch = [twin_update("edge-1", "t1", str(v), v) for v in range(1, 101)]
    await ctl.process(batch)
    assert len(await replies(bus)) == 100
    obj = await store.get("device", "default", "t1")
    rv = obj["metadata"]["resourceVersion"]
    assert obj["status"]["twins"][0]["reported"]["value"] == "100"
    await ctl.process(batch[:50])
    again = await store.get("device", "default", "t1")
    assert again["metadata"]["resourceVersion"] == rv


async def test_reports_for_several_devices_and_nodes_in_one_batch(setup: Any) -> None:
    """One batch mixing devices and nodes: each report is answered, each device updated."""
    bus, store, ctl = setup
    batch = [
        twin_update("edge-1", "t1", "1", 1),
        twin_update("edge-2", "t2", "2", 1),
        twin_update("edge-2", "t1", "9", 9),
        twin_update("edge-1", "t1", "3", 2),
    ]
    await ctl.process(batch)
    answers = {r.parent_id: r.operation for r in await replies(bus)}
    assert answers == {
        batch[0].id: "response",
        batch[1].id: "response",
        batch[2].id: "error",
        batch[3].id: "response",
    }
    one = await store.get("device", "default", "t1")
    two = await store.get("device", "default", "t2")
    assert one["status"]["twins"][0]["reported"]["value"] == "3"
    assert two["status"]["twins"][0]["reported"]["value"] == "2"


async def test_store_failure_answers_nothing(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the write fails no report is answered: they stay in the edge's outbox."""
    bus, store, ctl = setup

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise StoreError("disk on fire")

    monkeypatch.setattr(store, "merge_statuses", broken)
    monkeypatch.setattr(store, "update_statuses", broken)
    await ctl.process([twin_update("edge-1", "t1", "1", 1)])
    assert await replies(bus) == []
    assert "status" not in await store.get("device", "default", "t1")
