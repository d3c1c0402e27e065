"""A burst of edits to one shared ConfigMap: how many messages reach each node, how fast the
fleet converges, and whether every node ends on the final version.

Why: KubeEdge queues every version of every object per node, so 2,000 edits of a ConfigMap
used on 100 nodes cost 200,000 messages. edgebridge's delivery is *latest wins per key*: at
most one message per key is in flight to a node, and versions that arrive meanwhile replace
each other; the newest goes out when the ACK comes back (see ``wire.delivery``). The number of
messages per node is then bounded by the round-trip time, not by the edit rate, and the last
version must still arrive everywhere.

The run: ``--nodes`` simulated edges (100), each with one pod referencing ConfigMap ``shared``
through ``envFrom``; then ``--edits`` (2,000) edits of ``shared``, each its own admin apply
request (as a user or a controller would), ``--concurrency`` (8) requests at a time. The edges
ACK everything and record when they ACKed which version.

Figures: ConfigMap messages per node (and in total against the naive edits x nodes),
convergence lag (last edit accepted -> last node ACKed the final version), and PASS/FAIL:
every node holds the final version (resourceVersion and data).

Run ``python bench/burst_coalescing.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cloud import Admin, CloudHub, bench_pod, node_object
from bench.common import (
    add_run_options,
    finish_workdir,
    raise_nofile,
    setup_logging,
    wait_for_condition,
)
from bench.measure import Figures, PySpy, percentile, run_benchmark
from bench.simedge import CertMinter, SimEdge, connect_all, keepalive_loop

log = logging.getLogger(__name__)

NAMESPACE = "bench"
CONFIGMAP = "shared"
CM_KEY = f"{NAMESPACE}/configmap/{CONFIGMAP}"


def node_name(i: int) -> str:
    return f"burst-{i:03d}"


def configmap(value: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIGMAP, "namespace": NAMESPACE},
        "data": {"VALUE": str(value), "MODE": "burst", "NOTE": "edited by bench"},
    }


class ConfigMapLog:
    """Per edge: ConfigMap messages received, and the last version ACKed with its time."""

    def __init__(self) -> None:
        self.messages: dict[str, int] = {}
        #: node -> (resourceVersion, data VALUE, ack time) of the last ConfigMap ACKed
        self.last_ack: dict[str, tuple[str, str, float]] = {}

    def on_object(
        self, edge: SimEdge, op: str, key: str, rv: str, content: Any, now: float
    ) -> None:
        if key == CM_KEY:
            self.messages[edge.node] = self.messages.get(edge.node, 0) + 1

    def on_acked(self, edge: SimEdge, op: str, key: str, content: Any, now: float) -> None:
        if key != CM_KEY or not isinstance(content, dict):
            return
        rv = str((content.get("metadata") or {}).get("resourceVersion", ""))
        value = str((content.get("data") or {}).get("VALUE", ""))
        self.last_ack[edge.node] = (rv, value, now)


async def run(args: argparse.Namespace, fig: Figures) -> bool:
    raise_nofile()
    workdir = Path(tempfile.mkdtemp(prefix="edgebridge-burst-", dir=args.workdir))
    try:
        async with CloudHub(workdir=workdir) as hub, Admin.for_hub(hub, limit=32) as admin:
            return await _run(args, fig, hub, admin, workdir)
    finally:
        finish_workdir(workdir, keep=args.keep)


async def _run(
    args: argparse.Namespace, fig: Figures, hub: CloudHub, admin: Admin, workdir: Path
) -> bool:
    nodes = [node_name(i) for i in range(args.nodes)]
    await admin.apply([configmap(0)])
    await admin.apply_batched([node_object(n) for n in nodes])
    await admin.apply_batched(
        [bench_pod(f"uses-shared-{n}", n, namespace=NAMESPACE, configmap=CONFIGMAP) for n in nodes]
    )
    minter = CertMinter(data_dir=hub.data_dir, out_dir=workdir / "certs")
    cmlog = ConfigMapLog()
    edges = [
        SimEdge(
            node=n,
            url=hub.ws_url(n),
            ssl_context=minter.client_context(n),
            on_object=cmlog.on_object,
            on_acked=cmlog.on_acked,
            ack_delay=args.ack_delay / 1000,
        )
        for n in nodes
    ]
    keepalive = asyncio.create_task(keepalive_loop(lambda: edges))
    profiler = PySpy(pid=hub.pid, out=workdir / "cloudhub-profile.txt") if args.profile else None
    try:
        ok, _failed, errors = await connect_all(edges, concurrency=16)
        for e in errors:
            log.warning("connect error: %s", e)
        synced = await wait_for_condition(
            lambda: all(CM_KEY in e.inventory and len(e.inventory) >= 3 for e in edges),
            timeout=60,
            what="every node to hold its Node, pod and ConfigMap",
        )
        log.info(
            "%d/%d nodes connected, initial sync %s",
            ok,
            len(edges),
            "done" if synced else "INCOMPLETE",
        )
        if not synced:
            fig.add("result", "FAIL", "(initial sync incomplete)")
            return False
        cmlog.messages.clear()
        cpu0 = hub.cpu_seconds()
        if profiler is not None:
            profiler.start()

        # -- the burst ---------------------------------------------------------------------
        next_edit = 1
        accepted: list[float] = []
        failures = 0

        async def editor() -> None:
            nonlocal next_edit, failures
            while next_edit <= args.edits:
                value = next_edit
                next_edit += 1
                try:
                    await admin.apply([configmap(value)])
                except Exception as exc:
                    failures += 1
                    log.warning("edit %d failed: %s", value, exc)
                    continue
                accepted.append(time.time())

        t_start = time.time()
        await asyncio.gather(*(editor() for _ in range(args.concurrency)))
        t_last_accept = max(accepted, default=t_start)
        burst_s = t_last_accept - t_start
        final = await admin.get("configmaps", NAMESPACE, CONFIGMAP)
        final_rv = str(final["metadata"]["resourceVersion"])
        final_value = str(final["data"]["VALUE"])
        log.info(
            "%d edits accepted in %.1fs (%.0f/s); final version rv=%s VALUE=%s",
            len(accepted),
            burst_s,
            len(accepted) / max(burst_s, 1e-9),
            final_rv,
            final_value,
        )

        def at_final(node: str) -> bool:
            got = cmlog.last_ack.get(node)
            return got is not None and got[0] == final_rv

        converged = await wait_for_condition(
            lambda: all(at_final(n) for n in nodes),
            timeout=args.converge_timeout,
            what="every node to ACK the final version",
        )
        # Anything still in flight would be a wasted message: wait a little and count it too.
        await asyncio.sleep(args.settle)
        cpu = hub.cpu_seconds() - cpu0
    finally:
        if profiler is not None:
            profiler.stop()
        keepalive.cancel()
        await asyncio.gather(*(e.close() for e in edges))

    counts = [cmlog.messages.get(n, 0) for n in nodes]
    total = sum(counts)
    naive = len(accepted) * len(nodes)
    lags = [cmlog.last_ack[n][2] - t_last_accept for n in nodes if at_final(n)]
    right_data = [n for n in nodes if at_final(n) and cmlog.last_ack[n][1] == final_value]
    held = sum(1 for e in edges if e.inventory.get(CM_KEY) == final_rv)
    passed = converged and len(right_data) == len(nodes) and held == len(nodes)

    fig.add("nodes", len(nodes), "nodes")
    fig.add("edits", len(accepted), f"edits accepted ({failures} failed)")
    fig.add("edit_concurrency", args.concurrency, "requests in flight")
    fig.add("ack_delay", args.ack_delay, "ms added before each ACK")
    fig.add("burst_time", burst_s, "s (first edit sent -> last edit accepted)", digits=2)
    fig.add("edit_rate", len(accepted) / burst_s if burst_s > 0 else math.nan, "edits/s")
    fig.add("configmap_messages_total", total, "messages")
    fig.add("configmap_messages_naive", naive, "messages (every edit to every node)")
    fig.ratio("messages_vs_naive", total, naive, digits=4)
    fig.add("reduction_factor", naive / total if total else math.nan, "x fewer messages")
    fig.add("messages_per_node_min", min(counts, default=0), "messages")
    fig.add("messages_per_node_mean", total / len(nodes) if nodes else math.nan, "messages")
    fig.add("messages_per_node_max", max(counts, default=0), "messages")
    fig.add(
        "convergence_lag_p50",
        percentile(lags, 50) * 1000,
        "ms (last edit accepted -> node ACKed final)",
    )
    fig.add(
        "convergence_lag",
        max(lags, default=math.nan) * 1000,
        "ms (last edit accepted -> all nodes ACKed final)",
    )
    fig.add("cloudhub_cpu", cpu, "s CPU during burst + convergence")
    fig.add("nodes_at_final_version", held, f"of {len(nodes)}")
    fig.add("result", "PASS" if passed else "FAIL", "(every node ends at the final version)")
    return passed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="2,000 quick edits of one ConfigMap used on 100 nodes: messages per node, "
        "convergence lag, and a check that every node ends at the final version.",
        epilog="example: python bench/burst_coalescing.py --nodes 500 --edits 5000",
    )
    p.add_argument("--nodes", type=int, default=100, help="simulated edge nodes (100)")
    p.add_argument("--edits", type=int, default=2000, help="edits of the ConfigMap (2000)")
    p.add_argument("--concurrency", type=int, default=8, help="apply requests in flight (8)")
    p.add_argument(
        "--ack-delay",
        type=float,
        default=0.0,
        help="ms each edge waits before ACKing, to stand in for a WAN round trip (0)",
    )
    p.add_argument(
        "--converge-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for every node to ACK the final version (60)",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=2.0,
        help="seconds to keep counting after convergence (2)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="sample cloudhub with py-spy during the burst; summary on stderr",
    )
    add_run_options(p, timeout=300, keeps="cloudhub log")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(verbose=args.verbose)
    fig = Figures(
        f"burst_coalescing nodes={args.nodes} edits={args.edits} ack_delay={args.ack_delay}ms"
    )
    return run_benchmark(fig, run(args, fig), timeout=args.timeout)


if __name__ == "__main__":
    sys.exit(main())
