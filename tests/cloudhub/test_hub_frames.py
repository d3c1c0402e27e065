"""The hub's cheap frames over a live link: keepalives answered on both paths, reports
answered once, objects sent as the store holds them (the fast paths themselves are held to the
codec in tests/wire/test_codec_fast_paths.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from cloudhub import app as cloud_app
from cloudhub import routes
from tests.support.procs import wait_until
from wire.codec import encode
from wire.messages import Message

pytestmark = pytest.mark.timeout(30)


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
    """Reports sent together are each ACKed (one batch of replies); the status is stored."""
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
