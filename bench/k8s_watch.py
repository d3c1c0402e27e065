"""Kubernetes mode against a real kube-apiserver: what one pod update costs on its way to an edge.

Why: in Kubernetes mode every change reaches cloudhub through a watch on the API server, and
stock KubeEdge's cloudcore is the yardstick (issue 19): cloud CPU per delivered update, the
API server's CPU per update, apply -> edge latency, and the cloud's RSS with a fleet
connected but idle.

The run, against the cluster named by ``--kubeconfig`` (e.g. ``/tmp/hk8s-realk8s/realk8s/
kubeconfig``, started by its ``up.sh``; the cluster may be shared, so everything this bench
creates is named ``--prefix``-something and deleted at the end):

1. a namespace, ``--edges`` (20) Node objects with the edge role label, ``--pods`` (100) pods
   bound round-robin to them;
2. one ``cloudhub serve --kubeconfig K`` and ``--edges`` simulated edges
   (:class:`bench.simedge.SimEdge`); once every pod is on its edge: RSS idle;
3. ``--updates`` (1,000) annotation patches through the API server, ``--concurrency`` (16) in
   flight (saturated), then ``--paced`` (500) at ``--rate`` (50) per second. Each patch carries
   a sequence number; the time from the API's answer to the edge receiving that number is
   the apply -> edge latency. CPU of cloudhub (and its helper processes) and of the API
   server (pid from ``--apiserver-pid-file``) over each phase, divided by updates delivered.

The API server's CPU includes whatever else uses the shared cluster at the time (another
bench, the controller manager's requests); run twice and read the lower figure.

``python bench/k8s_watch.py --help``; ``--quick`` (200 + 100 updates) finishes in ~1 min.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import math
import os
import random
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import yaml

from bench.cloud import bench_pod
from bench.common import (
    add_run_options,
    cluster_is_up,
    finish_workdir,
    raise_nofile,
    setup_logging,
    wait_for_condition,
)
from bench.k8s_mirror import KubeCloudHub, node_manifest
from bench.measure import Figures, cpu_seconds, percentile, run_benchmark
from bench.simedge import CertMinter, SimEdge, connect_all, keepalive_loop

log = logging.getLogger(__name__)

DEFAULT_KUBECONFIG = Path("/tmp/hk8s-realk8s/realk8s/kubeconfig")
DEFAULT_APISERVER_PID = Path("/tmp/hk8s-realk8s/realk8s/run/kube-apiserver.pid")
SEQ_ANNOTATION = "bench.edgebridge.io/seq"
#: stock cloudcore v1.15.4 on this machine (issue 19's table): saturated, at 50/s (µs)
CLOUDCORE_US = {"saturated": (1080.0, 1890.0), "paced": (2060.0, 2380.0)}


class Cluster:
    """Plain HTTPS to the API server with the kubeconfig's client certificate (not cloudhub's
    client, so the bench does not measure the code under test on its own side)."""

    def __init__(self, kubeconfig: Path, workdir: Path, *, limit: int) -> None:
        conf = yaml.safe_load(kubeconfig.read_text())
        ctx_name = conf["current-context"]
        ctx = next(c["context"] for c in conf["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in conf["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in conf["users"] if u["name"] == ctx["user"])
        files = {}
        for key in ("certificate-authority", "client-certificate", "client-key"):
            source = cluster if key == "certificate-authority" else user
            if f"{key}-data" in source:
                path = workdir / f"{key}.pem"
                path.write_bytes(base64.b64decode(source[f"{key}-data"]))
                files[key] = path
            elif key in source:
                files[key] = Path(source[key])
        context = ssl.create_default_context(cafile=str(files["certificate-authority"]))
        if "client-certificate" in files:
            context.load_cert_chain(files["client-certificate"], files["client-key"])
        headers = {"User-Agent": "edgebridge-bench"}
        if user.get("token"):
            headers["Authorization"] = f"Bearer {user['token']}"
        self._session = aiohttp.ClientSession(
            base_url=cluster["server"],
            connector=aiohttp.TCPConnector(limit=limit, ssl=context),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=60),
        )

    async def call(
        self, method: str, path: str, body: Any = None, *, merge: bool = False, ok: tuple[int, ...]
    ) -> dict[str, Any]:
        """One request; raises RuntimeError unless the status is in ``ok``."""
        headers = {"Content-Type": "application/merge-patch+json"} if merge else None
        async with self._session.request(method, path, json=body, headers=headers) as resp:
            out: dict[str, Any] = await resp.json(content_type=None)
            if resp.status not in ok:
                raise RuntimeError(f"{method} {path}: HTTP {resp.status}: {out.get('message')}")
            return out

    async def close(self) -> None:
        await self._session.close()


class Arrivals:
    """When each sequence number reached its edge (first delivery only)."""

    def __init__(self) -> None:
        self.answered: dict[int, float] = {}
        self.arrived: dict[int, float] = {}

    def on_object(
        self, edge: SimEdge, op: str, key: str, rv: str, content: Any, now: float
    ) -> None:
        if op != "update" or not isinstance(content, dict):
            return
        seq = ((content.get("metadata") or {}).get("annotations") or {}).get(SEQ_ANNOTATION)
        if seq is not None:
            self.arrived.setdefault(int(seq), now)


async def _patches(
    cluster: Cluster,
    arrivals: Arrivals,
    pods: list[str],
    seqs: range,
    namespace: str,
    *,
    concurrency: int,
    rate: float,
) -> None:
    todo = list(reversed(seqs))
    t0 = time.monotonic()

    async def worker() -> None:
        while todo:
            seq = todo.pop()
            if rate > 0:
                delay = t0 + (seq - seqs.start) / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            pod = pods[seq % len(pods)]
            patch = {"metadata": {"annotations": {SEQ_ANNOTATION: str(seq)}}}
            await cluster.call(
                "PATCH", f"/api/v1/namespaces/{namespace}/pods/{pod}", patch, merge=True, ok=(200,)
            )
            arrivals.answered[seq] = time.time()

    await asyncio.gather(*(worker() for _ in range(max(1, concurrency if rate <= 0 else 4))))


async def _phase(
    name: str,
    fig: Figures,
    hub: KubeCloudHub,
    api_pid: int,
    cluster: Cluster,
    arrivals: Arrivals,
    pods: list[str],
    seqs: range,
    namespace: str,
    *,
    concurrency: int,
    rate: float,
    timeout: float,
) -> bool:
    cpu_hub0, cpu_api0 = hub.cpu_seconds(), cpu_seconds(api_pid)
    t0 = time.monotonic()
    await _patches(cluster, arrivals, pods, seqs, namespace, concurrency=concurrency, rate=rate)
    done = await wait_for_condition(
        lambda: all(s in arrivals.arrived for s in seqs),
        timeout=timeout,
        what=f"every {name} update at its edge",
    )
    elapsed = time.monotonic() - t0
    cpu_hub = hub.cpu_seconds() - cpu_hub0
    cpu_api = cpu_seconds(api_pid) - cpu_api0
    delivered = sum(1 for s in seqs if s in arrivals.arrived)
    lat = [
        (arrivals.arrived[s] - arrivals.answered[s]) * 1000
        for s in seqs
        if s in arrivals.arrived and s in arrivals.answered
    ]
    per_update = cpu_hub / delivered * 1e6 if delivered else math.nan
    low, high = CLOUDCORE_US[name]
    fig.add(f"{name}_updates", delivered, f"delivered of {len(seqs)} in {elapsed:.1f}s")
    fig.add(f"{name}_rate", delivered / elapsed if elapsed else math.nan, "updates/s")
    fig.add(f"{name}_cloud_cpu_per_update", per_update, "µs (cloudhub + helpers)", digits=0)
    fig.add(
        f"{name}_vs_cloudcore",
        per_update / ((low + high) / 2),
        f"x stock cloudcore's {low:.0f}-{high:.0f} µs (issue 19; target <= 0.33)",
        digits=2,
    )
    fig.add(
        f"{name}_apiserver_cpu_per_update",
        cpu_api / len(seqs) * 1e6,
        "µs (kube-apiserver, whole process)",
        digits=0,
    )
    fig.add(f"{name}_latency_p50", percentile(lat, 50), "ms (API answer -> edge)", digits=2)
    fig.add(f"{name}_latency_p99", percentile(lat, 99), "ms", digits=2)
    return done


async def run(args: argparse.Namespace, fig: Figures) -> bool:
    raise_nofile()
    api_pid = int(args.apiserver_pid_file.read_text().strip())
    workdir = Path(tempfile.mkdtemp(prefix="edgebridge-k8swatch-", dir=args.workdir))
    namespace = f"{args.prefix}-{random.randrange(16**6):06x}"
    nodes = [f"{args.prefix}-edge-{i:02d}" for i in range(args.edges)]
    pods = [f"p-{i:04d}" for i in range(args.pods)]
    cluster = Cluster(args.kubeconfig, workdir, limit=max(8, args.concurrency))
    hub: KubeCloudHub | None = None
    edges: list[SimEdge] = []
    keepalive: asyncio.Task[None] | None = None
    try:
        await cluster.call(
            "POST", "/api/v1/namespaces", {"metadata": {"name": namespace}}, ok=(201,)
        )
        for node in nodes:
            with contextlib.suppress(RuntimeError):  # left over from an aborted run
                await cluster.call("DELETE", f"/api/v1/nodes/{node}", ok=(200,))
            await cluster.call("POST", "/api/v1/nodes", node_manifest(node), ok=(201,))
        await _create_pods(cluster, namespace, pods, nodes)
        hub = KubeCloudHub(
            workdir=workdir,
            kubeconfig=args.kubeconfig,
            replica=args.prefix,
            extra_args=args.hub_arg,
        )
        await hub.start()
        await wait_for_condition(lambda: hub.log_tail(200).count("serving") > 0, timeout=30)
        arrivals = Arrivals()
        minter = CertMinter(data_dir=hub.data_dir, out_dir=workdir / "certs")
        edges = [
            SimEdge(
                node=n,
                url=hub.ws_url(n),
                ssl_context=minter.client_context(n),
                on_object=arrivals.on_object,
            )
            for n in nodes
        ]
        _ok, failed, errors = await connect_all(edges, concurrency=8)
        for e in errors:
            log.warning("connect error: %s", e)
        keepalive = asyncio.create_task(keepalive_loop(lambda: edges))
        synced = await wait_for_condition(
            lambda: sum(len(e.inventory) for e in edges) >= len(pods) + len(edges),
            timeout=60,
            what="every pod and Node at its edge",
        )
        await asyncio.sleep(args.settle)
        fig.add("edges", sum(1 for e in edges if e.open), f"connected of {len(edges)}")
        fig.add("pods", len(pods), f"pods over {len(nodes)} nodes")
        fig.add("rss_idle", hub.rss_kib_with_children() / 1024, "MB (cloudhub + helpers)")
        fig.add("rss_idle_main", hub.rss_kib() / 1024, "MB (cloudhub's main process)")
        fig.add("cloudcore_rss_idle", "80-84", "MB (stock cloudcore, issue 19)")
        cpu0 = hub.cpu_seconds()
        await asyncio.sleep(args.idle)
        fig.add(
            "idle_cloud_cpu",
            (hub.cpu_seconds() - cpu0) / args.idle * 100,
            f"% of a core over {args.idle:g}s, edges connected, nothing changing",
            digits=2,
        )
        ok = synced and not failed
        sat = range(0, args.updates)
        ok &= await _phase(
            "saturated", fig, hub, api_pid, cluster, arrivals, pods, sat, namespace,
            concurrency=args.concurrency, rate=0.0, timeout=args.deliver_timeout,
        )  # fmt: skip
        await asyncio.sleep(args.settle)
        paced = range(args.updates, args.updates + args.paced)
        ok &= await _phase(
            "paced", fig, hub, api_pid, cluster, arrivals, pods, paced, namespace,
            concurrency=1, rate=args.rate, timeout=args.deliver_timeout,
        )  # fmt: skip
        fig.add("paced_target_rate", args.rate, "updates/s asked for")
        fig.add("rss_after", hub.rss_kib_with_children() / 1024, "MB (after the updates)")
        return ok
    finally:
        if keepalive is not None:
            keepalive.cancel()
            await asyncio.gather(keepalive, return_exceptions=True)
        await asyncio.gather(*(e.close() for e in edges))
        if hub is not None:
            hub.stop()
        with contextlib.suppress(Exception):
            await cluster.call("DELETE", f"/api/v1/namespaces/{namespace}", ok=(200, 202))
        for node in nodes:
            with contextlib.suppress(Exception):
                await cluster.call("DELETE", f"/api/v1/nodes/{node}", ok=(200,))
        await cluster.close()
        finish_workdir(workdir, keep=args.keep)


async def _create_pods(cluster: Cluster, namespace: str, pods: list[str], nodes: list[str]) -> None:
    """Create the pods; the namespace's default ServiceAccount (which admission wants) may
    take a moment to appear, so a refused create is retried for a while."""
    deadline = time.monotonic() + 30
    for i, pod in enumerate(pods):
        body = bench_pod(pod, nodes[i % len(nodes)], namespace=namespace)
        body["spec"]["automountServiceAccountToken"] = False
        while True:
            try:
                await cluster.call("POST", f"/api/v1/namespaces/{namespace}/pods", body, ok=(201,))
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Kubernetes mode on a real kube-apiserver: cloud and API server CPU per "
        "delivered pod update (saturated and paced), apply -> edge latency, idle RSS.",
        epilog="example: /tmp/hk8s-realk8s/realk8s/up.sh && python bench/k8s_watch.py",
    )
    p.add_argument("--kubeconfig", type=Path, default=DEFAULT_KUBECONFIG, help="the cluster")
    p.add_argument(
        "--apiserver-pid-file", type=Path, default=DEFAULT_APISERVER_PID, help="its pid file"
    )
    p.add_argument("--prefix", default="kw", help="names of everything created (kw)")
    p.add_argument("--edges", type=int, default=20, help="simulated edges (20)")
    p.add_argument("--pods", type=int, default=100, help="pods over the edges (100)")
    p.add_argument("--updates", type=int, default=None, help="saturated patches (1000)")
    p.add_argument("--concurrency", type=int, default=16, help="patches in flight (16)")
    p.add_argument("--paced", type=int, default=None, help="paced patches (500)")
    p.add_argument("--rate", type=float, default=50.0, help="paced patches per second (50)")
    p.add_argument("--deliver-timeout", type=float, default=60.0, help="s, per phase (60)")
    p.add_argument("--settle", type=float, default=3.0, help="pause between phases, s (3)")
    p.add_argument("--idle", type=float, default=10.0, help="idle CPU window, s (10)")
    p.add_argument(
        "--hub-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="one more 'cloudhub serve' argument (repeat; e.g. --hub-arg=--link-workers=0)",
    )
    p.add_argument("--quick", action="store_true", help="200 saturated + 100 paced updates")
    add_run_options(p, timeout=300, keeps="cloudhub.log")
    args = p.parse_args(argv)
    if args.updates is None:
        args.updates = 200 if args.quick else 1000
    if args.paced is None:
        args.paced = 100 if args.quick else 500
    if min(args.edges, args.pods, args.updates, args.paced) < 1 or args.rate <= 0:
        p.error("--edges, --pods, --updates, --paced must be >= 1 and --rate > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(verbose=args.verbose)
    if not cluster_is_up(args.kubeconfig, args.apiserver_pid_file):
        return 2
    fig = Figures(
        f"k8s_watch edges={args.edges} pods={args.pods} updates={args.updates}+{args.paced}"
        f"@{args.rate:g}/s (Kubernetes mode, real kube-apiserver, pid {os.getpid()})"
    )
    return run_benchmark(fig, run(args, fig), timeout=args.timeout)


if __name__ == "__main__":
    sys.exit(main())
