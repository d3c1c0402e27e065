"""kubectl logs / exec of a pod on an edge: API server (emulated) -> cloudhub -> link -> edge."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import _started
from tests.support.containerd import cri_endpoint, unique_node
from tests.support.kubelet_proxy import make_client_ca
from tests.support.pods import busybox_pod
from tests.support.procs import Cloud, Edge, KubeApi, MakeEdge, wait_until

pytestmark = pytest.mark.timeout(120)
__all__ = ["cri_endpoint"]


async def test_kubectl_logs_and_exec_reach_an_edge_pod(
    tmp_path: Path, make_edge: MakeEdge, cri_endpoint: str
) -> None:
    """The Node names cloudhub as kubelet; kubectl logs prints the pod's output and kubectl
    exec returns the command's output and exit code."""
    ca, cert, key = make_client_ca(tmp_path)
    kube = KubeApi(
        tmp_path, extra=["--kubelet-client-cert", str(cert), "--kubelet-client-key", str(key)]
    )
    _started.append(kube.proc)
    await kube.start()
    cloud = Cloud(
        tmp_path,
        extra=[
            "--kubeconfig", str(kube.kubeconfig), "--replica-name", "r1",
            "--stream-address", "127.0.0.1", "--kubelet-client-ca", str(ca),
        ],
    )  # fmt: skip
    _started.append(cloud.proc)
    try:
        await cloud.start()
        node = unique_node()
        edge: Edge = make_edge(node, runtime_endpoint=cri_endpoint)
        edge.join(cloud)
        await edge.start()
        kube.kubectl(
            "apply",
            "--validate=false",
            "-f",
            "-",
            stdin=busybox_pod("hello", node, "echo hi; exec sleep 3600"),
        )

        def logs() -> str:
            return kube.kubectl("logs", "hello", check=False).stdout

        await wait_until(lambda: logs() == "hi\n", timeout=40, interval=0.5)
        res = kube.kubectl(
            "exec", "hello", "--", "sh", "-c", "echo out; echo err >&2; exit 4", check=False
        )
        assert (res.returncode, res.stdout) == (4, "out\n")
        assert res.stderr.startswith("err\n")
    finally:
        kube.proc.stop()
        cloud.proc.stop()
