"""cloudhub's memory across fleet outages: the whole fleet drops and reconnects, again and again.

Why it matters: an edge fleet loses its links together (a WAN outage, a cloud-side load
balancer restart) and comes back minutes later. cloudhub freezes the objects of a connection
burst out of its garbage collector's sight (``cloudhub.tuning``), and frozen objects are never
collected, so links that closed after a freeze used to stay in memory for good: 2,000 nodes
grew cloudhub by ~80 KiB per node per outage (270 MB -> 750 MB after four). This measures
that the memory of closed links is given back: RSS with the fleet up should stay flat from
one outage to the next.

The run: ``--nodes`` Node objects, then ``--outages`` rounds of: connect every simulated edge
(mutual TLS, inventory, keepalives: ``bench.simedge``), wait until cloudhub froze the burst,
close every link, wait until cloudhub collected what the closed links left. RSS (cloudhub and
its link workers, which hold the TLS links and freeze and collect the same way) is read with
the fleet up each round. Exit code 1 if the growth per node per outage is above
``--max-growth`` KiB.

Run ``python bench/link_churn.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cloud import Admin, CloudHub, node_object
from bench.common import (
    add_run_options,
    finish_workdir,
    raise_nofile,
    setup_logging,
    wait_for_condition,
)
from bench.measure import Figures, run_benchmark
from bench.simedge import CertMinter, SimEdge, connect_all

log = logging.getLogger(__name__)

FROZE = "long-lived objects after"
REFROZE = "links closed since the last freeze"
_COLLECT_TIME = re.compile(r"collected (\d+) objects in ([0-9.]+)s")


def node_name(i: int) -> str:
    return f"churn-{i:05d}"


async def run(args: argparse.Namespace, fig: Figures) -> bool:
    raise_nofile()
    workdir = Path(tempfile.mkdtemp(prefix="edgebridge-link-churn-", dir=args.workdir))
    hub = CloudHub(workdir=workdir, extra_args=["--link-workers", str(args.link_workers)])
    #: processes that freeze and collect on their own: cloudhub and each link worker
    collectors = 1 + args.link_workers
    try:
        await hub.start()
        admin = Admin.for_hub(hub)
        try:
            names = [node_name(i) for i in range(args.nodes)]
            await admin.apply_batched([node_object(n) for n in names])
        finally:
            await admin.close()
        minter = CertMinter(data_dir=hub.data_dir, out_dir=workdir / "certs")
        contexts = [minter.client_context(n) for n in names]
        rss_start = hub.rss_kib_with_children()
        up: list[int] = []
        for outage in range(args.outages):
            edges = [
                SimEdge(node=n, url=hub.ws_url(n), ssl_context=c)
                for n, c in zip(names, contexts, strict=True)
            ]
            froze = hub.count_log(FROZE)
            t = time.monotonic()
            ok, failed, errors = await connect_all(edges, concurrency=args.concurrency)
            if failed:
                log.error("%d edges could not connect: %s", failed, errors[:3])
                return False

            # cloudhub (and each link worker) freezes a burst within its check interval (5 s)
            def frozen(target: int = froze + collectors) -> bool:
                return hub.count_log(FROZE) >= target

            await wait_for_condition(frozen, timeout=30, what="the freeze")
            up.append(hub.rss_kib_with_children())
            log.info(
                "round %d: %d links up in %.1fs, cloudhub RSS %d KiB",
                outage + 1,
                ok,
                time.monotonic() - t,
                up[-1],
            )
            refrozen = hub.count_log(REFROZE)
            await asyncio.gather(*(e.close() for e in edges))
            del edges

            def refrozen_all(target: int = refrozen + collectors) -> bool:
                return hub.count_log(REFROZE) >= target

            await wait_for_condition(
                refrozen_all, timeout=30, what="the collection after the outage"
            )
        times = [
            float(m.group(2))
            for line in hub.log_tail(100_000).splitlines()
            if REFROZE in line and (m := _COLLECT_TIME.search(line))
        ]
    finally:
        hub.stop()
        finish_workdir(workdir, keep=args.keep)

    n, rounds = args.nodes, len(up)
    growth = (up[-1] - up[0]) / (rounds - 1) if rounds > 1 else float("nan")
    per_node: float = growth / n
    fig.add("nodes", n, "edges, every one connected each round")
    fig.add("rounds", rounds, "(fleet connected, then every link closed)")
    fig.add("rss_start", rss_start, "KiB (Node objects stored, no links)")
    fig.add("rss_up_first", up[0], "KiB (fleet up, first round)")
    fig.add("rss_up_last", up[-1], "KiB (fleet up, last round)")
    fig.add("rss_per_node", (up[0] - rss_start) / n, "KiB per connected node")
    fig.add("rss_growth_per_outage", growth, "KiB (fleet up, round to round)")
    fig.add("rss_growth_per_node_per_outage", per_node, "KiB", digits=2)
    fig.add("collections_after_outages", len(times), "(unfreeze, collect, freeze)")
    fig.add(
        "collection_time_max",
        max(times, default=float("nan")),
        "s (the loop stops meanwhile)",
        digits=2,
    )
    max_growth: float = args.max_growth
    held = per_node <= max_growth
    fig.add(
        "memory_flat",
        "PASS" if held else "FAIL",
        f"(growth per node per outage <= {args.max_growth} KiB)",
    )
    return held


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Drop and reconnect a whole fleet several times; print cloudhub's RSS "
        "per round (the memory of closed links must be given back).",
        epilog="example: python bench/link_churn.py --nodes 5000 --outages 3",
    )
    p.add_argument("--nodes", type=int, default=2000, help="simulated edges (2000)")
    p.add_argument("--outages", type=int, default=4, help="rounds of connect + close all (4)")
    p.add_argument("--concurrency", type=int, default=64, help="handshakes in flight (64)")
    p.add_argument(
        "--max-growth",
        type=float,
        default=5.0,
        help="KiB per node per outage allowed (5; a node's link costs ~90)",
    )
    p.add_argument(
        "--link-workers",
        type=int,
        default=1,
        help="cloudhub's --link-workers (1, as on a 2-core box); RSS counts them too",
    )
    add_run_options(p, timeout=600, keeps="cloudhub log")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.nodes < 1 or args.outages < 2:
        print("link_churn: --nodes must be >= 1 and --outages >= 2", file=sys.stderr)
        return 2
    setup_logging(verbose=args.verbose)
    fig = Figures(f"link_churn nodes={args.nodes} outages={args.outages}")
    return run_benchmark(fig, run(args, fig), timeout=args.timeout)


if __name__ == "__main__":
    sys.exit(main())
