"""``GET /edge.crt`` without a token but with the node's current client certificate renews it,
as a stock KubeEdge edgecore rotates; anything but a live, unrevoked, matching certificate is
refused."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from cloudhub.app import CloudApp
from edgecore.certmanager.keys import make_key_and_csr
from edgecore.config import EdgeSettings
from tests.security.certs import forge_node_cert, now
from tests.security.conftest import join_node
from tests.support.inproc import edge_tls

pytestmark = pytest.mark.timeout(20)


async def _renew(
    cloud: CloudApp, tls: ssl.SSLContext, node: str = "edge-1", *, token: str = ""
) -> tuple[int, bytes]:
    _, csr = make_key_and_csr(node)
    headers = {"NodeName": node, "Authorization": f"Bearer {token}"}
    url = f"https://127.0.0.1:{cloud.https_port}/edge.crt"
    async with aiohttp.ClientSession() as session:
        async with session.get(url, data=csr, headers=headers, ssl=tls) as resp:
            return resp.status, await resp.read()


def _anonymous(settings: EdgeSettings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(settings.ca_path))


async def test_current_certificate_renews_without_token(cloud: CloudApp, tmp_path: Path) -> None:
    """A stock edgecore's rotation (its certificate instead of a token) gets a new one."""
    edge = await join_node(cloud, tmp_path)
    status, body = await _renew(cloud, edge_tls(edge))
    assert status == 200
    cert = x509.load_der_x509_certificate(body)
    assert cert.subject.rfc4514_string().startswith("CN=system:node:edge-1")
    assert await cloud.issuer.revoke_node("edge-1") == 2  # the renewal is on record


async def test_no_certificate_and_no_token_is_refused(cloud: CloudApp, tmp_path: Path) -> None:
    """Without a certificate, the token is required."""
    edge = await join_node(cloud, tmp_path)
    status, body = await _renew(cloud, _anonymous(edge))
    assert status == 401 and b"missing Authorization" in body


async def test_renewal_as_another_node_is_refused(cloud: CloudApp, tmp_path: Path) -> None:
    """The NodeName must be the certificate's own."""
    await join_node(cloud, tmp_path, "edge-2")
    edge = await join_node(cloud, tmp_path)
    status, body = await _renew(cloud, edge_tls(edge), "edge-2")
    assert status == 403 and b"disagrees with certificate" in body


async def test_revoked_or_expired_certificate_cannot_renew(cloud: CloudApp, tmp_path: Path) -> None:
    """Once revoked, or once expired, a certificate renews nothing."""
    edge = await join_node(cloud, tmp_path)
    await cloud.issuer.revoke_node("edge-1")
    status, body = await _renew(cloud, edge_tls(edge))
    assert status == 403 and b"revoked" in body
    forge_node_cert(
        edge, cloud.settings.data_dir, not_before=now() - dt.timedelta(days=2),
        not_after=now() - dt.timedelta(days=1),
    )  # fmt: skip
    status, body = await _renew(cloud, edge_tls(edge))
    assert status == 403 and b"expired at" in body


async def test_renewals_are_rate_limited(cloud: CloudApp, tmp_path: Path) -> None:
    """A second renewal within a tenth of the validity is refused (429)."""
    edge = await join_node(cloud, tmp_path)
    assert (await _renew(cloud, edge_tls(edge)))[0] == 200
    status, body = await _renew(cloud, edge_tls(edge))
    assert status == 429 and b"between renewals" in body
