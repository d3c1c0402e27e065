"""Kubernetes mode: a node deleted through one cloudhub replica is refused by every replica,
including one started after the revocation (the ledger is a Secret all replicas share)."""

from __future__ import annotations

import shutil
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from edgecore import config as edge_config
from tests.integration.conftest import _started
from tests.support.procs import Cloud, Edge, KubeApi, wait_until

pytestmark = pytest.mark.timeout(120)

REFRESH = "0.3"  # seconds between a replica's re-reads of the revocation list


def replica(tmp_path: Path, kube: KubeApi, name: str, *, ca_from: Cloud | None = None) -> Cloud:
    """A cloudhub replica on the cluster; ``ca_from`` shares that replica's CA and credentials
    (as the Deployment's Secret does), and nothing else: no local ledger is shared."""
    c = Cloud(
        tmp_path,
        name=name,
        extra=[
            "--kubeconfig", str(kube.kubeconfig),
            "--replica-name", name,
            "--auth-refresh-interval", REFRESH,
        ],
    )  # fmt: skip
    _started.append(c.proc)
    if ca_from is not None:
        c.dir.mkdir(parents=True)
        for f in ("ca.crt", "ca.key", "admin.token", "token.key"):
            shutil.copy2(ca_from.dir / f, c.dir / f)
    return c


def edge_tls(edge: Edge) -> ssl.SSLContext:
    settings = edge_config.load(edge.dir / edge_config.CONFIG_FILE)
    ctx = ssl.create_default_context(cafile=str(settings.ca_path))
    ctx.load_cert_chain(str(settings.cert_path), str(settings.key_path))
    return ctx


async def handshake(cloud: Cloud, edge: Edge) -> str:
    """'accepted', or the body of the refusal of a websocket upgrade with the edge's cert."""
    url = f"wss://127.0.0.1:{cloud.ws_port}/{edge_config.DEFAULT_PROJECT}/{edge.name}/events"
    try:
        async with connect(url, ssl=edge_tls(edge), open_timeout=5):
            return "accepted"
    except InvalidStatus as exc:
        return f"{exc.response.status_code} {exc.response.body.decode(errors='replace')}"


async def refused(cloud: Cloud, edge: Edge) -> str | None:
    """The refusal, or None while the handshake is still accepted."""
    result = await handshake(cloud, edge)
    return None if result == "accepted" else result


async def test_node_deleted_through_one_replica_is_refused_by_the_others(
    tmp_path: Path, kube: KubeApi, make_edge: Callable[..., Edge]
) -> None:
    """Join via A, link to B, ``edgectl delete node`` via A: B closes the link and refuses it
    after its refresh; a replica started afterwards refuses it too."""
    a = replica(tmp_path, kube, "a")
    await a.start()
    b = replica(tmp_path, kube, "b", ca_from=a)
    await b.start()
    try:
        edge = make_edge()
        edge.join(a, ws_port=b.ws_port)  # certificate issued (and recorded) by A
        await edge.start()
        await wait_until(
            lambda: (
                kube.get("lease", "-n", "edgebridge", "edge-1")["spec"]["holderIdentity"] == "b"
            ),
            timeout=20,
        )
        a.edgectl("delete", "node", "edge-1")
        # B learns it from the shared ledger: closes the live link, refuses the next one.
        await wait_until(
            lambda: "certificate revoked; closing its link" in b.proc.text(), timeout=10
        )
        refusal = await wait_until(lambda: refused(b, edge), timeout=10, interval=0.1)
        assert refusal.startswith("403") and "revoked" in refusal
        # A replica change: both go, a new one with only the CA starts and still refuses.
        a.proc.stop()
        b.proc.stop()
        c = replica(tmp_path, kube, "c", ca_from=a)
        await c.start()
        try:
            assert "revoked" in await handshake(c, edge)
        finally:
            c.proc.stop()
    finally:
        a.proc.stop()
        b.proc.stop()
