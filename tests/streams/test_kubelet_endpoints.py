"""What the Kubernetes API server uses: the Node names cloudhub as its kubelet, and
cloudhub's kubelet-shaped /exec and /containerLogs answer as a kubelet would."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cloudhub.edgecontroller.kubelet import KubeletEndpoint, advertise_kubelet
from edgecore import app as edge_app
from tests.streams.conftest import QUIET, Fleet
from tests.support.inproc import join_local_edge, start_cloud
from tests.support.kubeapi import KubeApiEmulator
from tests.support.procs import wait_until
from wire import channels

pytestmark = pytest.mark.timeout(90)


def test_node_status_names_cloudhub_as_kubelet() -> None:
    """Addresses lead to cloudhub; the edge's own IPs stay as ExternalIP; the port is set."""
    reported: dict[str, Any] = {
        "addresses": [
            {"type": "InternalIP", "address": "192.0.2.10"},
            {"type": "Hostname", "address": "gw-1"},
        ],
        "capacity": {"cpu": "2"},
    }
    status = advertise_kubelet(reported, KubeletEndpoint("203.0.113.5", 10002))
    assert status["addresses"] == [
        {"type": "InternalIP", "address": "203.0.113.5"},
        {"type": "Hostname", "address": "203.0.113.5"},
        {"type": "ExternalIP", "address": "192.0.2.10"},
    ]
    assert status["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10002}}
    assert status["capacity"] == {"cpu": "2"}
    assert reported["addresses"][0]["address"] == "192.0.2.10"  # not modified


async def test_edge_node_on_a_cluster_advertises_cloudhub(tmp_path: Path) -> None:
    """In Kubernetes mode the edge's Node carries cloudhub's stream address and port."""
    async with KubeApiEmulator() as kube:
        kube.install_edgebridge()  # what cloudhub's start-up check asks for
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        cloud = await start_cloud(
            tmp_path / "cloud", kubeconfig=kubeconfig, replica="r1", stream_address="127.0.0.1"
        )
        edge = None
        try:
            settings = await join_local_edge(cloud, "gw-k8s", tmp_path / "gw-k8s")
            settings.hub.heartbeat = 0.5
            edge = await edge_app.start(settings)

            async def advertised() -> bool:
                node = await cloud.store.get("node", None, "gw-k8s")
                status = node.get("status") or {}
                return bool(
                    (status.get("daemonEndpoints") or {}).get("kubeletEndpoint")
                    == {"Port": cloud.https_port}
                    and status.get("addresses", [{}])[0]
                    == {"type": "InternalIP", "address": "127.0.0.1"}
                )

            await wait_until(advertised, timeout=20, interval=0.2)
        finally:
            if edge is not None:
                await edge.stop()
            await cloud.stop()


async def _exec_ws(
    fleet: Fleet, query: str, *, ctx: ssl.SSLContext, headers: dict[str, str]
) -> tuple[bytes, bytes, dict[str, object], str | None]:
    """Run /exec as the API server does: (stdout, stderr, status, subprotocol)."""
    url = f"https://127.0.0.1:{fleet.cloud.https_port}/exec/default/quiet/app?{query}"
    out, err, status = b"", b"", {}
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(
            url, ssl=ctx, headers=headers, protocols=channels.PROTOCOLS
        ) as ws:
            async for msg in ws:
                channel, data = channels.parse_frame(msg.data)
                if channel == channels.STDOUT:
                    out += data
                elif channel == channels.STDERR:
                    err += data
                elif channel == channels.ERROR:
                    status = json.loads(data)
            return out, err, status, ws.protocol


async def test_kubelet_exec_speaks_the_channel_protocol(fleet: Fleet) -> None:
    """/exec answers in v5.channel.k8s.io: stdout, stderr, then a Status with the exit code."""
    await fleet.run_pod("quiet", QUIET)
    ctx = ssl.create_default_context(cadata=fleet.cloud.authority.ca_pem.decode())
    admin = {"Authorization": f"Bearer {fleet.cloud.authority.admin_token}"}
    query = "command=sh&command=-c&command=echo+o%3B+echo+e+%3E%262%3B+exit+7&stdout=1&stderr=1"
    out, err, status, protocol = await _exec_ws(fleet, query, ctx=ctx, headers=admin)
    assert protocol == channels.V5
    assert (out, err) == (b"o\n", b"e\n")
    assert status["reason"] == "NonZeroExitCode"
    assert channels.read_status(json.dumps(status).encode()) == (7, "")


@pytest.mark.parametrize("fleet_settings", [{"kubelet_ca": True}], indirect=True)
async def test_the_api_servers_client_certificate_reaches_every_pod(fleet: Fleet) -> None:
    """A certificate signed by --kubelet-client-ca gets logs, as the API server would."""
    assert fleet.kubelet_client is not None
    _ca, cert, key = fleet.kubelet_client
    await fleet.run_pod("quiet", QUIET)
    ctx = ssl.create_default_context(cadata=fleet.cloud.authority.ca_pem.decode())
    ctx.load_cert_chain(str(cert), str(key))
    url = f"https://127.0.0.1:{fleet.cloud.https_port}/containerLogs/default/quiet/app"

    async def logs() -> str:
        async with aiohttp.ClientSession() as session:
            async with session.get(url, ssl=ctx) as resp:
                assert resp.status == 200
                return await resp.text()

    await wait_until(lambda: _has(logs, "oops"), timeout=20, interval=0.3)


async def _has(read: object, text: str) -> bool:
    return text in await read()  # type: ignore[operator]
