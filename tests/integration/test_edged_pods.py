"""Pods bound to an edge really run there (real cloudhub, edgecore and containerd)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import _started
from tests.support.containerd import unique_node
from tests.support.pods import busybox_pod, container_status, is_running, pod_status, runtime_state
from tests.support.procs import Cloud, Edge, KubeApi, MakeEdge, wait_until

pytestmark = pytest.mark.timeout(90)


async def test_a_pod_runs_and_reports_kubelet_status(
    cloud: Cloud, make_edge: MakeEdge, cri_endpoint: str
) -> None:
    """A busybox pod runs with a kubelet's status; an edit replaces it; delete removes it."""
    node = unique_node()
    edge: Edge = make_edge(node, runtime_endpoint=cri_endpoint)
    edge.join(cloud)
    await edge.start()
    cloud.apply(busybox_pod("web", node))
    await wait_until(lambda: is_running(cloud, "web"), timeout=30)
    st = pod_status(cloud, "web")
    cs = st["containerStatuses"][0]
    assert cs["containerID"].startswith("containerd://")
    assert "running" in cs["state"] and cs["restartCount"] == 0
    assert st["podIP"].startswith("10.")
    assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "True"
    assert st["startTime"]
    log = next((edge.dir / "pod-logs").glob("default_web_*/app/0.log"))
    assert "started" in log.read_text()

    first = cs["containerID"]
    cloud.apply(busybox_pod("web", node, "echo edited; exec sleep 3600"))

    def replaced() -> bool:
        c = container_status(cloud, "web")
        return c.get("containerID") not in (None, first) and bool(c.get("ready"))

    await wait_until(replaced, timeout=30)
    assert container_status(cloud, "web")["restartCount"] == 1

    cloud.edgectl("delete", "pod", "web")

    async def gone() -> bool:
        boxes, containers = await runtime_state(cri_endpoint, node)
        return not boxes and not containers

    await wait_until(gone, timeout=15)


async def test_bad_input_shows_in_status(
    cloud: Cloud, make_edge: MakeEdge, cri_endpoint: str
) -> None:
    """A missing image and a command that exits at once each show their reason."""
    node = unique_node()
    edge: Edge = make_edge(node, runtime_endpoint=cri_endpoint)
    edge.join(cloud)
    await edge.start()
    cloud.apply(busybox_pod("noimage", node, image="registry.invalid/none:1", pull="IfNotPresent"))
    cloud.apply(busybox_pod("crash", node, command="echo bye; exit 3"))

    def waiting(name: str, reasons: set[str]) -> bool:
        state = container_status(cloud, name).get("state") or {}
        return (state.get("waiting") or {}).get("reason") in reasons

    await wait_until(lambda: waiting("noimage", {"ErrImagePull", "ImagePullBackOff"}), timeout=30)
    msg = container_status(cloud, "noimage")["state"]["waiting"]["message"]
    assert "registry.invalid" in msg
    await wait_until(lambda: waiting("crash", {"CrashLoopBackOff"}), timeout=30)
    last = container_status(cloud, "crash")["lastState"]["terminated"]
    assert last["exitCode"] == 3 and last["reason"] == "Error"


async def test_kubernetes_mode_pod_status_reaches_the_api(
    tmp_path: Path, make_edge: MakeEdge, cri_endpoint: str
) -> None:
    """With a cluster behind cloudhub, edged's status is written to pods/status there."""
    kube = KubeApi(tmp_path)
    _started.append(kube.proc)
    await kube.start()
    cloud = Cloud(tmp_path, name="k", extra=["--kubeconfig", str(kube.kubeconfig)])
    _started.append(cloud.proc)
    await cloud.start()
    try:
        node = unique_node()
        edge: Edge = make_edge(node, runtime_endpoint=cri_endpoint)
        edge.join(cloud)
        await edge.start()
        kube.kubectl("apply", "--validate=false", "-f", "-", stdin=busybox_pod("kweb", node))

        def running() -> bool:
            st = kube.get("pod", "kweb").get("status") or {}
            cs = st.get("containerStatuses") or [{}]
            return st.get("phase") == "Running" and bool(cs[0].get("ready"))

        await wait_until(running, timeout=40)
        cs = kube.get("pod", "kweb")["status"]["containerStatuses"][0]
        assert cs["containerID"].startswith("containerd://")
    finally:
        cloud.proc.stop()
        kube.proc.stop()
