"""Deleting a node revokes its certificates and closes its link; revocation survives restarts;
a new token restores the node."""

from __future__ import annotations

from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from cloudhub.app import CloudApp
from cloudhub.store.embedded import EmbeddedStore
from tests.security.conftest import StartCloud, admin, join_node, link
from tests.support.procs import wait_until

pytestmark = pytest.mark.timeout(20)


async def _refused(cloud: CloudApp, edge) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidStatus) as info:
        async with link(cloud, edge):
            pass
    assert info.value.response.status_code == 403
    return info.value.response.body.decode()


async def test_delete_node_revokes_and_closes_the_live_link(
    cloud: CloudApp, tmp_path: Path
) -> None:
    """DELETE of a node closes its live link at once and its next handshake is refused."""
    edge = await join_node(cloud, tmp_path)
    async with link(cloud, edge) as ws:
        await wait_until(lambda: "edge-1" in cloud.hub.sessions, timeout=5)
        status, body = await admin(cloud, "DELETE", "/nodes/_/edge-1")
        assert status == 200 and body["metadata"]["name"] == "edge-1"
        with pytest.raises(ConnectionClosed):
            while True:
                await ws.recv()
    assert "revoked" in await _refused(cloud, edge)


async def test_revocation_survives_cloudhub_restart(
    start_cloud: StartCloud, tmp_path: Path
) -> None:
    """A restarted cloudhub still refuses the deleted node's certificate."""
    cloud = await start_cloud()
    edge = await join_node(cloud, tmp_path)
    assert (await admin(cloud, "DELETE", "/nodes/_/edge-1"))[0] == 200
    await cloud.stop()
    again = await start_cloud()
    assert "revoked" in await _refused(again, edge)


async def test_new_token_restores_a_deleted_node(cloud: CloudApp, tmp_path: Path) -> None:
    """After deletion, 'edgecore join' with a new token gives a certificate that works."""
    edge = await join_node(cloud, tmp_path)
    await admin(cloud, "DELETE", "/nodes/_/edge-1")
    edge = await join_node(cloud, tmp_path)
    async with link(cloud, edge):
        await wait_until(lambda: "edge-1" in cloud.hub.sessions, timeout=5)
    await cloud.store.get("node", None, "edge-1")


async def test_node_deleted_in_the_store_is_revoked(cloud: CloudApp, tmp_path: Path) -> None:
    """A Node removed behind the admin API's back (kubectl) is revoked by certcontroller."""
    edge = await join_node(cloud, tmp_path)
    async with link(cloud, edge) as ws:
        await wait_until(lambda: "edge-1" in cloud.hub.sessions, timeout=5)
        await cloud.store.delete("node", None, "edge-1")
        with pytest.raises(ConnectionClosed):
            while True:
                await ws.recv()
    assert "revoked" in await _refused(cloud, edge)


async def test_node_deleted_while_cloudhub_was_down_is_revoked_at_start(
    start_cloud: StartCloud, tmp_path: Path
) -> None:
    """Certificates of a node whose Node vanished during downtime are revoked on start."""
    cloud = await start_cloud()
    edge = await join_node(cloud, tmp_path)
    await join_node(cloud, tmp_path, "edge-2")
    await cloud.stop()
    store = EmbeddedStore(tmp_path / "cloud" / "store.db")
    await store.start()
    await store.delete("node", None, "edge-1")
    await store.close()
    again = await start_cloud()
    await wait_until(lambda: again.issuer.revocations.is_revoked(_serial(edge)), timeout=5)
    assert "revoked" in await _refused(again, edge)
    async with link(again, _settings(tmp_path, "edge-2")):
        await wait_until(lambda: "edge-2" in again.hub.sessions, timeout=5)


async def test_delete_of_unknown_node_is_not_found(cloud: CloudApp, tmp_path: Path) -> None:
    """Deleting a node that never existed is a 404 and revokes nothing."""
    edge = await join_node(cloud, tmp_path)
    status, body = await admin(cloud, "DELETE", "/nodes/_/ghost")
    assert status == 404 and "error" in body
    async with link(cloud, edge):
        await wait_until(lambda: "edge-1" in cloud.hub.sessions, timeout=5)


async def test_other_nodes_keep_their_links(cloud: CloudApp, tmp_path: Path) -> None:
    """Revoking one node leaves every other node's link alone."""
    edge1 = await join_node(cloud, tmp_path, "edge-1")
    edge2 = await join_node(cloud, tmp_path, "edge-2")
    async with link(cloud, edge1), link(cloud, edge2):
        await wait_until(lambda: len(cloud.hub.sessions) == 2, timeout=5)
        await admin(cloud, "DELETE", "/nodes/_/edge-1")
        await wait_until(lambda: "edge-1" not in cloud.hub.sessions, timeout=5)
        assert "edge-2" in cloud.hub.sessions


def _settings(tmp_path: Path, name: str):  # type: ignore[no-untyped-def]
    from edgecore import config

    return config.load(tmp_path / name / config.CONFIG_FILE)


def _serial(edge) -> int:  # type: ignore[no-untyped-def]
    from cryptography import x509

    return x509.load_pem_x509_certificate(edge.cert_path.read_bytes()).serial_number
