"""Edges renew their certificate over the live link before it expires, without dropping it;
the cloud renews only a node's own certificate, only for live nodes, not too often."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudhub.app import CloudApp
from edgecore.certmanager.keys import make_key_and_csr
from edgecore.certmanager.module import CertManager
from edgecore.config import EdgeSettings
from edgecore.credentials import CertInfo, read_cert
from hive.bus import Bus
from tests.security.conftest import (
    StartCloud,
    StartEdge,
    answer_to,
    join_node,
    link,
    send,
    write_edge_config,
)
from tests.support.procs import wait_until
from wire.messages import Message

pytestmark = pytest.mark.timeout(20)


def _csr_message(node: str, content: object | None = None) -> Message:
    if content is None:
        _, der = make_key_and_csr(node)
        content = x509.load_der_x509_csr(der).public_bytes(serialization.Encoding.PEM).decode()
    return Message.new(
        source="certmanager", group="resource", operation="update",
        resource=f"null/certificatesigningrequest/{node}", content=content,
    )  # fmt: skip


async def test_renewal_over_the_link_returns_a_certificate(cloud: CloudApp, tmp_path: Path) -> None:
    """A node's CSR for itself is answered with a PEM certificate for its name."""
    edge = await join_node(cloud, tmp_path)
    async with link(cloud, edge) as ws:
        req = _csr_message("edge-1")
        await send(ws, req)
        answer = await answer_to(ws, req)
    assert answer["route"]["operation"] == "response"
    cert = x509.load_pem_x509_certificate(answer["content"].encode())
    assert cert.subject.rfc4514_string().startswith("CN=system:node:edge-1")
    # The renewed certificate is on record: deleting the node revokes it too.
    assert await cloud.issuer.revoke_node("edge-1") == 2


async def test_node_cannot_renew_for_another_node(cloud: CloudApp, tmp_path: Path) -> None:
    """A CSR naming another node is refused and issues nothing."""
    await join_node(cloud, tmp_path, "edge-2")
    edge = await join_node(cloud, tmp_path)
    async with link(cloud, edge) as ws:
        req = _csr_message("edge-2")
        await send(ws, req)
        answer = await answer_to(ws, req)
    assert answer["route"]["operation"] == "error"
    assert "only its own certificate" in answer["content"]
    assert await cloud.issuer.revoke_node("edge-2") == 1  # only the join certificate


async def test_renewal_too_soon_is_refused(cloud: CloudApp, tmp_path: Path) -> None:
    """A second renewal within a tenth of the validity is refused (no ledger flooding)."""
    edge = await join_node(cloud, tmp_path)
    async with link(cloud, edge) as ws:
        first, second = _csr_message("edge-1"), _csr_message("edge-1")
        await send(ws, first)
        assert (await answer_to(ws, first))["route"]["operation"] == "response"
        await send(ws, second)
        answer = await answer_to(ws, second)
    assert answer["route"]["operation"] == "error" and "between renewals" in answer["content"]


@settings(max_examples=25)
@given(content=st.one_of(st.none(), st.integers(), st.text(max_size=200), st.binary(max_size=64)))
def test_garbage_csr_content_is_refused(content: object) -> None:
    """Whatever the content, a CSR that does not parse is refused with AuthError."""
    from cloudhub.certcontroller.controller import parse_csr
    from wire.errors import AuthError

    try:
        der = parse_csr(content)
    except AuthError:
        return
    assert isinstance(der, bytes)


async def test_garbage_csr_over_the_link_gets_an_error(cloud: CloudApp, tmp_path: Path) -> None:
    """Non-CSR content gets an error naming the problem; nothing is issued."""
    edge = await join_node(cloud, tmp_path)
    async with link(cloud, edge) as ws:
        for content in ("hello", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", {"a": 1}):
            req = _csr_message("edge-1", content)
            await send(ws, req)
            assert (await answer_to(ws, req))["route"]["operation"] == "error"
    assert await cloud.issuer.revoke_node("edge-1") == 1


async def test_edge_renews_before_expiry_without_dropping_its_link(
    start_cloud: StartCloud, start_edge: StartEdge, tmp_path: Path
) -> None:
    """With 2 s certificates the edge renews at 70-80 %, keeps its one link past the first
    certificate's expiry, and keeps receiving objects; a reconnect uses the new certificate."""
    cloud = await start_cloud(validity=dt.timedelta(seconds=2))
    settings_ = await join_node(cloud, tmp_path)
    settings_ = write_edge_config(settings_, cert={"check_interval": 0.05})
    first = read_cert(settings_)
    edge = await start_edge(settings_)
    await wait_until(lambda: edge.hub.connected.is_set(), timeout=5)
    session = cloud.hub.sessions["edge-1"]
    await wait_until(lambda: read_cert(settings_).serial != first.serial, timeout=5)
    renewed = read_cert(settings_)
    assert renewed.not_after > first.not_after
    await wait_until(lambda: time.time() > first.not_after + 0.2, timeout=5)
    await cloud.store.apply([_pod()])
    await wait_until(_has(edge, "default/pod/p1"), timeout=5)
    assert edge.hub.connections == 1 and cloud.hub.sessions["edge-1"] is session
    await session.close("test: force a reconnect")
    await wait_until(lambda: edge.hub.connections == 2 and edge.hub.connected.is_set(), timeout=5)


async def test_renewal_waits_for_the_link(tmp_path: Path, cloud: CloudApp) -> None:
    """When renewal is due but the edge is offline, certmanager sends nothing; once edgehub
    says 'connected' it sends its CSR to edgehub, naming itself as the source."""
    settings_ = await join_node(cloud, tmp_path)
    settings_ = write_edge_config(settings_, cert={"check_interval": 0.05})
    bus = Bus()
    bus.register("certmanager", "certmanager")
    bus.register("edgehub", "hub")
    # 25 days into a 30-day certificate: past the 70-80 % renewal point, not expired.
    manager = CertManager(bus=bus, settings=settings_, clock=lambda: time.time() + 25 * 86400)
    task = asyncio.create_task(manager.run())
    try:
        await asyncio.sleep(0.2)
        assert bus.receive_nowait("edgehub") is None
        connected = Message.new(
            source="edgehub", group="hub", operation="connected", resource="cloud"
        )
        await bus.send("certmanager", connected)
        msg = await asyncio.wait_for(bus.receive("edgehub"), 5)
        assert msg.resource == "null/certificatesigningrequest/edge-1"
        assert msg.route.source == "certmanager"
    finally:
        task.cancel()


async def test_expired_certificate_is_not_renewed_over_the_link(
    tmp_path: Path, cloud: CloudApp
) -> None:
    """Past expiry there is nothing to renew with: certmanager waits for a re-join."""
    settings_ = await join_node(cloud, tmp_path)
    settings_ = write_edge_config(settings_, cert={"check_interval": 0.05})
    bus = Bus()
    bus.register("certmanager", "certmanager")
    bus.register("edgehub", "hub")
    manager = CertManager(bus=bus, settings=settings_, clock=lambda: time.time() + 40 * 86400)
    await bus.send(
        "certmanager",
        Message.new(source="edgehub", group="hub", operation="connected", resource="cloud"),
    )
    task = asyncio.create_task(manager.run())
    try:
        await asyncio.sleep(0.3)
        assert bus.receive_nowait("edgehub") is None
    finally:
        task.cancel()


@given(
    life=st.floats(1, 1e8),
    low=st.floats(0.01, 0.98),
    width=st.floats(0, 0.01),
    seed=st.integers(0, 2**32),
)
def test_renewal_point_lies_within_the_configured_fraction(
    life: float, low: float, width: float, seed: int
) -> None:
    """The renewal point is between the two fractions of the lifetime, and stable per cert."""
    import random

    s = EdgeSettings(node_name="n", data_dir=Path("/nonexistent"))
    s.cert.renew_min_fraction, s.cert.renew_max_fraction = low, low + width
    manager = CertManager(bus=Bus(), settings=s, rng=random.Random(seed))
    cert = CertInfo(serial=1, not_before=1000.0, not_after=1000.0 + life, fingerprint=(0, 0, 0))
    due = manager.due(cert)
    assert 1000 + low * life - 1e-6 * life <= due <= 1000 + (low + width) * life + 1e-6 * life
    assert manager.due(cert) == due


def _has(edge, key: str):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return await edge.store.get(key) is not None

    return check


def _pod() -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p1", "namespace": "default"},
        "spec": {"nodeName": "edge-1", "containers": [{"name": "c", "image": "x"}]},
    }
