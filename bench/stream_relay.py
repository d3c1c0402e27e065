"""What the cloud-edge relay costs logs and exec, against the runtime called directly.

One cloudhub and one edgecore (their real compositions, in this process) and a real containerd
(``EDGEBRIDGE_CRI_ENDPOINT``, else one started by ``scripts/containerd.sh`` in a temporary
directory). A busybox pod is made through CRI with edged's labels. Measured, each ``--runs``
times (median):

- **exec**: ``head -c SIZE /dev/zero`` through the admin API's exec websocket (cloudhub ->
  link -> edgestream -> CRI ExecSync -> back through the stream window), against the same
  ExecSync called directly on the runtime by this process: the ratio is the relay's overhead.
- **logs**: the whole log of a container that wrote ``--log-mb`` MiB, through the admin API's
  log websocket, in MiB/s; against reading the same CRI log file directly here.
- **first byte**: the time from opening an exec websocket to the first output byte (a
  ``true``-like command), i.e. the round trip of a stream's open.

Figures go to stdout as ``name: value unit`` lines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import setup_logging, wait_for_condition
from edgecore import app as edge_app
from edgecore.cri import api_pb2 as pb
from edgecore.cri import labels as L
from edgecore.cri.client import CriClient
from edgecore.edgestream.cri import CriRuntime
from edgecore.edgestream.logfile import LogFile
from tests.support.inproc import join_local_edge, start_cloud
from wire import channels

log = logging.getLogger("bench.stream_relay")
ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


@contextlib.asynccontextmanager
async def containerd(tmp: Path) -> AsyncIterator[str]:
    given = os.environ.get("EDGEBRIDGE_CRI_ENDPOINT")
    if given:
        yield given
        return
    directory = tmp / "ctd"
    script = str(ROOT / "scripts/containerd.sh")
    started = await asyncio.to_thread(
        subprocess.run,
        [script, "start", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        await asyncio.to_thread(
            subprocess.run, [script, "stop", str(directory)], capture_output=True
        )


async def run_pod(cri: CriClient, node: str, logs: Path, script: str) -> str:
    uid = str(uuid.uuid4())
    sandbox = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name="bench", uid=uid, namespace="default"),
        log_directory=str(L.pod_log_directory(logs, "default", "bench", uid)),
        labels=L.sandbox_labels(node, "default", "bench", uid),
        linux=pb.LinuxPodSandboxConfig(),
    )
    sandbox_id = await cri.run_pod_sandbox(sandbox)
    config = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name="app"),
        image=pb.ImageSpec(image="busybox"),
        command=["sh", "-c", script],
        labels=L.container_labels(node, "default", "bench", uid, "app"),
        log_path=L.container_log_path("app", 0),
    )
    cid = await cri.create_container(sandbox_id, config, sandbox)
    await cri.start_container(cid)
    return cid


async def channel_bytes(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], ctx: ssl.SSLContext
) -> tuple[int, float]:
    """Bytes of stdout a channel-protocol websocket delivered, and seconds to the first."""
    total, first = 0, 0.0
    started = time.perf_counter()
    async with session.ws_connect(
        url, ssl=ctx, headers=headers, protocols=channels.PROTOCOLS, max_msg_size=0
    ) as ws:
        async for msg in ws:
            channel, data = channels.parse_frame(msg.data)
            if channel == channels.STDOUT and data:
                if not total:
                    first = time.perf_counter() - started
                total += len(data)
            elif channel == channels.ERROR:
                break
    return total, first


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="stream-bench-") as tmp_name:
        tmp = Path(tmp_name)
        async with containerd(tmp) as endpoint:
            await measure(args, tmp, endpoint)


async def measure(args: argparse.Namespace, tmp: Path, endpoint: str) -> None:
    node = f"bench-{uuid.uuid4().hex[:6]}"
    cloud = await start_cloud(tmp / "cloud")
    cri = CriClient(endpoint)
    edge = None
    try:
        settings = await join_local_edge(cloud, node, tmp / node)
        edge = await edge_app.start(
            settings, stream_runtime=CriRuntime(CriClient(endpoint), node_name=node)
        )
        log_bytes = args.log_mb * MIB
        script = f"head -c {log_bytes // 2} /dev/zero | od -v -An -tx1; exec sleep 3600"
        cid = await run_pod(cri, node, tmp / "logs", script)
        await cloud.store.apply(
            [
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": "bench", "namespace": "default"},
                    "spec": {"nodeName": node, "containers": [{"name": "app", "image": "x"}]},
                }
            ]
        )
        await wait_for_condition(lambda: node in cloud.hub.sessions, timeout=30)
        log_path = (await cri.container_status(cid)).log_path
        # od writes about 3 characters per byte read: the log outgrows log_bytes
        await wait_for_condition(lambda: _size(log_path) >= log_bytes, timeout=120)
        size = args.exec_mb * MIB
        base = f"https://127.0.0.1:{cloud.https_port}/admin/v1/pods/default/bench"
        headers = {"Authorization": f"Bearer {cloud.authority.admin_token}"}
        ctx = ssl.create_default_context(cadata=cloud.authority.ca_pem.decode())
        direct, relayed, firsts, log_direct, log_relayed = [], [], [], [], []
        async with aiohttp.ClientSession() as session:
            for run in range(args.runs):
                t0 = time.perf_counter()
                res = await cri.exec_sync(cid, ["head", "-c", str(size), "/dev/zero"])
                direct.append(time.perf_counter() - t0)
                assert len(res.stdout) == size
                t0 = time.perf_counter()
                got, _ = await channel_bytes(
                    session, f"{base}/exec?command=head&command=-c&command={size}"
                    "&command=/dev/zero", headers, ctx
                )  # fmt: skip
                relayed.append(time.perf_counter() - t0)
                assert got == size, (got, size)
                _, first = await channel_bytes(
                    session, f"{base}/exec?command=echo&command=x", headers, ctx
                )
                firsts.append(first)
                t0 = time.perf_counter()
                direct_bytes = sum(
                    len(e.message) for block in LogFile(log_path).lines() for e in block
                )
                log_direct.append(direct_bytes / MIB / (time.perf_counter() - t0))
                t0 = time.perf_counter()
                got, _ = await channel_bytes(session, f"{base}/log", headers, ctx)
                log_relayed.append(got / MIB / (time.perf_counter() - t0))
                log.info("run %d done", run + 1)
    finally:
        if edge is not None:
            await edge.stop()
        await cloud.stop()
        for sandbox in await cri.list_pod_sandbox(labels=L.managed_selector(node)):
            await cri.stop_pod_sandbox(sandbox.id)
            await cri.remove_pod_sandbox(sandbox.id)
        await cri.close()
    d, r = statistics.median(direct), statistics.median(relayed)
    print(f"exec_output: {args.exec_mb} MiB")
    print(f"exec_direct_cri: {d * 1000:.0f} ms")
    print(f"exec_relayed: {r * 1000:.0f} ms")
    print(f"exec_relay_ratio: {r / d:.2f} x")
    print(f"exec_relayed_throughput: {args.exec_mb / r:.1f} MiB/s")
    print(f"exec_first_byte: {statistics.median(firsts) * 1000:.1f} ms")
    print(f"logs_size: {_size(log_path) / MIB:.1f} MiB (file)")
    print(f"logs_direct_read: {statistics.median(log_direct):.1f} MiB/s")
    print(f"logs_relayed: {statistics.median(log_relayed):.1f} MiB/s")


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exec-mb", type=int, default=8, help="exec output per run (8 MiB)")
    parser.add_argument("--log-mb", type=int, default=16, help="log size (16 MiB)")
    parser.add_argument("--runs", type=int, default=3, help="runs; medians are shown (3)")
    args = parser.parse_args()
    setup_logging()
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
