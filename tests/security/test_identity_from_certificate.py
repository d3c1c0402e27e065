"""A node's identity is its client certificate; anything else is refused with a logged reason."""

from __future__ import annotations

import datetime as dt
import logging
import ssl
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from cloudhub.app import CloudApp
from cloudhub.pki import Authority
from tests.security.certs import forge_node_cert, now
from tests.security.conftest import join_node, link, ws_url
from tests.support.inproc import edge_tls
from tests.support.procs import wait_until

pytestmark = pytest.mark.timeout(20)


async def _refusal(cloud: CloudApp, tls: ssl.SSLContext, node: str = "edge-1") -> str:
    with pytest.raises(InvalidStatus) as info:
        async with connect(ws_url(cloud, node), ssl=tls):
            pass
    assert info.value.response.status_code == 403
    return info.value.response.body.decode()


async def test_valid_certificate_is_admitted(cloud: CloudApp, tmp_path: Path) -> None:
    """A certificate issued at join opens the link, and the hub knows the node by it."""
    edge = await join_node(cloud, tmp_path)
    async with link(cloud, edge):
        await wait_until(lambda: "edge-1" in cloud.hub.sessions, timeout=5)


async def test_expired_certificate_is_refused_with_the_remedy(
    cloud: CloudApp, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An expired certificate gets 403 naming the expiry and 'edgecore join'; cloudhub logs it."""
    edge = await join_node(cloud, tmp_path)
    forge_node_cert(
        edge, cloud.settings.data_dir, not_before=now() - dt.timedelta(days=2),
        not_after=now() - dt.timedelta(days=1),
    )  # fmt: skip
    with caplog.at_level(logging.WARNING):
        body = await _refusal(cloud, edge_tls(edge))
    assert "expired at" in body and "edgecore join --token" in body
    assert any("expired at" in r.getMessage() for r in caplog.records)
    assert "edge-1" not in cloud.hub.sessions


async def test_not_yet_valid_certificate_is_refused(cloud: CloudApp, tmp_path: Path) -> None:
    """A certificate from the future (a clock problem) is refused and says so."""
    edge = await join_node(cloud, tmp_path)
    forge_node_cert(
        edge, cloud.settings.data_dir, not_before=now() + dt.timedelta(days=1),
        not_after=now() + dt.timedelta(days=2),
    )  # fmt: skip
    assert "not valid before" in await _refusal(cloud, edge_tls(edge))


async def test_revoked_certificate_is_refused(cloud: CloudApp, tmp_path: Path) -> None:
    """After the node's certificates are revoked its handshake gets 403 'revoked'."""
    edge = await join_node(cloud, tmp_path)
    assert await cloud.issuer.revoke_node("edge-1") == 1
    body = await _refusal(cloud, edge_tls(edge))
    assert "revoked" in body and "edgecore join --token" in body


async def test_certificate_from_another_ca_is_refused_at_tls(
    cloud: CloudApp, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A node certificate signed by another CA never gets past TLS; the refusal is logged."""
    edge = await join_node(cloud, tmp_path)
    other = Authority.load_or_create(tmp_path / "other-ca", advertise=[])
    forge_node_cert(
        edge, other.data_dir, not_before=now() - dt.timedelta(hours=1),
        not_after=now() + dt.timedelta(days=1),
    )  # fmt: skip
    with caplog.at_level(logging.WARNING):
        with pytest.raises((ssl.SSLError, OSError, InvalidHandshake)):
            async with connect(ws_url(cloud, "edge-1"), ssl=edge_tls(edge)) as ws:
                await ws.recv()
        await wait_until(
            lambda: any(
                "before completing the handshake" in r.getMessage() for r in caplog.records
            ),
            timeout=5,
        )
    assert "edge-1" not in cloud.hub.sessions


async def test_connection_without_certificate_is_refused(cloud: CloudApp, tmp_path: Path) -> None:
    """A client that presents no certificate is refused at TLS."""
    edge = await join_node(cloud, tmp_path)
    anonymous = ssl.create_default_context(cafile=str(edge.ca_path))
    with pytest.raises((ssl.SSLError, OSError, InvalidHandshake)):
        async with connect(ws_url(cloud, "edge-1"), ssl=anonymous) as ws:
            await ws.recv()
    assert not cloud.hub.sessions


async def test_header_or_path_naming_another_node_is_refused(
    cloud: CloudApp, tmp_path: Path
) -> None:
    """node_id header or URL path that disagrees with the certificate: 403 with the reason."""
    await join_node(cloud, tmp_path, "edge-2")
    edge = await join_node(cloud, tmp_path)
    with pytest.raises(InvalidStatus) as info:
        async with link(cloud, edge, additional_headers={"node_id": "edge-2"}):
            pass
    assert b"disagrees with certificate" in info.value.response.body
    assert "certificate says" in await _refusal(cloud, edge_tls(edge), node="edge-2")
    assert not cloud.hub.sessions
