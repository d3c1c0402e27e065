"""An edge whose certificate expires while it is offline keeps serving; on reconnect it says
once what is needed, and ``edgecore join`` with a new token restores the link, keeping the
cache and edgecore.yaml."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
import time
from pathlib import Path

import aiohttp
import aiomqtt
import pytest

from cloudhub.app import CloudApp
from edgecore import config
from edgecore.credentials import read_cert
from edgecore.join import join
from tests.security.conftest import StartCloud, StartEdge, join_node, write_edge_config
from tests.support.procs import wait_until
from wire.errors import ConfigError

pytestmark = pytest.mark.timeout(20)

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p1", "namespace": "default"},
    "spec": {"nodeName": "edge-1", "containers": [{"name": "c", "image": "x"}]},
}
MODEL = {
    "apiVersion": "devices.kubeedge.io/v1beta1",
    "kind": "DeviceModel",
    "metadata": {"name": "thermo", "namespace": "default"},
    "spec": {"properties": [{"name": "temperature", "type": "FLOAT", "accessMode": "ReadOnly"}]},
}
DEVICE = {
    "apiVersion": "devices.kubeedge.io/v1beta1",
    "kind": "Device",
    "metadata": {"name": "t1", "namespace": "default"},
    "spec": {
        "deviceModelRef": {"name": "thermo"},
        "nodeName": "edge-1",
        "properties": [{"name": "temperature"}],
    },
}
REPORT = {
    "event_id": "offline-1",
    "timestamp": 1,
    "twin": {"temperature": {"actual": {"value": "21.5"}, "metadata": {"type": "float"}}},
}


def _outbox(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])
    finally:
        conn.close()


async def _reported(cloud: CloudApp) -> str | None:
    device = await cloud.store.get("device", "default", "t1")
    for t in (device.get("status") or {}).get("twins") or []:
        if t.get("propertyName") == "temperature":
            return (t.get("reported") or {}).get("value")
    return None


async def _local_get(port: int, path: str) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}{path}") as resp:
            await resp.json()
            return resp.status


def _refusals(caplog: pytest.LogCaptureFixture) -> int:
    return sum(
        1
        for r in caplog.records
        if r.name.startswith("cloudhub") and "refused websocket" in r.getMessage()
    )


async def test_offline_past_expiry_then_rejoin_restores_the_link(
    start_cloud: StartCloud,
    start_edge: StartEdge,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Serve offline past expiry, log the remedy once, re-join live, keep the cache, and
    deliver the update queued while offline."""
    cloud = await start_cloud(validity=dt.timedelta(seconds=2))
    ws_port, https_port = cloud.ws_port, cloud.https_port
    settings = await join_node(cloud, tmp_path)
    # Renew only at the very end of the life, so that going offline first is easy to arrange.
    settings = write_edge_config(
        settings, cert={"renew_min_fraction": 0.98, "renew_max_fraction": 0.99}
    )
    edge = await start_edge(settings)
    await cloud.store.apply([POD, MODEL, DEVICE])
    await wait_until(lambda: edge.store.get("default/pod/p1"), timeout=5)
    await wait_until(lambda: edge.store.get("default/device/t1"), timeout=5)
    await cloud.stop()
    expires = read_cert(settings).not_after
    db_inode = settings.db_path.stat().st_ino
    # A mapper reports while the cloud is away: the update is queued in the outbox.
    async with aiomqtt.Client("127.0.0.1", edge.settings.mqtt.port) as mqtt:
        await mqtt.publish("$hw/events/device/t1/twin/update", json.dumps(REPORT), qos=1)
    await wait_until(lambda: _outbox(settings.db_path) == 1, timeout=5)

    with caplog.at_level(logging.INFO):
        await wait_until(lambda: time.time() > expires + 0.5, timeout=10)
        # Offline and expired: the cache is still served on the local API.
        assert await _local_get(edge.local_api_port, "/api/v1/namespaces/default/pods/p1") == 200
        again = await start_cloud(ws_port=ws_port, https_port=https_port)
        await wait_until(lambda: "expired at" in edge.hub.last_error, timeout=5)
        # Let the edge retry a few times (each refused by the cloud): still one line.
        await wait_until(lambda: _refusals(caplog) >= 3, timeout=5)
        await join(
            cloud=f"127.0.0.1:{ws_port}",
            token=again.authority.issue_token(3600, uses=1),
            node_name="edge-1",
            cert_port=https_port,
            data_dir=settings.data_dir,
        )
        await wait_until(lambda: "edge-1" in again.hub.sessions, timeout=5)
        # The update queued before expiry reaches the cloud over the restored link.
        await wait_until(lambda: _reported(again), timeout=5)
    assert await _reported(again) == "21.5"
    await wait_until(lambda: _outbox(settings.db_path) == 0, timeout=5)
    remedy = [
        r
        for r in caplog.records
        if "expired at" in r.getMessage() and "edgecore join" in r.getMessage()
    ]
    assert len([r for r in remedy if r.name.startswith("edgecore")]) == 1
    assert read_cert(settings).not_after > time.time() + 3000
    assert settings.db_path.stat().st_ino == db_inode
    assert await edge.store.get("default/pod/p1") is not None
    kept = config.load(settings.data_dir / config.CONFIG_FILE)
    assert kept.cert.renew_min_fraction == 0.98


async def test_rejoin_into_another_nodes_dir_is_refused(
    start_cloud: StartCloud, tmp_path: Path
) -> None:
    """A data dir holds one node's cache: joining it as another node fails and changes nothing."""
    cloud = await start_cloud()
    settings = await join_node(cloud, tmp_path)
    before = settings.cert_path.read_bytes()
    with pytest.raises(ConfigError, match="belongs to node 'edge-1'"):
        await join(
            cloud=f"127.0.0.1:{cloud.ws_port}",
            token=cloud.authority.issue_token(60),
            node_name="edge-2",
            cert_port=cloud.https_port,
            data_dir=settings.data_dir,
        )
    assert settings.cert_path.read_bytes() == before
