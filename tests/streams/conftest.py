"""A real cloudhub and edgecore (in this test's loop) with a real containerd behind the edge.

The pods' containers are made through CRI with the labels edged puts on what it runs
(:mod:`edgecore.cri.labels`), so edgestream finds them exactly as it finds edged's; the
Pod objects are applied in the cloud so that cloudhub knows their node. edgectl runs as the
user runs it: a process.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cloudhub import app as cloud_app
from edgecore import app as edge_app
from edgecore.config import EdgeSettings
from edgecore.cri import api_pb2 as pb
from edgecore.cri import labels as L
from edgecore.cri.client import CriClient
from edgecore.edgestream.cri import CriRuntime
from tests.support import procs
from tests.support.containerd import cri_endpoint, unique_node
from tests.support.inproc import join_local_edge, start_cloud
from tests.support.kubelet_proxy import make_client_ca
from tests.support.procs import wait_until

__all__ = ["cri_endpoint"]

#: prints five lines, then (once those are surely logged: stdout and stderr are two pipes,
#: logged in the order the runtime reads them) one on stderr, then nothing
QUIET = "for i in 1 2 3 4 5; do echo line $i; done; sleep 0.3; echo oops >&2; exec sleep 3600"
#: prints a numbered line every 0.2 s
TICKER = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"


@dataclass
class Fleet:
    cloud: cloud_app.CloudApp
    edge: edge_app.EdgeApp
    edge_settings: EdgeSettings
    node: str
    cri: CriClient
    tmp: Path
    #: (CA, certificate, key) of the API server's kubelet client, with ``kubelet_ca``
    kubelet_client: tuple[Path, Path, Path] | None = None

    async def edgectl(self, *args: str, timeout: float = 30) -> tuple[int, str, str]:
        """Run edgectl against this cloud: (exit code, stdout, stderr)."""
        proc = await self.start_edgectl(*args)
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def start_edgectl(self, *args: str, stdin: bool = False) -> asyncio.subprocess.Process:
        return await procs.start_edgectl(
            "--server",
            f"https://127.0.0.1:{self.cloud.https_port}",
            "--data-dir",
            str(self.tmp / "cloud"),
            *args,
            stdin=stdin,
        )

    async def run_pod(
        self, name: str, script: str, *, containers: tuple[str, ...] = ("app",)
    ) -> str:
        """Run a pod of busybox containers on the node (through CRI) and apply its Pod in the
        cloud; the first container's id."""
        uid = str(uuid.uuid4())
        sandbox = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace="default"),
            hostname=name,
            log_directory=str(L.pod_log_directory(self.tmp / "logs", "default", name, uid)),
            labels=L.sandbox_labels(self.node, "default", name, uid),
            linux=pb.LinuxPodSandboxConfig(),
        )
        sandbox_id = await self.cri.run_pod_sandbox(sandbox)
        ids = []
        for container in containers:
            config = pb.ContainerConfig(
                metadata=pb.ContainerMetadata(name=container),
                image=pb.ImageSpec(image="busybox"),
                command=["sh", "-c", script],
                labels=L.container_labels(self.node, "default", name, uid, container),
                log_path=L.container_log_path(container, 0),
            )
            cid = await self.cri.create_container(sandbox_id, config, sandbox)
            await self.cri.start_container(cid)
            ids.append(cid)
        await self.cloud.store.apply([pod_manifest(name, self.node, containers)])
        return ids[0]


def pod_manifest(name: str, node: str, containers: tuple[str, ...] = ("app",)) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node,
            "containers": [{"name": c, "image": "busybox"} for c in containers],
        },
    }


@pytest.fixture
def fleet_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Options of :func:`fleet` (parametrize indirectly): ``kubelet_ca`` gives cloudhub a
    --kubelet-client-ca and the fleet a client certificate it signed."""
    return dict(getattr(request, "param", {}))


@pytest.fixture
async def fleet(
    cri_endpoint: str, tmp_path: Path, fleet_settings: dict[str, Any]
) -> AsyncIterator[Fleet]:
    """cloudhub + one connected edge (serving streams from containerd), no pods yet."""
    node = unique_node("streams")
    kubelet_client = make_client_ca(tmp_path) if fleet_settings.get("kubelet_ca") else None
    cloud = await start_cloud(
        tmp_path / "cloud", kubelet_client_ca=kubelet_client[0] if kubelet_client else None
    )
    cri = CriClient(cri_endpoint)
    edge: edge_app.EdgeApp | None = None
    try:
        settings = await join_local_edge(cloud, node, tmp_path / node)
        settings.hub.heartbeat = 0.5
        settings.hub.reconnect_initial = 0.05
        settings.hub.reconnect_cap = 0.5
        runtime = CriRuntime(CriClient(cri_endpoint), node_name=node)  # edgestream closes it
        edge = await edge_app.start(settings, stream_runtime=runtime)
        await wait_until(lambda: node in cloud.hub.sessions, timeout=10)
        yield Fleet(cloud, edge, settings, node, cri, tmp_path, kubelet_client)
    finally:
        if edge is not None and not edge.stopped.is_set():
            await edge.stop()
        await cloud.stop()
        await _remove_pods(cri, node)
        await cri.close()


async def _remove_pods(cri: CriClient, node: str) -> None:
    for sandbox in await cri.list_pod_sandbox(labels=L.managed_selector(node)):
        for container in await cri.list_containers(sandbox_id=sandbox.id):
            await cri.stop_container(container.id, 0)
            await cri.remove_container(container.id)
        await cri.stop_pod_sandbox(sandbox.id)
        await cri.remove_pod_sandbox(sandbox.id)


def stream_tasks() -> list[asyncio.Task[Any]]:
    """edgestream's stream tasks running in this loop."""
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("edgestream:")]
