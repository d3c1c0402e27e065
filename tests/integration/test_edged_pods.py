"""Pods bound to an edge really run there (real cloudhub, edgecore and containerd)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.support.containerd import unique_node
from tests.support.procs import Cloud, Edge, wait_until

pytestmark = pytest.mark.timeout(90)


def busybox_pod(
    name: str, node: str, command: str = "echo started; exec sleep 3600", **kw: Any
) -> str:
    policy = kw.get("restart", "Always")
    return f"""
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: default
spec:
  nodeName: {node}
  restartPolicy: {policy}
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {kw.get("image", "busybox")}
    imagePullPolicy: {kw.get("pull", "IfNotPresent")}
    command: ["sh", "-c", {json.dumps(command)}]
"""


def pod_status(cloud: Cloud, name: str) -> dict[str, Any]:
    obj = cloud.get_json("pods", name)
    status: dict[str, Any] = obj.get("status") or {}
    return status


def container_state(cloud: Cloud, name: str) -> dict[str, Any]:
    statuses = pod_status(cloud, name).get("containerStatuses") or [{}]
    return statuses[0]


def crictl_sandboxes(endpoint: str, node: str) -> int:
    """How many sandboxes of ``node`` the runtime has (through the CRI client, not ctr)."""
    code = (
        "import asyncio,sys\n"
        "from edgecore.edged.cri.client import CriClient\n"
        "from edgecore.edged.labels import managed_selector\n"
        "async def m():\n"
        f"  async with CriClient({endpoint!r}) as c:\n"
        f"    print(len(await c.list_pod_sandbox(labels=managed_selector({node!r}))))\n"
        "asyncio.run(m())\n"
    )
    out = subprocess.run(["python", "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


async def test_a_pod_runs_and_reports_kubelet_status(
    cloud: Cloud, make_edge, cri_endpoint: str
) -> None:  # type: ignore[no-untyped-def]
    """Applied with nodeName, a busybox pod runs; its status is a kubelet's; delete removes it."""
    node = unique_node()
    edge: Edge = make_edge(node, runtime_endpoint=cri_endpoint)
    edge.join(cloud)
    await edge.start()
    cloud.apply(busybox_pod("web", node))

    def running() -> bool:
        st = pod_status(cloud, "web")
        return st.get("phase") == "Running" and container_state(cloud, "web").get("ready") is True

    await wait_until(running, timeout=30)
    st = pod_status(cloud, "web")
    cs = st["containerStatuses"][0]
    assert cs["containerID"].startswith("containerd://")
    assert "running" in cs["state"] and cs["restartCount"] == 0
    assert st["podIP"].startswith("10.")
    assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "True"
    assert st["startTime"]
    log = next((edge.dir / "pod-logs").glob("default_web_*/app/0.log"))
    assert "started" in log.read_text()

    cloud.edgectl("delete", "pod", "web")
    await wait_until(lambda: crictl_sandboxes(cri_endpoint, node) == 0, timeout=15)


async def test_bad_input_shows_in_status(cloud: Cloud, make_edge, cri_endpoint: str) -> None:  # type: ignore[no-untyped-def]
    """A missing image and a command that exits at once each show their reason."""
    node = unique_node()
    edge: Edge = make_edge(node, runtime_endpoint=cri_endpoint)
    edge.join(cloud)
    await edge.start()
    cloud.apply(busybox_pod("noimage", node, image="registry.invalid/none:1", pull="IfNotPresent"))
    cloud.apply(busybox_pod("crash", node, command="echo bye; exit 3"))

    def waiting(name: str, reasons: set[str]) -> bool:
        state = container_state(cloud, name).get("state") or {}
        return (state.get("waiting") or {}).get("reason") in reasons

    await wait_until(lambda: waiting("noimage", {"ErrImagePull", "ImagePullBackOff"}), timeout=30)
    msg = container_state(cloud, "noimage")["state"]["waiting"]["message"]
    assert "registry.invalid" in msg
    await wait_until(lambda: waiting("crash", {"CrashLoopBackOff"}), timeout=30)
    last = container_state(cloud, "crash")["lastState"]["terminated"]
    assert last["exitCode"] == 3 and last["reason"] == "Error"
