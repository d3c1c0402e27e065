"""Pod manifests and views of the runtime for the edged integration tests."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgecore.cri import api_pb2 as pb
from edgecore.cri.client import CriClient
from edgecore.cri.labels import managed_selector
from tests.support.procs import Cloud


def busybox_pod(
    name: str,
    node: str,
    command: str = "echo started; exec sleep 3600",
    *,
    image: str = "busybox",
    pull: str = "IfNotPresent",
    restart: str = "Always",
    extra: str = "",
) -> str:
    """A one-container busybox pod bound to ``node`` (grace period 1 s)."""
    return f"""
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: default
spec:
  nodeName: {node}
  restartPolicy: {restart}
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {image}
    imagePullPolicy: {pull}
    command: ["sh", "-c", {json.dumps(command)}]
{extra}"""


def pod_status(cloud: Cloud, name: str) -> dict[str, Any]:
    status: dict[str, Any] = cloud.get_json("pods", name).get("status") or {}
    return status


def container_status(cloud: Cloud, name: str) -> dict[str, Any]:
    statuses = pod_status(cloud, name).get("containerStatuses") or [{}]
    first: dict[str, Any] = statuses[0]
    return first


def is_running(cloud: Cloud, name: str) -> bool:
    """Phase Running and the (first) container ready."""
    return pod_status(cloud, name).get("phase") == "Running" and bool(
        container_status(cloud, name).get("ready")
    )


async def runtime_state(endpoint: str, node: str) -> tuple[list[pb.PodSandbox], list[pb.Container]]:
    """The sandboxes and containers edged of ``node`` has in the runtime."""
    async with CriClient(endpoint) as cri:
        sel = managed_selector(node)
        return await cri.list_pod_sandbox(labels=sel), await cri.list_containers(labels=sel)


async def running_ids(endpoint: str, node: str) -> set[str]:
    _boxes, containers = await runtime_state(endpoint, node)
    return {c.id for c in containers if c.state == pb.CONTAINER_RUNNING}


async def remove_node_pods(endpoint: str, node: str) -> None:
    """Remove every sandbox (and so container) edged of ``node`` left in the runtime."""
    async with CriClient(endpoint) as cri:
        for sb in await cri.list_pod_sandbox(labels=managed_selector(node)):
            await cri.stop_pod_sandbox(sb.id)
            await cri.remove_pod_sandbox(sb.id)


def cleanup_in_subprocess(endpoint: str, node: str) -> None:
    """:func:`remove_node_pods` from synchronous teardown code (no event loop needed)."""
    subprocess.run(
        [sys.executable, "-m", "tests.support.pods", endpoint, node],
        capture_output=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )


if __name__ == "__main__":
    asyncio.run(remove_node_pods(sys.argv[1], sys.argv[2]))
