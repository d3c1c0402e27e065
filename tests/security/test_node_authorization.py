"""Node authorization over the real link: a node can query only what is bound to it, and can
write only its own objects' status. Every refusal is an ``error`` reply and a log line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from cloudhub.app import CloudApp
from edgecore.config import EdgeSettings
from tests.security.conftest import answer_to, join_node, link, send
from tests.support.procs import wait_until
from wire.messages import Message

pytestmark = pytest.mark.timeout(20)


def _pod(name: str, node: str, cm: str, secret: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node,
            "containers": [
                {"name": "c", "image": "x", "envFrom": [{"configMapRef": {"name": cm}}]}
            ],
            "volumes": [{"name": "s", "secret": {"secretName": secret}}],
        },
    }


def _cm(name: str) -> dict[str, Any]:
    meta = {"name": name, "namespace": "default"}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v"}}


def _secret(name: str) -> dict[str, Any]:
    meta = {"name": name, "namespace": "default"}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "data": {"k": "dg=="}}


def _model(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"properties": [{"name": "t", "type": "FLOAT", "accessMode": "ReadOnly"}]},
    }


def _device(name: str, node: str, model: str) -> dict[str, Any]:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"deviceModelRef": {"name": model}, "nodeName": node},
    }


WORLD = [
    _cm("mine-cm"), _secret("mine-secret"), _pod("mine", "edge-1", "mine-cm", "mine-secret"),
    _cm("theirs-cm"), _secret("theirs-secret"),
    _pod("theirs", "edge-2", "theirs-cm", "theirs-secret"),
    _cm("loose-cm"), _secret("loose-secret"),
    _model("mine-model"), _device("mine-dev", "edge-1", "mine-model"),
    _model("theirs-model"), _device("theirs-dev", "edge-2", "theirs-model"),
]  # fmt: skip

MINE = [
    "null/node/edge-1", "default/pod/mine", "default/configmap/mine-cm",
    "default/secret/mine-secret", "default/device/mine-dev", "default/devicemodel/mine-model",
]  # fmt: skip
NOT_MINE = [
    "null/node/edge-2", "default/pod/theirs", "default/configmap/theirs-cm",
    "default/secret/theirs-secret", "default/configmap/loose-cm", "default/secret/loose-secret",
    "default/device/theirs-dev", "default/devicemodel/theirs-model", "default/secret/absent",
]  # fmt: skip


async def _world(cloud: CloudApp, tmp_path: Path) -> EdgeSettings:
    await join_node(cloud, tmp_path, "edge-2")
    edge = await join_node(cloud, tmp_path, "edge-1")
    await cloud.store.apply(WORLD)
    await wait_until(lambda: len(cloud.controller.index.desired("edge-1")) == len(MINE), timeout=5)
    return edge


def _query(resource: str) -> Message:
    return Message.new(source="metamanager", group="resource", operation="query", resource=resource)


async def test_node_can_query_what_is_bound_to_it(cloud: CloudApp, tmp_path: Path) -> None:
    """Its Node, its pods, their configmaps and secrets, its devices and their models."""
    edge = await _world(cloud, tmp_path)
    async with link(cloud, edge) as ws:
        for resource in MINE:
            q = _query(resource)
            await send(ws, q)
            answer = await answer_to(ws, q)
            assert answer["route"]["operation"] == "response", resource
            assert answer["content"]["metadata"]["name"] == resource.rsplit("/", 1)[1]


async def test_node_cannot_query_anything_else(
    cloud: CloudApp, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Other nodes' objects, unreferenced ones and absent ones all get the same error, logged."""
    edge = await _world(cloud, tmp_path)
    with caplog.at_level(logging.WARNING):
        async with link(cloud, edge) as ws:
            for resource in NOT_MINE:
                q = _query(resource)
                await send(ws, q)
                answer = await answer_to(ws, q)
                assert answer["route"]["operation"] == "error", resource
                assert "not bound to node edge-1" in answer["content"]
                assert "data" not in str(answer["content"])
    logged = " ".join(r.getMessage() for r in caplog.records)
    for resource in NOT_MINE:
        assert resource in logged


async def test_node_receives_only_what_is_bound_to_it(cloud: CloudApp, tmp_path: Path) -> None:
    """The full sync a node gets on connect holds exactly its own objects."""
    edge = await _world(cloud, tmp_path)
    import json

    received: set[str] = set()
    async with link(cloud, edge) as ws:
        inventory = Message.new(
            source="edgehub", group="resource", operation="inventory",
            resource="null/node/edge-1", content={},
        )  # fmt: skip
        await send(ws, inventory)
        while received != set(MINE):
            frame = json.loads(await ws.recv())
            if frame["route"]["operation"] in ("insert", "update"):
                received.add(frame["route"]["resource"])
                assert frame["route"]["resource"] in MINE, frame["route"]["resource"]


async def test_node_cannot_write_another_nodes_device(cloud: CloudApp, tmp_path: Path) -> None:
    """A twin report for a device bound elsewhere is refused and changes nothing."""
    edge = await _world(cloud, tmp_path)
    before = await cloud.store.get("device", "default", "theirs-dev")
    async with link(cloud, edge) as ws:
        for what in ("twin/edge_updated", "state/update"):
            report = Message.new(
                source="twin", group="twin", operation="update",
                resource=f"default/device/theirs-dev/{what}",
                content={"event_id": "e", "timestamp": 1, "state": "online", "twin": {}},
            )  # fmt: skip
            await send(ws, report)
            answer = await answer_to(ws, report)
            assert answer["route"]["operation"] == "error"
            assert "not bound to node edge-1" in answer["content"]
    assert await cloud.store.get("device", "default", "theirs-dev") == before


async def test_node_cannot_change_other_nodes_or_their_pods(
    cloud: CloudApp, tmp_path: Path
) -> None:
    """Status writes aimed at another node's Node, Lease or pods get an error, change nothing."""
    edge = await _world(cloud, tmp_path)
    node_before = await cloud.store.get("node", None, "edge-2")
    pod_before = await cloud.store.get("pod", "default", "theirs")
    writes = [
        ("null/nodestatus/edge-2", {"conditions": [{"type": "Ready", "status": "False"}]}),
        ("null/node/edge-2", {"status": {"phase": "Hijacked"}}),
        ("kube-node-lease/lease/edge-2", {"spec": {"holderIdentity": "edge-1"}}),
        ("default/podstatus/theirs", {"phase": "Failed"}),
        ("default/pod/theirs", {"status": {"phase": "Failed"}}),
    ]
    async with link(cloud, edge) as ws:
        for resource, content in writes:
            write = Message.new(
                source="edged", group="resource", operation="update",
                resource=resource, content=content,
            )  # fmt: skip
            await send(ws, write)
            answer = await answer_to(ws, write)
            assert answer["route"]["operation"] == "error", resource
            assert "edge-1" in answer["content"]
    assert await cloud.store.get("node", None, "edge-2") == node_before
    assert await cloud.store.get("pod", "default", "theirs") == pod_before
