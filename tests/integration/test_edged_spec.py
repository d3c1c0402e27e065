"""The pod spec parts a gateway workload uses, on a real containerd."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecore.cri.client import CriClient
from tests.support.containerd import unique_node
from tests.support.pods import busybox_pod, container_status, is_running, pod_status, runtime_state
from tests.support.procs import Cloud, Edge, MakeEdge, wait_until

pytestmark = pytest.mark.timeout(120)

CONFIG = """
apiVersion: v1
kind: ConfigMap
metadata: {{name: app-config, namespace: default}}
data: {{LEVEL: "{level}", "app.conf": "mode={level}"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: app-secret, namespace: default}}
data: {{password: c2VjcmV0}}
"""


def volumes_pod(node: str, host_dir: Path) -> str:
    extra = f"""
    env:
    - name: LEVEL
      valueFrom: {{configMapKeyRef: {{name: app-config, key: LEVEL}}}}
    - name: PASS
      valueFrom: {{secretKeyRef: {{name: app-secret, key: password}}}}
    volumeMounts:
    - {{name: conf, mountPath: /etc/conf}}
    - {{name: sec, mountPath: /etc/sec, readOnly: true}}
    - {{name: scratch, mountPath: /scratch}}
    - {{name: host, mountPath: /host}}
    resources: {{limits: {{cpu: 250m, memory: 64Mi}}}}
  volumes:
  - {{name: conf, configMap: {{name: app-config}}}}
  - {{name: sec, secret: {{secretName: app-secret}}}}
  - {{name: scratch, emptyDir: {{}}}}
  - {{name: host, hostPath: {{path: {host_dir}, type: DirectoryOrCreate}}}}
"""
    return busybox_pod("vols", node, "echo hi > /host/from-pod; exec sleep 3600", extra=extra)


async def _exec(endpoint: str, node: str, cmd: str) -> str:
    _boxes, containers = await runtime_state(endpoint, node)
    async with CriClient(endpoint) as cri:
        res = await cri.exec_sync(containers[0].id, ["sh", "-c", cmd], timeout_seconds=5)
    return res.stdout.decode().strip()


async def _edge(cloud: Cloud, make_edge: MakeEdge, endpoint: str) -> str:
    node = unique_node()
    edge: Edge = make_edge(node, runtime_endpoint=endpoint)
    edge.join(cloud)
    await edge.start()
    return node


async def test_env_and_volumes(
    cloud: Cloud, make_edge: MakeEdge, cri_endpoint: str, tmp_path: Path
) -> None:
    """env valueFrom; configMap/secret/emptyDir/hostPath mounts (a configmap edit shows in
    place); cpu and memory limits applied by the runtime."""
    node = await _edge(cloud, make_edge, cri_endpoint)
    cloud.apply(CONFIG.format(level="1"))
    cloud.apply(volumes_pod(node, tmp_path / "host"))
    await wait_until(lambda: is_running(cloud, "vols"), timeout=30)
    out = await _exec(
        cri_endpoint,
        node,
        "echo $LEVEL $PASS; cat /etc/conf/app.conf; echo; cat /etc/sec/password; echo; "
        "touch /scratch/x && echo ok",
    )
    assert out.split() == ["1", "secret", "mode=1", "secret", "ok"]
    assert (tmp_path / "host" / "from-pod").read_text() == "hi\n"
    limits = await _exec(
        cri_endpoint,
        node,
        "cd /sys/fs/cgroup; if [ -f cpu.max ]; then cut -d' ' -f1 cpu.max; cat memory.max; "
        "else cat cpu/cpu.cfs_quota_us memory/memory.limit_in_bytes; fi",  # cgroup v2 / v1
    )
    assert limits.split() == ["25000", str(64 * 2**20)]
    ids = {c.id for c in (await runtime_state(cri_endpoint, node))[1]}
    cloud.apply(CONFIG.format(level="2"))

    async def edited() -> bool:
        return await _exec(cri_endpoint, node, "cat /etc/conf/app.conf") == "mode=2"

    await wait_until(edited, timeout=15)
    assert {c.id for c in (await runtime_state(cri_endpoint, node))[1]} == ids


async def test_missing_key_and_oom_show_their_reason(
    cloud: Cloud, make_edge: MakeEdge, cri_endpoint: str
) -> None:
    """A missing configmap key is CreateContainerConfigError; over its memory limit, OOMKilled."""
    node = await _edge(cloud, make_edge, cri_endpoint)
    cloud.apply(CONFIG.format(level="1"))
    missing = """
    env:
    - name: X
      valueFrom: {configMapKeyRef: {name: app-config, key: NOPE}}
"""
    cloud.apply(busybox_pod("nokey", node, extra=missing))
    hog = """
    resources: {limits: {memory: 16Mi, cpu: 500m}}
"""
    cloud.apply(
        busybox_pod(
            "hog",
            node,
            # grows until the limit stops it, after a second: a process OOM-killed in its first
            # milliseconds can beat the runtime's OOM watch, and containerd then says Error (to
            # kubelet too)
            "sleep 1; exec awk 'BEGIN{s=\"a\"; while(1) s=s s}'",
            restart="Never",
            extra=hog,
        )
    )

    def waiting_reason(name: str) -> str:
        return str(
            ((container_status(cloud, name).get("state") or {}).get("waiting") or {}).get("reason")
        )

    await wait_until(lambda: waiting_reason("nokey") == "CreateContainerConfigError", timeout=30)
    assert (
        "couldn't find key NOPE" in container_status(cloud, "nokey")["state"]["waiting"]["message"]
    )

    def oom() -> bool:
        term = (container_status(cloud, "hog").get("state") or {}).get("terminated") or {}
        return term.get("reason") == "OOMKilled"

    try:
        await wait_until(oom, timeout=30)
    except AssertionError as exc:
        raise AssertionError(str(container_status(cloud, "hog"))) from exc
    assert pod_status(cloud, "hog")["phase"] == "Failed"


async def test_host_network_and_probes(
    cloud: Cloud, make_edge: MakeEdge, cri_endpoint: str
) -> None:
    """hostNetwork: podIP is the node's; readiness (httpGet) gates Ready; liveness restarts."""
    node = await _edge(cloud, make_edge, cri_endpoint)
    cloud.apply(busybox_pod("host", node, extra="  hostNetwork: true\n"))
    probes = """
    readinessProbe:
      httpGet: {path: /index.html, port: 8080}
      periodSeconds: 1
    livenessProbe:
      exec: {command: [sh, -c, "test ! -f /tmp/die"]}
      periodSeconds: 1
      failureThreshold: 1
"""
    serve = "mkdir -p /www; httpd -f -p 8080 -h /www"
    cloud.apply(busybox_pod("probed", node, serve, extra=probes))
    await wait_until(lambda: is_running(cloud, "host"), timeout=30)
    st = pod_status(cloud, "host")
    assert st["podIP"] == st["hostIP"] and st["podIP"]

    await wait_until(lambda: pod_status(cloud, "probed").get("phase") == "Running", timeout=30)
    assert container_status(cloud, "probed")["ready"] is False
    await _exec_in(cri_endpoint, node, "probed", "echo ok > /www/index.html")
    await wait_until(lambda: container_status(cloud, "probed").get("ready") is True, timeout=15)
    await _exec_in(cri_endpoint, node, "probed", "touch /tmp/die")
    await wait_until(lambda: container_status(cloud, "probed").get("restartCount") == 1, timeout=40)


async def _exec_in(endpoint: str, node: str, pod: str, cmd: str) -> None:
    boxes, containers = await runtime_state(endpoint, node)
    sandbox = next(sb.id for sb in boxes if sb.metadata.name == pod)
    cid = next(c.id for c in containers if c.pod_sandbox_id == sandbox and c.state == 1)
    async with CriClient(endpoint) as cri:
        res = await cri.exec_sync(cid, ["sh", "-c", cmd], timeout_seconds=5)
    assert res.exit_code == 0, res.stderr


async def test_delete_sends_sigterm_and_honours_the_grace_period(
    cloud: Cloud, make_edge: MakeEdge, cri_endpoint: str, tmp_path: Path
) -> None:
    """A deleted pod's container gets SIGTERM first; it and its sandbox are gone in time."""
    node = await _edge(cloud, make_edge, cri_endpoint)
    host = tmp_path / "grace"
    extra = f"""
    volumeMounts:
    - {{name: host, mountPath: /host}}
  volumes:
  - {{name: host, hostPath: {{path: {host}, type: DirectoryOrCreate}}}}
"""
    command = "trap 'echo term > /host/got; exit 0' TERM; while true; do sleep 0.1; done"
    manifest = busybox_pod("graceful", node, command, extra=extra).replace(
        "terminationGracePeriodSeconds: 1", "terminationGracePeriodSeconds: 5"
    )
    cloud.apply(manifest)
    await wait_until(lambda: is_running(cloud, "graceful"), timeout=30)
    cloud.edgectl("delete", "pod", "graceful")

    async def gone() -> bool:
        boxes, containers = await runtime_state(cri_endpoint, node)
        return not boxes and not containers

    await wait_until(gone, timeout=5 + 5)
    assert (host / "got").read_text() == "term\n"
