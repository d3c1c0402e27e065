"""Pods that run: apply -> Running through edgebridge, against the same pods started over CRI.

What it answers (issue 15): how much does edgebridge add to starting a pod on a gateway box,
what does an edgecore running 50 pods cost when idle, and what does ``kill -9`` of edgecore
cost with 50 pods running.

The run, all real processes on 127.0.0.1: a private containerd (``scripts/containerd.sh``, or
``--endpoint`` for one already running), cloudhub (embedded store) and one edgecore with
``--runtime cri``. For each count in ``--counts`` (1, 10, 50):

1. **direct CRI** (the baseline, same process tree, same runtime): the bench itself creates
   each pod's sandbox and container with edged's own CRI configs and starts them, all pods at
   once; a pod's time is from the start of the batch to its container running;
2. **edgebridge**: one ``apply`` of the pods (``spec.nodeName`` = the edge); a pod's time is
   from the apply to the cloud showing it ``Running`` with its container ready (the status a
   kubelet would write, sent up by edged); the pods are then deleted and the bench waits until
   the runtime has none left.

The ratio of the two p50s (and p99s) at 50 pods is edgebridge's overhead (target <= 1.3).
Then 50 pods are left running: edgecore's RSS and CPU over ``--idle`` seconds against the same
with no pods (targets: +15 MB at most, 1 % of a core at most); then ``kill -9`` of edgecore and
a restart: how many containers were restarted (target 0) and the time until edged reported
having re-adopted them and its status outbox was empty again (every pod's status answered by
the cloud). Run ``python bench/pod_start.py --help``; needs root and containerd.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cloud import Admin, CloudHub
from bench.common import REPO_ROOT, finish_workdir, setup_logging, wait_for_condition
from bench.measure import Figures, cpu_seconds, percentile, rss_kib, run_benchmark
from bench.twin_parts import EdgeCore
from edgecore.cri import api_pb2 as pb
from edgecore.cri import labels
from edgecore.cri.client import CriClient
from edgecore.edged import configs
from edgecore.edged.podspec import parse_pod

log = logging.getLogger(__name__)

NODE = "bench-edge"
DIRECT_NODE = "bench-direct"
COMMAND = ["sh", "-c", "exec sleep 3600"]


def pod_object(name: str, node: str = NODE) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "app",
                    "image": "busybox",
                    "imagePullPolicy": "IfNotPresent",
                    "command": COMMAND,
                }
            ],
        },
    }


async def direct_start(cri: CriClient, count: int, log_dir: Path) -> list[float]:
    """Start ``count`` pods straight through CRI (edged's configs); each pod's seconds."""
    image = await cri.image_status("busybox")
    assert image is not None, "busybox is not in the runtime (scripts/build-images.sh)"
    t0 = time.monotonic()

    async def one(i: int) -> float:
        obj = pod_object(f"direct-{i}", DIRECT_NODE)
        obj["metadata"]["uid"] = str(uuid.uuid4())
        pod = parse_pod(obj)
        sb_config = configs.sandbox_config(
            pod, node_name=DIRECT_NODE, pod_log_dir=log_dir, attempt=0
        )
        sid = await cri.run_pod_sandbox(sb_config)
        config = configs.container_config(
            pod,
            pod.spec.containers[0],
            node_name=DIRECT_NODE,
            attempt=0,
            image_ref=image.id,
            env=[],
            mounts=[],
        )
        cid = await cri.create_container(sid, config, sb_config)
        await cri.start_container(cid)
        return time.monotonic() - t0

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def remove_all(cri: CriClient, node: str) -> None:
    for sb in await cri.list_pod_sandbox(labels=labels.managed_selector(node)):
        await cri.stop_pod_sandbox(sb.id)
        await cri.remove_pod_sandbox(sb.id)


def running_names(items: list[dict[str, Any]]) -> set[str]:
    out = set()
    for p in items:
        st = p.get("status") or {}
        cs = st.get("containerStatuses") or []
        if st.get("phase") == "Running" and cs and all(c.get("ready") for c in cs):
            out.add(p["metadata"]["name"])
    return out


async def edgebridge_start(admin: Admin, count: int, prefix: str) -> list[float]:
    """Apply ``count`` pods; seconds from the apply until the cloud shows each Running."""
    names = [f"{prefix}-{i}" for i in range(count)]
    t0 = time.monotonic()
    await admin.apply([pod_object(n) for n in names])
    seen: dict[str, float] = {}
    deadline = t0 + 120
    while len(seen) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(seen)}/{count} pods Running after 120 s")
        now = time.monotonic()
        for name in running_names(await admin.list("pods")) & set(names):
            seen.setdefault(name, now - t0)
        await asyncio.sleep(0.02)
    return [seen[n] for n in names]


async def delete_pods(admin: Admin, cri: CriClient, prefix: str, count: int) -> None:
    await asyncio.gather(*(admin.delete("pods", "default", f"{prefix}-{i}") for i in range(count)))

    await _until_no_sandboxes(cri, NODE, "the deleted pods")


async def idle_cost(edge: EdgeCore, seconds: float) -> tuple[float, float]:
    """(RSS MiB, CPU % of one core) of the edgecore process over ``seconds`` idle."""
    c0, t0 = cpu_seconds(edge.pid), time.monotonic()
    await asyncio.sleep(seconds)
    c1, t1 = cpu_seconds(edge.pid), time.monotonic()
    return rss_kib(edge.pid) / 1024, 100 * (c1 - c0) / (t1 - t0)


def _since_restart(edge: EdgeCore) -> str:
    return edge.log_path.read_text(errors="replace").split("edged: first sync")[-1]


def outbox_rows(db: Path) -> int:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as c:
            return int(c.execute("SELECT count(*) FROM pod_status_outbox").fetchone()[0])
    except sqlite3.Error:
        return -1


async def run(args: argparse.Namespace, fig: Figures) -> bool:
    workdir = Path(tempfile.mkdtemp(prefix="edgebridge-pod-start-", dir=args.workdir))
    ctd_dir = workdir / "ctd"
    endpoint = args.endpoint
    if endpoint is None:
        out = await asyncio.to_thread(
            subprocess.run,
            [str(REPO_ROOT / "scripts" / "containerd.sh"), "start", str(ctd_dir)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"containerd did not start: {out.stderr.strip()}")
        endpoint = out.stdout.strip().splitlines()[-1]
    hub = CloudHub(workdir=workdir)
    edge = EdgeCore(
        workdir=workdir,
        node=NODE,
        extra_args=[
            "--runtime", "cri",
            "--runtime-endpoint", endpoint,
            "--pod-log-dir", str(workdir / "pod-logs"),
        ],
    )  # fmt: skip
    ok = True
    cri = CriClient(endpoint)
    try:
        await hub.start()
        admin = Admin.for_hub(hub)
        try:
            await edge.join_with(admin, hub)
            await edge.start()
            await admin.apply([pod_object("warm-up")])
            await wait_for_condition(
                lambda: edge.log_path.read_text().count("container app started") >= 1,
                timeout=60,
                what="warm-up pod",
            )
            await admin.delete("pods", "default", "warm-up")
            await _until_no_sandboxes(cri, NODE, "the warm-up pod")
            rss0, cpu0 = await idle_cost(edge, args.idle)
            top = max(args.counts)
            for n in args.counts:
                # direct and edgebridge alternate, --repeat times: on a shared box the load
                # changes from one minute to the next, and both see the same share of it
                direct: list[float] = []
                bridged: list[float] = []
                for r in range(args.repeat):
                    direct += await direct_start(cri, n, workdir / "direct-logs")
                    await remove_all(cri, DIRECT_NODE)
                    bridged += await edgebridge_start(admin, n, f"p{n}r{r}")
                    if n != top or r != args.repeat - 1:
                        await delete_pods(admin, cri, f"p{n}r{r}", n)
                for label, values in (("direct_cri", direct), ("edgebridge", bridged)):
                    fig.add(f"{label}_{n}_pods_p50", percentile(values, 50) * 1000, "ms")
                    fig.add(f"{label}_{n}_pods_p99", percentile(values, 99) * 1000, "ms")
                fig.ratio(f"ratio_{n}_pods_p50", percentile(bridged, 50), percentile(direct, 50))
                fig.ratio(f"ratio_{n}_pods_p99", percentile(bridged, 99), percentile(direct, 99))
            rss1, cpu1 = await idle_cost(edge, args.idle)
            fig.add("edgecore_rss_no_pods", rss0, "MiB")
            fig.add(f"edgecore_rss_{top}_pods", rss1, "MiB")
            fig.add("edgecore_rss_added", rss1 - rss0, "MiB (target <= 15)")
            fig.add("edgecore_cpu_idle_no_pods", cpu0, "% of a core", digits=2)
            fig.add(f"edgecore_cpu_idle_{top}_pods", cpu1, "% of a core (target <= 1)", digits=2)

            before = {
                c.id
                for c in await cri.list_containers(labels=labels.managed_selector(NODE))
                if c.state == pb.CONTAINER_RUNNING
            }
            edge.kill9()
            t0 = time.monotonic()
            await edge.start()
            await wait_for_condition(
                lambda: edge.log_path.read_text().count("edged: first sync") >= 2,
                timeout=60,
                what="re-adoption",
            )
            readopted = time.monotonic() - t0
            await wait_for_condition(
                lambda: (
                    "the cloud has the status of every pod" in _since_restart(edge)
                    and outbox_rows(edge.db_path) == 0
                ),
                timeout=60,
                what="status reported",
            )
            reported = time.monotonic() - t0
            after = {
                c.id
                for c in await cri.list_containers(labels=labels.managed_selector(NODE))
                if c.state == pb.CONTAINER_RUNNING
            }
            fig.add("kill9_running_before", len(before), "containers")
            fig.add("kill9_restarted", len(before - after), "containers (target 0)")
            fig.add("kill9_readopted_after", readopted * 1000, "ms (restart to first sync)")
            fig.add(
                "kill9_reported_after", reported * 1000, "ms (restart to every status answered)"
            )
            ok = len(before - after) == 0
        finally:
            await admin.close()
    finally:
        edge.stop()
        hub.stop()
        with contextlib.suppress(Exception):
            await remove_all(cri, NODE)
            await remove_all(cri, DIRECT_NODE)
        await cri.close()
        if args.endpoint is None:
            await asyncio.to_thread(
                subprocess.run,
                [str(REPO_ROOT / "scripts" / "containerd.sh"), "stop", str(ctd_dir)],
                capture_output=True, timeout=120,
            )  # fmt: skip
        finish_workdir(workdir, keep=args.keep)
    return ok


async def _until_no_sandboxes(cri: CriClient, node: str, what: str) -> None:
    deadline = time.monotonic() + 60
    while await cri.list_pod_sandbox(labels=labels.managed_selector(node)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"edged did not remove {what} within 60 s")
        await asyncio.sleep(0.05)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--counts", type=int, nargs="+", default=[1, 10, 50], help="pods per batch")
    p.add_argument("--repeat", type=int, default=2, help="alternating runs per count")
    p.add_argument("--idle", type=float, default=20.0, help="seconds of idle measurement")
    p.add_argument("--endpoint", help="an already running CRI endpoint (default: start one)")
    p.add_argument("--workdir", help="parent of the temporary directory")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--timeout", type=float, default=900.0, help="hard limit, seconds")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args()
    setup_logging(verbose=args.verbose)
    fig = Figures("pod_start: apply -> Running, edgebridge vs direct CRI")
    return run_benchmark(fig, run(args, fig), timeout=args.timeout)


if __name__ == "__main__":
    sys.exit(main())
