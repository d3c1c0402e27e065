"""A pod edged runs answers `edgectl logs` and `edgectl exec` (real processes throughout)."""

from __future__ import annotations

import pytest

from tests.support.containerd import cri_endpoint, unique_node
from tests.support.pods import busybox_pod, is_running
from tests.support.procs import Cloud, Edge, MakeEdge, wait_until

pytestmark = pytest.mark.timeout(90)
__all__ = ["cri_endpoint"]


async def test_logs_and_exec_of_a_pod_edged_runs(
    cloud: Cloud, make_edge: MakeEdge, cri_endpoint: str
) -> None:
    """The pod's output comes back through the link; exec keeps streams and exit code; a pod
    of a node that is gone is one line."""
    node = unique_node()
    edge: Edge = make_edge(node, runtime_endpoint=cri_endpoint)
    edge.join(cloud)
    await edge.start()
    cloud.apply(busybox_pod("hello", node, command="echo hello from the edge; exec sleep 3600"))
    await wait_until(lambda: is_running(cloud, "hello"), timeout=30)
    await wait_until(
        lambda: cloud.run_edgectl("logs", "hello").stdout == "hello from the edge\n", timeout=15
    )
    res = cloud.run_edgectl("exec", "hello", "--", "sh", "-c", "echo out; echo err >&2; exit 4")
    assert (res.returncode, res.stdout, res.stderr) == (4, "out\n", "err\n")
    edge.proc.stop()
    await wait_until(lambda: not cloud.node_ready(node), timeout=15)
    res = cloud.run_edgectl("logs", "hello")
    assert (res.returncode, res.stderr) == (
        1,
        f"edgectl: node {node} is offline (no link to cloudhub)\n",
    )


async def test_a_node_without_a_runtime_says_so(cloud: Cloud, make_edge: MakeEdge) -> None:
    """On an edge run with --runtime none, logs and exec are one line saying why."""
    edge: Edge = make_edge("plain-node")
    edge.join(cloud)
    await edge.start()
    await wait_until(lambda: cloud.node_ready("plain-node"), timeout=15)
    cloud.apply(busybox_pod("meta", "plain-node"))
    res = cloud.run_edgectl("exec", "meta", "--", "true")
    assert res.returncode == 1
    assert res.stderr == ("edgectl: node plain-node runs pods as metadata only (--runtime none)\n")
