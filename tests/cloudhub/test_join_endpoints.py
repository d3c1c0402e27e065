"""``/ca.crt`` and ``/edge.crt`` as a stock KubeEdge edgecore calls them (GET with a body)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cloudhub.pki import Authority, make_node_key_and_csr, node_name_from_cert
from cloudhub.store.embedded import EmbeddedStore
from tests.support.inproc import https_port, trusting_session


@dataclass
class Cloud:
    authority: Authority
    store: EmbeddedStore
    base: str
    session: aiohttp.ClientSession

    async def edge_crt(
        self, *, token: str | None, node: str | None, csr: bytes
    ) -> tuple[int, bytes]:
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if node is not None:
            headers["NodeName"] = node
        async with self.session.get(self.base + "/edge.crt", data=csr, headers=headers) as resp:
            return resp.status, await resp.read()


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    authority = Authority.load_or_create(tmp_path / "cloud", advertise=[])
    store = EmbeddedStore(tmp_path / "cloud" / "store.db")
    await store.start()
    async with https_port(authority, store) as base, trusting_session(authority) as session:
        yield Cloud(authority, store, base, session)
    await store.close()


def _kubeedge_csr() -> bytes:
    """A CSR shaped like a stock edgecore's: ECDSA P-256, CN=kubeedge.io."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "KubeEdge"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "kubeedge.io"),
                ]
            )
        )
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER)


async def test_ca_crt_is_der_without_credentials(cloud: Cloud) -> None:
    """GET /ca.crt answers the CA as DER, octet-stream, to anyone."""
    async with cloud.session.get(cloud.base + "/ca.crt") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/octet-stream"
        assert await resp.read() == cloud.authority.ca_der


async def test_stock_edgecore_request_gets_a_node_cert(cloud: Cloud) -> None:
    """Bare JWT + NodeName + CN=kubeedge.io CSR -> DER cert for system:node:NAME."""
    jwt_only = cloud.authority.issue_token(60).split(".", 1)[1]
    status, body = await cloud.edge_crt(token=jwt_only, node="gw-7", csr=_kubeedge_csr())
    assert status == 200, body
    assert node_name_from_cert(body) == "gw-7"


async def test_join_creates_node_once_and_keeps_edits(cloud: Cloud) -> None:
    """A first join creates the Node; a re-join leaves an edited Node as it is."""
    token = cloud.authority.issue_token(60)
    _, csr = make_node_key_and_csr("gw-1")
    assert (await cloud.edge_crt(token=token, node="gw-1", csr=csr))[0] == 200
    node = await cloud.store.get("node", None, "gw-1")
    assert node["kind"] == "Node" and node["apiVersion"] == "v1"
    node["metadata"]["labels"]["site"] = "plant-1"
    await cloud.store.apply([node])
    assert (await cloud.edge_crt(token=token, node="gw-1", csr=csr))[0] == 200
    again = await cloud.store.get("node", None, "gw-1")
    assert again["metadata"]["labels"]["site"] == "plant-1"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "missing Authorization"),
        ("nonsense", "malformed token"),
        ("a.b.c", "malformed token"),
    ],
)
async def test_bad_token_is_401_with_one_line_reason(
    cloud: Cloud, token: str | None, reason: str
) -> None:
    """Missing or bad tokens answer 401 with a one-line plain-text reason."""
    _, csr = make_node_key_and_csr("gw-1")
    status, body = await cloud.edge_crt(token=token, node="gw-1", csr=csr)
    assert status == 401
    text = body.decode()
    assert reason in text and text.count("\n") == 1
    assert (await cloud.store.list("node"))[0] == []


async def test_token_is_checked_before_node_name_and_csr(cloud: Cloud) -> None:
    """An unauthenticated request with a bad NodeName still gets 401, not 400."""
    status, _ = await cloud.edge_crt(token="x.y.z", node="Bad_Name", csr=b"junk")
    assert status == 401


@pytest.mark.parametrize("node", [None, "", "Edge_1", "-x", "a" * 254])
async def test_bad_node_name_is_400(cloud: Cloud, node: str | None) -> None:
    """A missing or non-DNS-1123 NodeName answers 400."""
    _, csr = make_node_key_and_csr("x")
    status, body = await cloud.edge_crt(token=cloud.authority.issue_token(60), node=node, csr=csr)
    assert status == 400
    assert b"NodeName" in body


@pytest.mark.parametrize("csr", [b"", b"not a csr"])
async def test_bad_csr_is_400(cloud: Cloud, csr: bytes) -> None:
    """An empty or undecodable CSR answers 400 and creates no Node."""
    status, body = await cloud.edge_crt(token=cloud.authority.issue_token(60), node="gw", csr=csr)
    assert status == 400
    assert b"CSR" in body
    assert (await cloud.store.list("node"))[0] == []
