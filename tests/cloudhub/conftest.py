"""Fixtures shared by the cloudhub tests."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect

from cloudhub import app as cloud_app
from cloudhub.config import CloudSettings, HubSettings
from edgecore.join import join
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
        edge = await join(
            cloud=f"127.0.0.1:{cloud.ws_port}",
            token=cloud.authority.issue_token(600),
            node_name="edge-1",
            cert_port=cloud.https_port,
            data_dir=tmp_path / "edge-1",
        )
        ctx = ssl.create_default_context(cafile=str(edge.ca_path))
        ctx.load_cert_chain(str(edge.cert_path), str(edge.key_path))
        url = f"wss://127.0.0.1:{cloud.ws_port}/project/edge-1/events"
        async with connect(url, ssl=ctx) as ws:
            await wait_until(lambda: "edge-1" in cloud.hub.sessions, timeout=5)
            yield cloud, ws
    finally:
        await cloud.stop()
