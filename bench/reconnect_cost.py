"""What a reconnect costs on the wire: messages sent to an edge that comes back.

Why it matters: KubeEdge re-sends every object bound to a node when its edge reconnects, and
keeps a per-(node, object) record in the API server to know what the edge had. edgebridge
instead has the edge state its *inventory* (key -> resourceVersion it persisted) first thing
on every connection, and the cloud sends only the difference (see ``wire.delivery``). So a
node with 1,000 pods that missed 10 updates while offline should get ~10 messages, not 1,000.

The run: one simulated node with ``--pods`` pods (1,000) bound to it connects, receives and
ACKs everything, disconnects; then, per variant, the cloud's state is changed through the admin
API while the node is away, and the node reconnects stating what it persisted. Object messages
are counted until ``--quiet`` seconds pass without one.

Variants: 10 pods updated; nothing changed; 5 pods deleted; and, for comparison, a reconnect
*without* an inventory (what a stock KubeEdge edgecore does: the cloud waits
``inventory_timeout`` and then sends everything).

The "constant" in the targets is the node's own Node object: cloudhub records presence in the
Node's ``Ready`` condition, so going offline and coming back each change the Node, and the
edge gets it once or twice (twice when the second change comes after the first was ACKed).

Run ``python bench/reconnect_cost.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cloud import Admin, CloudHub, bench_pod, node_object
from bench.common import add_run_options, finish_workdir, raise_nofile, setup_logging
from bench.measure import Figures, run_benchmark
from bench.simedge import CertMinter, SimEdge, keepalive_loop

log = logging.getLogger(__name__)

NODE = "rc-node"
NAMESPACE = "bench"


def pod_name(i: int) -> str:
    return f"rc-{i:04d}"


@dataclass
class Counter:
    """Object messages received since the last :meth:`reset`, by type and operation."""

    by_kind: dict[str, int] = field(default_factory=dict)
    last: float = 0.0
    first: asyncio.Event = field(default_factory=asyncio.Event)

    def reset(self) -> None:
        self.by_kind = {}
        self.last = time.monotonic()
        self.first.clear()

    def hook(self, edge: SimEdge, op: str, key: str, rv: str, content: Any, now: float) -> None:
        kind = key.split("/")[1]
        name = f"{kind}:{op}"
        self.by_kind[name] = self.by_kind.get(name, 0) + 1
        self.last = time.monotonic()
        self.first.set()

    def total(self, prefix: str = "") -> int:
        return sum(v for k, v in self.by_kind.items() if k.startswith(prefix))

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.by_kind.items())) or "none"


async def until_quiet(counter: Counter, quiet: float, timeout: float) -> float:
    """Wait until no object message came for ``quiet`` seconds; returns the time waited."""
    start = time.monotonic()
    while time.monotonic() - counter.last < quiet:
        if time.monotonic() - start > timeout:
            log.warning("still receiving after %.0fs; counting what came", timeout)
            break
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def wait_offline(admin: Admin, node_rv: str, timeout: float = 10.0) -> bool:
    """Wait until cloudhub has recorded the disconnect in the stored Node (its rv moved on)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = await admin.get("nodes", "_", NODE)
        if (obj.get("metadata") or {}).get("resourceVersion") != node_rv:
            return True
        await asyncio.sleep(0.05)
    log.warning("the Node's stored status did not change within %.0fs of the disconnect", timeout)
    return False


async def reconnect(
    edge: SimEdge,
    counter: Counter,
    *,
    quiet: float,
    timeout: float,
    send_inventory: bool = True,
    first_within: float = 0.0,
) -> tuple[int, float, float]:
    """Reconnect; returns (object messages, seconds to the last one, seconds waited).

    With ``first_within`` the quiet period only starts once a first message came (or that
    many seconds passed): a stock edge gets nothing until cloudhub's inventory timeout.
    """
    counter.reset()
    t0 = time.monotonic()
    await edge.connect(send_inventory=send_inventory)
    counter.last = t0
    if first_within:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(counter.first.wait(), first_within)
    waited = await until_quiet(counter, quiet, timeout)
    last = counter.last - t0 if counter.total() else 0.0
    return counter.total(), last, waited


async def disconnect(edge: SimEdge, admin: Admin) -> None:
    node_rv = edge.inventory.get(edge.node_key, "")
    await edge.close()
    await wait_offline(admin, node_rv)


def pods_in(inventory: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in inventory.items() if "/pod/" in k}


async def run(args: argparse.Namespace, fig: Figures) -> bool:
    raise_nofile()
    workdir = Path(tempfile.mkdtemp(prefix="edgebridge-reconnect-", dir=args.workdir))
    ok = True
    try:
        async with CloudHub(workdir=workdir) as hub, Admin.for_hub(hub) as admin:
            await admin.apply([node_object(NODE)])
            expected: dict[str, str] = {}
            pods = [bench_pod(pod_name(i), NODE, namespace=NAMESPACE) for i in range(args.pods)]
            for i in range(0, len(pods), 500):
                body = await admin.apply(pods[i : i + 500])
                for obj in body["objects"]:
                    expected[f"{NAMESPACE}/pod/{obj['metadata']['name']}"] = obj["metadata"][
                        "resourceVersion"
                    ]
            log.info("%d pods bound to %s", args.pods, NODE)
            minter = CertMinter(data_dir=hub.data_dir, out_dir=workdir / "certs")
            counter = Counter()
            edge = SimEdge(
                node=NODE,
                url=hub.ws_url(NODE),
                ssl_context=minter.client_context(NODE),
                on_object=counter.hook,
            )
            keepalive = asyncio.create_task(keepalive_loop(lambda: [edge]))
            try:
                ok = await _variants(args, fig, admin, edge, counter, expected)
            finally:
                keepalive.cancel()
                await edge.close()
    finally:
        finish_workdir(workdir, keep=args.keep)
    return ok


async def _variants(
    args: argparse.Namespace,
    fig: Figures,
    admin: Admin,
    edge: SimEdge,
    counter: Counter,
    expected: dict[str, str],
) -> bool:
    q, to = args.quiet, args.timeout_variant
    ok = True

    def check(label: str) -> None:
        nonlocal ok
        match = pods_in(edge.inventory) == expected
        ok = ok and match
        fig.add(f"{label}_edge_matches_cloud", "PASS" if match else "FAIL")

    # -- first connection: everything -----------------------------------------------------------
    n, last, _ = await reconnect(edge, counter, quiet=q, timeout=to)
    log.info("initial sync: %d messages (%s) in %.2fs", n, counter.describe(), last)
    fig.add("pods_bound", args.pods, "pods")
    fig.add("initial_sync_messages", n, f"messages ({counter.describe()})")
    fig.add("initial_sync_time", last, "s (connect -> last message)", digits=2)
    check("initial")

    # -- 10 pods updated while away ---------------------------------------------------------------
    await disconnect(edge, admin)
    changed = [
        bench_pod(pod_name(i), NODE, namespace=NAMESPACE, annotations={"bench/changed": "1"})
        for i in range(0, args.pods, max(1, args.pods // args.updated))[: args.updated]
    ]
    body = await admin.apply(changed)
    for obj in body["objects"]:
        expected[f"{NAMESPACE}/pod/{obj['metadata']['name']}"] = obj["metadata"]["resourceVersion"]
    n, last, _ = await reconnect(edge, counter, quiet=q, timeout=to)
    log.info("after %d updates: %d messages (%s)", len(changed), n, counter.describe())
    fig.add(
        "messages_after_reconnect",
        n,
        f"(target: {len(changed)} + constant) [{counter.describe()}]",
    )
    fig.add("pod_messages_after_reconnect", counter.total("pod:"), f"(target: {len(changed)})")
    fig.add("reconnect_time", last, "s (connect -> last message)", digits=2)
    check("updated")

    # -- nothing changed ------------------------------------------------------------------------
    await disconnect(edge, admin)
    n, last, _ = await reconnect(edge, counter, quiet=q, timeout=to)
    log.info("no changes: %d messages (%s)", n, counter.describe())
    fig.add(
        "messages_after_reconnect_unchanged",
        n,
        f"(target: 0 + constant) [{counter.describe()}]",
    )
    fig.add("pod_messages_after_reconnect_unchanged", counter.total("pod:"), "(target: 0)")
    check("unchanged")

    # -- 5 pods deleted -------------------------------------------------------------------------
    await disconnect(edge, admin)
    victims = [pod_name(i) for i in range(1, args.pods, max(1, args.pods // args.deleted))]
    victims = victims[: args.deleted]
    for name in victims:
        await admin.delete("pods", NAMESPACE, name)
        expected.pop(f"{NAMESPACE}/pod/{name}", None)
    n, last, _ = await reconnect(edge, counter, quiet=q, timeout=to)
    log.info("after %d deletes: %d messages (%s)", len(victims), n, counter.describe())
    fig.add(
        "messages_after_reconnect_deleted",
        n,
        f"(target: {len(victims)} deletes + constant) [{counter.describe()}]",
    )
    fig.add("deletes_received", counter.by_kind.get("pod:delete", 0), f"(target: {len(victims)})")
    fig.add(
        "pod_messages_after_reconnect_deleted", counter.total("pod:"), f"(target: {len(victims)})"
    )
    check("deleted")

    # -- for comparison: an edge that states no inventory (stock KubeEdge) ----------------------
    if not args.skip_stock:
        await disconnect(edge, admin)
        n, last, _ = await reconnect(
            edge, counter, quiet=q, timeout=to, send_inventory=False, first_within=30.0
        )
        log.info("no inventory stated: %d messages (%s)", n, counter.describe())
        fig.add(
            "messages_after_reconnect_no_inventory",
            n,
            f"(stock KubeEdge edge: everything) [{counter.describe()}]",
        )
        fig.add("no_inventory_time", last, "s (connect -> last message, incl. the wait)", digits=2)
        check("no_inventory")
        with_inventory = fig.value("messages_after_reconnect")
        fig.add(
            "reconnect_saving",
            n / max(1.0, with_inventory),
            f"x fewer messages with the inventory ({n} vs {with_inventory:.0f})",
        )
    return ok


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Count the messages a node with many pods gets when it reconnects after "
        "missing a few changes (edgebridge sends the difference to its stated inventory).",
        epilog="example: python bench/reconnect_cost.py --pods 5000",
    )
    p.add_argument("--pods", type=int, default=1000, help="pods bound to the node (1000)")
    p.add_argument("--updated", type=int, default=10, help="pods updated while away (10)")
    p.add_argument("--deleted", type=int, default=5, help="pods deleted while away (5)")
    p.add_argument("--quiet", type=float, default=3.0, help="seconds without a message = done (3)")
    p.add_argument(
        "--timeout-variant", type=float, default=60.0, help="limit per variant, seconds (60)"
    )
    p.add_argument(
        "--skip-stock", action="store_true", help="skip the no-inventory comparison (saves ~8 s)"
    )
    add_run_options(p, timeout=300, keeps="cloudhub log")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(verbose=args.verbose)
    fig = Figures(f"reconnect_cost pods={args.pods}")
    return run_benchmark(fig, run(args, fig), timeout=args.timeout)


if __name__ == "__main__":
    sys.exit(main())
