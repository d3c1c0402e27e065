"""Fixtures shared by the cloudhub tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect

from cloudhub import app as cloud_app
from cloudhub import routes
from cloudhub.config import CloudSettings, HubSettings
from cloudhub.edgecontroller.controller import EdgeController
from cloudhub.store.embedded import EmbeddedStore
from hive.bus import Bus
from tests.support.inproc import edge_tls, join_node
from tests.support.procs import wait_until

MODEL = {
    "apiVersion": "devices.kubeedge.io/v1beta1",
    "kind": "DeviceModel",
    "metadata": {"name": "thermostat", "namespace": "default"},
    "spec": {"properties": [{"name": "temperature", "type": "FLOAT", "accessMode": "ReadOnly"}]},
}
DEVICE = {
    "apiVersion": "devices.kubeedge.io/v1beta1",
    "kind": "Device",
    "metadata": {"name": "t1", "namespace": "default"},
    "spec": {"deviceModelRef": {"name": "thermostat"}, "nodeName": "edge-1"},
}


@pytest.fixture(params=[0, 1], ids=["in-process", "link-worker"])
async def linked(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[cloud_app.CloudApp, ClientConnection]]:
    """A real cloudhub and a hand-driven link of node edge-1 (which has one Device); the link
    is terminated by cloudhub itself, then by a link worker process."""
    cloud = await cloud_app.start(
        CloudSettings(
            data_dir=tmp_path / "cloud",
            https_port=0,
            hub=HubSettings(bind="127.0.0.1", ws_port=0, link_workers=request.param),
        )
    )
    try:
        await cloud.store.apply([MODEL, DEVICE])
        edge = await join_node(cloud, "edge-1", tmp_path / "edge-1")
        ctx = edge_tls(edge)
        url = f"wss://127.0.0.1:{cloud.ws_port}/project/edge-1/events"
        async with connect(url, ssl=ctx) as ws:
            await wait_until(lambda: "edge-1" in cloud.hub.sessions, timeout=5)
            yield cloud, ws
    finally:
        await cloud.stop()


@pytest.fixture
async def controlled(tmp_path: Path) -> AsyncIterator[tuple[Bus, EmbeddedStore]]:
    """An edgecontroller on an embedded store holding Nodes edge-1 and edge-2, synced, with
    what its start-up list sent the hub already drained; the bus has no hub reading it."""
    store = EmbeddedStore(tmp_path / "store.db")
    await store.start()
    await store.apply(
        [
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}}
            for n in ("edge-1", "edge-2")
        ]
    )
    bus = Bus()
    bus.register(routes.HUB, "hub")
    bus.register(routes.EDGECONTROLLER, "resource")
    ctl = EdgeController(bus=bus, store=store)
    task = asyncio.create_task(ctl.run(), name="edgecontroller")
    await asyncio.wait_for(ctl.synced.wait(), 5)
    while bus.receive_nowait(routes.HUB) is not None:
        pass
    yield bus, store
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await store.close()
