"""A stock KubeEdge v1.15 edgecore on our cloudhub: the frames it sends, the frames it gets.

The frames are written from KubeEdge's source (``edge/pkg/devicetwin``, ``edge/pkg/edgehub``,
``cloud/pkg/devicecontroller``): a stock edge names itself in ``node_id`` and announces no
heartbeat, reports twins as ``device/{name}/twin/edge_updated`` from source ``twin``, and its
devicetwin takes device messages only from source ``devicecontroller``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudhub import app as cloud_app
from cloudhub.config import CloudSettings, HubSettings
from cloudhub.devicecontroller.controller import resolve_bare_device
from cloudhub.hub import stock
from tests.cloudhub.conftest import DEVICE, MODEL
from tests.support.inproc import join_node
from tests.support.procs import wait_until
from tests.support.stock_edge import StockEdge, stock_connect
from wire.codec import encode
from wire.messages import Message

pytestmark = pytest.mark.timeout(30)

#: the inventory wait a stock edge must not sit through
INVENTORY_TIMEOUT = 8.0


def _route(resource: str, *, source: str | None = None, group: str | None = None) -> Any:
    def match(frame: dict[str, Any]) -> bool:
        route = frame["route"]
        return (
            route["resource"] == resource
            and (source is None or route["source"] == source)
            and (group is None or route["group"] == group)
        )

    return match


@pytest.fixture
async def stock_link(tmp_path: Path) -> AsyncIterator[tuple[cloud_app.CloudApp, StockEdge]]:
    """A real cloudhub and node edge-1 (one Device) connected as a stock edgecore does."""
    cloud = await cloud_app.start(
        CloudSettings(
            data_dir=tmp_path / "cloud",
            https_port=0,
            hub=HubSettings(bind="127.0.0.1", ws_port=0, inventory_timeout=INVENTORY_TIMEOUT),
        )
    )
    try:
        await cloud.store.apply([MODEL, DEVICE])
        edge = await join_node(cloud, "edge-1", tmp_path / "edge-1")
        async with stock_connect(cloud, edge, "edge-1") as link:
            await wait_until(lambda: "edge-1" in cloud.hub.sessions, timeout=5)
            yield cloud, link
    finally:
        await cloud.stop()


def _twin_report(name: str, value: str, edge_version: int) -> Message:
    """``device/{name}/twin/edge_updated`` as stock devicetwin sends it (DeviceTwinResult)."""
    return Message.new(
        source="twin",
        group="resource",
        operation="update",
        resource=f"device/{name}/twin/edge_updated",
        content={
            "event_id": "",
            "timestamp": 1700000000000,
            "twin": {
                "temperature": {
                    "actual": {"value": value, "metadata": {"timestamp": 1700000000000}},
                    "optional": False,
                    "metadata": {"type": "float"},
                    "actual_version": {"cloud": 0, "edge": edge_version},
                }
            },
        },
    )


async def test_stock_edge_gets_devices_at_once_from_devicecontroller(
    stock_link: tuple[cloud_app.CloudApp, StockEdge],
) -> None:
    """Without waiting for an inventory, the stock edge gets the membership update (added
    device), then the Device and DeviceModel from source devicecontroller, never more in flight
    than its receive queue holds; never its Node."""
    cloud, edge = stock_link
    session = cloud.hub.sessions["edge-1"]
    assert session.stock
    # a stock edge's receive FIFO (100 messages) drops the oldest when full
    assert session.downstream.window <= stock.WINDOW < 100
    loop = asyncio.get_running_loop()
    began = loop.time()
    member = await edge.until(_route("membership", source="devicecontroller", group="twin"))
    assert loop.time() - began < INVENTORY_TIMEOUT / 2
    assert member["header"]["parent_msg_id"] == ""
    assert member["content"]["added_devices"] == [{"id": "t1", "name": "t1"}]
    assert member["content"]["removed_devices"] == []
    device = await edge.until(_route("default/device/t1", group="resource"))
    assert device["route"]["source"] == "devicecontroller"
    assert device["content"]["metadata"]["name"] == "t1"
    assert edge.frames.index(member) < edge.frames.index(device)
    model = await edge.until(_route("default/devicemodel/thermostat"))
    assert model["route"]["source"] == "devicecontroller"
    # ask for the membership detail: its answer comes after anything already queued
    get = Message.new(
        source="twin",
        group="resource",
        operation="get",
        resource="membership/detail",
        content=json.dumps({"event_type": "group_membership_event", "group_id": "edge-1"}),
    )
    await edge.send(get)
    detail = await edge.until(_route("membership/detail"))
    assert detail["route"]["source"] == "devicecontroller"
    assert detail["route"]["group"] == "twin"
    assert detail["header"]["parent_msg_id"] == ""  # stock edgehub drops "sync responses"
    assert [d["id"] for d in detail["content"]["devices"]] == ["t1"]
    assert not any(f["route"]["resource"] == "null/node/edge-1" for f in edge.frames)


async def test_stock_keepalives_get_no_pong(
    stock_link: tuple[cloud_app.CloudApp, StockEdge],
) -> None:
    """A stock edge's keepalive (both layouts) is taken without an answer; it keeps the link."""
    cloud, edge = stock_link
    pings = [
        Message.new(source="websocket", group="resource", operation="keepalive", resource="node")
        for _ in range(2)
    ]
    pings[0].content = "ping"
    await edge.send(pings[0])
    await edge.ws.send(json.dumps(json.loads(encode(pings[1])), indent=1))
    get = Message.new(
        source="twin", group="resource", operation="get", resource="membership/detail"
    )
    await edge.send(get)
    await edge.until(_route("membership/detail"))
    ids = {p.id for p in pings}
    assert not any(f["header"]["parent_msg_id"] in ids for f in edge.frames)
    assert "edge-1" in cloud.hub.sessions


async def test_stock_empty_message_gets_no_error_reply(
    stock_link: tuple[cloud_app.CloudApp, StockEdge],
) -> None:
    """The empty message a stock edge sends after connecting is dropped: no error reply, the
    link stays; a real bad frame still gets its error."""
    cloud, edge = stock_link
    await edge.ws.send('{"header":{"msg_id":"","timestamp":0},"route":{},"content":null}\n')
    get = Message.new(
        source="twin", group="resource", operation="get", resource="membership/detail"
    )
    await edge.send(get)
    await edge.until(_route("membership/detail"))
    assert not any(f["route"].get("operation") == "error" for f in edge.frames)
    assert "edge-1" in cloud.hub.sessions
    await edge.ws.send('{"header":{"msg_id":"x"},"route":{},"content":null}')
    await edge.until(lambda f: f["route"].get("operation") == "error")


async def test_stock_twin_and_state_reports_land_in_the_device_status(
    stock_link: tuple[cloud_app.CloudApp, StockEdge], caplog: pytest.LogCaptureFixture
) -> None:
    """``device/t1/twin/edge_updated`` and ``device/t1/state/update`` (no namespace, source
    twin) are resolved among the node's devices and stored; an unknown name is refused; none
    is answered."""
    cloud, edge = stock_link
    report = _twin_report("t1", "21.5", 1)
    await edge.send(report)
    state = Message.new(
        source="twin",
        group="resource",
        operation="update",
        resource="device/t1/state/update",
        content=json.dumps({"state": "online", "event_id": "", "timestamp": 1700000000000}),
    )
    await edge.send(state)
    unknown = _twin_report("nope", "1", 1)
    await edge.send(unknown)

    async def stored() -> bool:
        status = (await cloud.store.get("device", "default", "t1")).get("status") or {}
        twins = status.get("twins") or [{}]
        return status.get("state") == "online" and (
            (twins[0].get("reported") or {}).get("value") == "21.5"
        )

    # unanswered, as by stock cloudcore (a stock edge logs a warning for any answer)
    await wait_until(stored, timeout=5)
    await wait_until(lambda: "device nope not found on node edge-1" in caplog.text, timeout=5)
    get = Message.new(
        source="twin", group="resource", operation="get", resource="membership/detail"
    )
    await edge.send(get)
    await edge.until(_route("membership/detail"))
    sent = {report.id, state.id, unknown.id}
    assert not any(f["header"]["parent_msg_id"] in sent for f in edge.frames)


async def test_desired_values_reach_a_stock_twin(
    stock_link: tuple[cloud_app.CloudApp, StockEdge],
) -> None:
    """A desired value set goes down as ``device/t1/twin/cloud_updated`` whose
    expected_version is at least the edge's own; unbinding the device sends
    ``removed_devices``; binding it again adds it with its twin."""
    cloud, edge = stock_link
    await edge.until(_route("default/device/t1"))
    # the edge reports holding an expected value at versions (cloud 40, edge 3)
    report = _twin_report("t1", "20", 1)
    report.content["twin"]["temperature"]["expected"] = {"value": "19"}
    report.content["twin"]["temperature"]["expected_version"] = {"cloud": 40, "edge": 3}
    await edge.send(report)

    async def observed() -> bool:
        status = (await cloud.store.get("device", "default", "t1")).get("status") or {}
        return bool(status.get("twins"))

    await wait_until(observed, timeout=5)
    # a desired value needs a property that can be written (the store refuses it otherwise)
    model = json.loads(json.dumps(MODEL))
    model["spec"]["properties"][0]["accessMode"] = "ReadWrite"
    device = json.loads(json.dumps(DEVICE))
    device["spec"]["properties"] = [{"name": "temperature", "desired": {"value": "22"}}]
    await cloud.store.apply([model, device])
    update = await edge.until(_route("device/t1/twin/cloud_updated", source="devicecontroller"))
    twin = update["content"]["twin"]["temperature"]
    assert twin["expected"]["value"] == "22"
    assert twin["expected_version"]["cloud"] >= 40
    assert twin["expected_version"]["edge"] == 3
    assert update["route"]["group"] == "twin"
    device["spec"]["nodeName"] = "edge-2"
    await cloud.store.apply([device])
    removed = await edge.until(
        lambda f: f["route"]["resource"] == "membership" and bool(f["content"]["removed_devices"])
    )
    assert removed["content"]["removed_devices"] == [{"id": "t1", "name": "t1"}]
    device["spec"]["nodeName"] = "edge-1"  # bound again: added with its twin
    await cloud.store.apply([device])
    added = await edge.until(
        lambda f: (
            f["route"]["resource"] == "membership"
            and bool(f["content"]["added_devices"])
            and "twin" in f["content"]["added_devices"][0]
        )
    )
    assert added["content"]["added_devices"][0]["twin"]["temperature"]["expected"] == {
        "value": "22",
        "metadata": {"timestamp": added["content"]["timestamp"]},
    }
    updates = [f for f in edge.frames if f["route"]["resource"].endswith("twin/cloud_updated")]
    assert len(updates) == 1  # the change, once; a device added carries its twin instead


def test_bare_names_resolve_among_the_nodes_devices_only() -> None:
    """A bare device name resolves to its namespace on the node; other nodes' devices and
    ambiguous names are refused with the reason."""
    devices = [
        {"metadata": {"name": "a", "namespace": "x"}, "spec": {"nodeName": "n1"}},
        {"metadata": {"name": "a", "namespace": "y"}, "spec": {"nodeName": "n2"}},
        {"metadata": {"name": "b", "namespace": "x"}, "spec": {"nodeName": "n1"}},
        {"metadata": {"name": "b", "namespace": "y"}, "spec": {"nodeName": "n1"}},
    ]
    assert resolve_bare_device("n1", "a", devices) == "x"
    assert resolve_bare_device("n2", "a", devices) == "y"
    with pytest.raises(LookupError, match="not found"):
        resolve_bare_device("n3", "a", devices)
    with pytest.raises(LookupError, match="ambiguous"):
        resolve_bare_device("n1", "b", devices)
    assert stock.bare_report("twin", "device/a/twin/edge_updated") == ("a", "twin/edge_updated")
    assert stock.bare_report("twin", "default/device/a/twin/edge_updated") is None
    assert stock.bare_report("devicetwin", "device/a/state/update") is None


@given(
    generation=st.integers(0, 2**40),
    rv=st.one_of(st.integers(0, 2**40).map(str), st.text(max_size=8)),
    seen_cloud=st.integers(0, 2**40),
    seen_edge=st.integers(0, 2**40),
)
def test_cloud_updated_versions_never_fall_below_the_edges(
    generation: int, rv: str, seen_cloud: int, seen_edge: int
) -> None:
    """The expected_version sent is at least what the edge reported holding (stock devicetwin
    refuses an older sync), whatever the device's generation and resourceVersion."""
    device = {
        "metadata": {"name": "d", "generation": generation, "resourceVersion": rv},
        "spec": {"properties": [{"name": "p", "desired": {"value": "1"}}]},
        "status": {
            "twins": [
                {
                    "propertyName": "p",
                    "observedDesired": {
                        "value": "0",
                        "metadata": {
                            "cloudVersion": str(seen_cloud),
                            "edgeVersion": str(seen_edge),
                        },
                    },
                }
            ]
        },
    }
    frame = stock.cloud_updated_frame(msg_id="m", event_id="e", timestamp_ms=1, device=device)
    assert frame is not None
    version = json.loads(frame)["content"]["twin"]["p"]["expected_version"]
    assert version["cloud"] >= max(seen_cloud, 1)
    assert version["edge"] == seen_edge
