"""cloudhub on a (emulated) Kubernetes API: Nodes, heartbeats, kubectl-applied pods, replicas."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import _started
from tests.integration.manifests import bundle, configmap
from tests.support.procs import CRDS, Cloud, Edge, KubeApi, MakeEdge, wait_until
from tests.support.proxy import FaultProxy

pytestmark = pytest.mark.timeout(120)

POD = "/api/v1/namespaces/default/pods/web"
CM = "/api/v1/namespaces/default/configmaps/web-config"


async def cluster_cloud(tmp_path: Path, kube: KubeApi, name: str, **kw: Any) -> Cloud:
    c = Cloud(
        tmp_path,
        name=name,
        extra=["--kubeconfig", str(kube.kubeconfig), "--replica-name", name, *kw.pop("extra", [])],
        **kw,
    )
    _started.append(c.proc)
    return c


def condition(node: dict[str, Any], kind: str) -> dict[str, Any]:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return c  # type: ignore[no-any-return]
    return {}


def ready(node: dict[str, Any]) -> bool:
    return condition(node, "Ready").get("status") == "True"


def holder(kube: KubeApi, node: str) -> str:
    """Which replica holds the node's ownership lease."""
    return str(kube.get("lease", "-n", "edgebridge", node)["spec"]["holderIdentity"])


async def test_edge_becomes_a_ready_node_and_kubectl_pods_reach_it(
    tmp_path: Path, kube: KubeApi, make_edge: MakeEdge
) -> None:
    """A joined edge is a labelled, Ready Node with a renewed Lease; kubectl pods reach it."""
    cloud = await cluster_cloud(tmp_path, kube, "a")
    await cloud.start()
    try:
        edge: Edge = make_edge()
        edge.join(cloud)
        await edge.start()
        await wait_until(
            lambda: condition(kube.get("node", "edge-1"), "Ready").get("status") == "True",
            timeout=20,
        )
        node = kube.get("node", "edge-1")
        labels = node["metadata"]["labels"]
        assert labels["node-role.kubernetes.io/edge"] == ""
        assert labels["kubernetes.io/hostname"] == "edge-1"
        await wait_until(
            lambda: "kubernetes.io/arch" in kube.get("node", "edge-1")["metadata"]["labels"]
        )
        await wait_until(lambda: "capacity" in kube.get("node", "edge-1").get("status", {}))
        lease = kube.get("lease", "-n", "kube-node-lease", "edge-1")
        assert lease["spec"]["holderIdentity"] == "edge-1"
        kube.kubectl("apply", "--validate=false", "-f", "-", stdin=bundle())
        await wait_until(lambda: edge.has(POD) and edge.has(CM), timeout=10)
        kube.kubectl("apply", "--validate=false", "-f", "-", stdin=configmap(value="from-kubectl"))
        await wait_until(lambda: edge.get(CM)[1]["data"]["LEVEL"] == "from-kubectl")
        kube.kubectl("delete", "pod", "web")
        await wait_until(lambda: edge.gone(POD) and edge.gone(CM))
        # edgectl works unchanged against the cluster
        assert cloud.node_ready("edge-1")
    finally:
        cloud.proc.stop()


async def test_cloudhub_on_a_cluster_without_crds_exits_with_the_fix(tmp_path: Path) -> None:
    """README's "From outside the cluster" without the CRDs: exit 1, one line naming them."""
    kube = KubeApi(tmp_path)
    _started.append(kube.proc)
    await kube.start(crds=False)
    cloud: Cloud | None = None
    try:
        cloud = await cluster_cloud(tmp_path, kube, "a")
        cloud.proc.start()
        assert cloud.proc.popen is not None
        assert cloud.proc.popen.wait(30) == 1
        lines = [ln for ln in cloud.proc.text().splitlines() if ln.startswith("cloudhub:")]
        assert len(lines) == 1 and "kubectl apply -f deploy/crds/" in lines[0]
        assert "Traceback" not in cloud.proc.text()
        kube.kubectl("apply", "--validate=false", "-f", str(CRDS))
        await cloud.start()  # the fix named works
        assert kube.get("namespace", "edgebridge")["metadata"]["name"] == "edgebridge"
    finally:
        if cloud is not None:
            cloud.proc.stop()
        kube.proc.stop()


async def test_second_replica_takes_over_a_node_after_the_first_is_killed(
    tmp_path: Path, kube: KubeApi, make_edge: MakeEdge
) -> None:
    """Killing the owning replica hands its edge to the other once the ownership lease expires."""
    a = await cluster_cloud(tmp_path, kube, "a", extra=["--owner-lease-seconds", "3"])
    await a.start()
    b = await cluster_cloud(tmp_path, kube, "b", extra=["--owner-lease-seconds", "3"])
    # replicas share one CA and admin credential, as the Deployment's Secret provides
    b.dir.mkdir(parents=True)
    for f in ("ca.crt", "ca.key", "admin.token", "token.key"):
        shutil.copy2(a.dir / f, b.dir / f)
    await b.start()
    try:
        async with FaultProxy() as lb:  # plays the Service in front of the replicas
            await lb.start("127.0.0.1", a.ws_port)
            edge: Edge = make_edge()
            # in a thread: join checks the websocket port through the proxy on this loop
            await asyncio.to_thread(edge.join, a, ws_port=lb.port)
            await edge.start()
            kube.kubectl("apply", "--validate=false", "-f", "-", stdin=bundle())
            await wait_until(lambda: edge.has(POD), timeout=15)
            assert holder(kube, "edge-1") == "a"
            a.proc.kill9()
            lb.retarget("127.0.0.1", b.ws_port)
            lb.cut()
            await wait_until(
                lambda: (
                    kube.get("lease", "-n", "edgebridge", "edge-1")["spec"]["holderIdentity"] == "b"
                ),
                timeout=30,
            )
            kube.kubectl("apply", "--validate=false", "-f", "-", stdin=configmap(value="via-b"))
            await wait_until(lambda: edge.get(CM)[1]["data"]["LEVEL"] == "via-b", timeout=15)
    finally:
        a.proc.stop()
        b.proc.stop()


async def test_events_are_cluster_events_and_metrics_count_api_calls(
    tmp_path: Path, kube: KubeApi, make_edge: MakeEdge
) -> None:
    """On a cluster, the edge's NodeReady is a core/v1 Event kubectl lists, served by the
    admin API too; /metrics counts the calls made to the Kubernetes API."""
    cloud = await cluster_cloud(tmp_path, kube, "a")
    await cloud.start()
    try:
        edge: Edge = make_edge()
        edge.join(cloud)
        await edge.start()

        def recorded() -> list[dict[str, Any]]:
            items = kube.get("events", "-n", "default")["items"]
            return [e for e in items if e.get("reason") == "NodeReady"]

        [event] = await wait_until(recorded, timeout=20)
        assert event["involvedObject"]["name"] == "edge-1"
        assert event["source"]["component"] == "edgebridge-cloudhub"
        token = (cloud.dir / "admin.token").read_text().strip()
        ctx = ssl.create_default_context(cafile=str(cloud.dir / "ca.crt"))
        base = f"https://127.0.0.1:{cloud.https_port}"

        def get(path: str) -> str:
            req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:
                return str(resp.read().decode())

        listed = json.loads(get("/admin/v1/events?kind=Node&name=edge-1"))["items"]
        assert "NodeReady" in [e["reason"] for e in listed]
        metrics = get("/metrics")
        assert 'edgebridge_cloud_kube_requests_total{method="GET"}' in metrics
        assert "edgebridge_cloud_kube_request_seconds_bucket" in metrics
    finally:
        cloud.proc.stop()
