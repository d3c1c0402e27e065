"""``twin/get``, ``state/update`` and ``membership/get``: answered locally, online or offline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.edgecore.test_twin_support import (
    DEV,
    TwinEdge,
    device,
    outbox_rows,
    report,
    running_edge,
)

MEMBERSHIP = "$hw/events/node/edge-1/membership/get"


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[TwinEdge]:
    async with running_edge(tmp_path) as e:
        yield e


async def test_get_returns_full_twin_offline(edge: TwinEdge) -> None:
    """With no cloud link, ``twin/get`` answers expected, actual, versions and type."""
    await edge.apply(device(desired={"setpoint": "20"}, generation=4))
    await edge.published(f"{DEV}/twin/update/delta")
    await edge.mqtt(f"{DEV}/twin/update", report(setpoint="18"))
    await edge.published(f"{DEV}/twin/update/result")
    await edge.mqtt(f"{DEV}/twin/get", {"event_id": "g1", "timestamp": 5})
    got = await edge.published(f"{DEV}/twin/get/result")
    assert got["event_id"] == "g1"
    sp = got["twin"]["setpoint"]
    assert sp["expected"]["value"] == "20" and sp["actual"]["value"] == "18"
    assert sp["expected_version"] == {"cloud": 4, "edge": 0}
    assert sp["actual_version"]["cloud"] == 0
    assert sp["metadata"] == {"type": "float"}


async def test_get_with_empty_payload(edge: TwinEdge) -> None:
    """An empty ``twin/get`` payload is a request with no event id."""
    await edge.mqtt(f"{DEV}/twin/get", "")
    got = await edge.published(f"{DEV}/twin/get/result")
    assert got["event_id"] == "" and got["twin"] == {}


async def test_get_unknown_device_is_404(edge: TwinEdge) -> None:
    """``twin/get`` for a device not on this node answers 404."""
    await edge.mqtt("$hw/events/device/ghost/twin/get", {"event_id": "q"})
    got = await edge.published("$hw/events/device/ghost/twin/get/result")
    assert got["code"] == 404 and got["event_id"] == "q"


async def test_state_update_is_stored_and_queued(edge: TwinEdge) -> None:
    """``state/update`` is answered after commit and becomes an upstream state row."""
    await edge.mqtt(f"{DEV}/state/update", {"event_id": "s1", "timestamp": 1, "state": "online"})
    res = await edge.published(f"{DEV}/state/update/result")
    assert res["event_id"] == "s1" and "code" not in res
    ((_, resource, content),) = outbox_rows(edge.path)
    assert resource == "default/device/thermostat-1/state/update"
    assert content["state"] == "online" and content["timestamp"] > 0
    await edge.mqtt(MEMBERSHIP, {"event_id": "m"})
    members = await edge.published(f"{MEMBERSHIP}/result")
    assert members["devices"][0]["state"] == "online"
    assert members["devices"][0]["last_online"]


@pytest.mark.parametrize("payload", [{"event_id": "x"}, {"state": ""}, {"state": 3}, "nope"])
async def test_bad_state_update_is_400(edge: TwinEdge, payload: object) -> None:
    """A state update without a usable state is refused and stores nothing."""
    await edge.mqtt(f"{DEV}/state/update", payload)
    res = await edge.published(f"{DEV}/state/update/result")
    assert res["code"] == 400
    assert outbox_rows(edge.path) == []


async def test_membership_lists_only_this_nodes_devices(edge: TwinEdge) -> None:
    """``membership/get`` lists this node's devices with their twins, not other nodes'."""
    await edge.apply(device("elsewhere", node="edge-2"), device("second"))
    await edge.member("default/second")
    await edge.mqtt(f"{DEV}/twin/update", report(temperature="7"))
    await edge.published(f"{DEV}/twin/update/result")
    await edge.mqtt(MEMBERSHIP, {"event_id": "m1"})
    res = await edge.published(f"{MEMBERSHIP}/result")
    assert res["event_id"] == "m1"
    by_id = {d["id"]: d for d in res["devices"]}
    assert sorted(by_id) == ["default/second", "default/thermostat-1"]
    first = by_id["default/thermostat-1"]
    assert first["name"] == "thermostat-1" and first["namespace"] == "default"
    assert first["twin"]["temperature"]["actual"]["value"] == "7"


async def test_membership_for_another_node_is_404(edge: TwinEdge) -> None:
    """Asking for another node's membership answers 404 on that node's result topic."""
    await edge.mqtt("$hw/events/node/edge-9/membership/get", {"event_id": "o"})
    res = await edge.published("$hw/events/node/edge-9/membership/get/result")
    assert res["code"] == 404 and "edge-9" in res["reason"]


async def test_own_output_topics_are_ignored(edge: TwinEdge) -> None:
    """Messages on result/delta topics (an echo of the edge's own output) are not answered."""
    await edge.mqtt(f"{DEV}/twin/update/result", {"event_id": "echo"})
    await edge.mqtt(f"{DEV}/twin/update/delta", "junk")
    await edge.barrier()
    assert edge.drain() == []
