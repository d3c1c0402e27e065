"""The CRI client against a real containerd: sandboxes, containers, labels, logs, exec."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from edgecore.cri import api_pb2 as pb
from edgecore.cri import labels as L
from edgecore.cri.client import CriClient
from tests.support.containerd import unique_node
from tests.support.procs import wait_until
from wire.errors import ContainerRuntimeError, RuntimeNotFound, RuntimeUnavailable

pytestmark = pytest.mark.timeout(60)


def _sandbox_config(node: str, name: str, uid: str, log_dir: Path) -> pb.PodSandboxConfig:
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace="default"),
        hostname=name,
        log_directory=str(L.pod_log_directory(log_dir, "default", name, uid)),
        labels=L.sandbox_labels(node, "default", name, uid),
        linux=pb.LinuxPodSandboxConfig(),
    )


async def test_sandbox_and_container_round_trip(cri_endpoint: str, tmp_path: Path) -> None:
    """A sandbox gets a CNI IP; its container runs, logs to kubelet's path, answers exec."""
    node, uid = unique_node(), str(uuid.uuid4())
    async with CriClient(cri_endpoint) as cri:
        sb_config = _sandbox_config(node, "web", uid, tmp_path)
        sandbox_id = await cri.run_pod_sandbox(sb_config)
        try:
            status = await cri.pod_sandbox_status(sandbox_id)
            assert status.status.network.ip.startswith("10.")
            found = await cri.list_pod_sandbox(labels=L.managed_selector(node))
            assert [s.id for s in found] == [sandbox_id]
            config = pb.ContainerConfig(
                metadata=pb.ContainerMetadata(name="app"),
                image=pb.ImageSpec(image="busybox"),
                command=["sh", "-c", "echo hello from $WHO; exec sleep 3600"],
                envs=[pb.KeyValue(key="WHO", value="edged")],
                labels=L.container_labels(node, "default", "web", uid, "app"),
                log_path=L.container_log_path("app", 0),
            )
            cid = await cri.create_container(sandbox_id, config, sb_config)
            await cri.start_container(cid)
            listed = await cri.list_containers(labels={**L.managed_selector(node)})
            assert [c.id for c in listed] == [cid]
            cs = await cri.container_status(cid)
            assert cs.state == pb.CONTAINER_RUNNING
            assert cs.log_path.endswith("default_web_" + uid + "/app/0.log")
            log = Path(cs.log_path)
            await wait_until(lambda: log.exists() and "hello from edged" in log.read_text())
            res = await cri.exec_sync(cid, ["sh", "-c", "echo out; echo err >&2; exit 3"])
            assert (res.stdout, res.stderr, res.exit_code) == (b"out\n", b"err\n", 3)
            url = await cri.exec(cid, ["sh"], stdin=True)
            assert url.startswith("http://127.0.0.1:")  # the runtime's own streaming server
            await cri.stop_container(cid, 0)
            assert (await cri.container_status(cid)).state == pb.CONTAINER_EXITED
            await cri.remove_container(cid)
            with pytest.raises(RuntimeNotFound):
                await cri.container_status(cid)
        finally:
            await cri.stop_pod_sandbox(sandbox_id)
            await cri.remove_pod_sandbox(sandbox_id)
        assert await cri.list_pod_sandbox(labels=L.managed_selector(node)) == []


async def test_missing_image_is_reported_with_the_runtime_reason(cri_endpoint: str) -> None:
    """A pull that cannot happen raises with the runtime's own words; status says absent."""
    async with CriClient(cri_endpoint) as cri:
        assert await cri.image_status("busybox") is not None
        assert await cri.image_status("registry.invalid/nothing:1") is None
        with pytest.raises(ContainerRuntimeError) as info:
            await cri.pull_image("registry.invalid/nothing:1")
        assert "registry.invalid" in info.value.reason


async def test_unreachable_socket_is_runtime_unavailable(tmp_path: Path) -> None:
    """A socket nobody serves is one clear error, not a gRPC traceback."""
    async with CriClient(f"unix://{tmp_path}/none.sock", timeout=2) as cri:
        with pytest.raises((RuntimeUnavailable, ContainerRuntimeError)):
            await cri.version()
