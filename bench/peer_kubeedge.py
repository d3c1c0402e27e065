"""Stock KubeEdge v1.15 side by side: the same workload through stock cloudcore and our cloudhub.

Needs the stock binaries built by ``/work/shared/peers/kubeedge/build.sh`` (``--peer-dir``,
default ``$KUBEEDGE_PEER_DIR`` or ``/opt/eb-harness/kubeedge``: ``bin/edgecore``,
``bin/cloudcore``, ``edgecore-up.sh``, ``cloudcore-up.sh``) and a Kubernetes API server
(``--kubeconfig``, default ``$PEER_KUBECONFIG``; ``/work/shared/peers/kubernetes`` builds a real
one). Both clouds run against the same API server and the same ``--edges`` stock edgecores,
re-pointed (joined afresh) between the runs: stock cloudcore first, then
``cloudhub serve --kubeconfig``, ``--pairs`` times. Without cloudcore (or ``--ours-only``) our
figures alone are printed; without a kubeconfig ours run on the embedded store (workload through
the admin API); without a stock edgecore nothing can be measured: it says so and exits 0.

Workload and rows, each side (pods in namespace ``pb-peer`` / ``pb-ours``, nodes ``pb-NNN``):

1. the edges join and connect: cloud RSS per connected edge;
2. ``--pods`` pods round-robin: create -> row in the edge's SQLite (stock metamanager's ``meta``
   table) p50/p99;
3. ``--updates`` annotation patches (``pb/seq``) as fast as ``--concurrency`` requests go:
   cloud and API server CPU per update (first patch -> every edge holds the last version),
   patch -> edge row p50/p99 (a version counts as arrived when its row holds it or a later one);
4. the same at ``--rate`` (50/s) for ``--paced-seconds``. The edges' rows are read every
   ``--paced-poll-ms`` (5) here, every 20 ms under saturation (where every edge has a version
   pending, a poll reads 20 databases): at 50/s one or two pods are pending at a time, and a
   20 ms poll would add a uniform 0-20 ms to latencies of a few ms for both clouds;
5. cloud CPU (over ``--idle-seconds``, after ``--settle`` quiet seconds) and RSS with the
   edges idle;
6. the cloud stops, 2 pods change, it starts again: messages from the cloud the stock edges
   took (their metamanager logs each with its route at ``klog -v 2``) until quiet, and the
   changed pod at its edge after that edge reconnected (the edge's own reconnect backoff,
   up to ~30 s, is not counted);
7. one edge holding ``--reconnect-pods`` (1,000) pods stops, 10 change, it comes back: messages
   it took (issue 18's reconnect row).

Ratios are ours / peer of the medians over the pairs (lower is better for every row).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure import Figures, cpu_seconds, percentile, run_benchmark
from bench.peer_parts import (
    Cloud,
    Driver,
    OurCloud,
    PeerCloud,
    RowWatch,
    StockFleet,
    apiserver_pid,
)
from cloudhub.k8s.api import KubeApi

log = logging.getLogger("peer_kubeedge")

DEFAULT_PEER = Path(os.environ.get("KUBEEDGE_PEER_DIR", "/opt/eb-harness/kubeedge"))
_KC = os.environ.get("PEER_KUBECONFIG")
DEFAULT_KUBECONFIG = Path(_KC) if _KC else None

#: seconds without a message that end a count (stock cloudcore's sync loop runs every 5 s:
#: what it sends a reconnected edge may come that late)
QUIET = 8.0

#: (row key, label, unit); the order figures and ratios print in
ROWS = (
    ("cpu_sat", "cloud CPU per delivered update, saturated", "us"),
    ("cpu_paced", "cloud CPU per update at the paced rate", "us"),
    ("api_cpu", "apiserver CPU per update, saturated", "us"),
    ("sat_p50", "patch -> edge row p50, saturated", "ms"),
    ("sat_p99", "patch -> edge row p99, saturated", "ms"),
    ("paced_p50", "patch -> edge row p50, paced", "ms"),
    ("paced_p99", "patch -> edge row p99, paced", "ms"),
    ("create_p50", "pod create -> edge row p50", "ms"),
    ("create_p99", "pod create -> edge row p99", "ms"),
    ("cpu_idle", "cloud CPU, edges idle (timers, leases, keepalives)", "ms/s"),
    ("rss_idle", "cloud RSS, edges idle", "MiB"),
    ("rss_per_edge", "cloud RSS per connected edge", "KiB"),
    ("restart_msgs", "messages to stock edges after a cloud restart (2 pods changed)", "msgs"),
    ("restart_at_edge", "changed pod at its edge after the edge reconnects", "s"),
    ("reconnect_msgs", "messages on reconnect, 10 of the edge's pods changed", "msgs"),
)


class Side:
    """One cloud's run of the workload; ``results`` holds its rows."""

    def __init__(
        self, cloud: Cloud, args: argparse.Namespace, work: Path, api: KubeApi | None
    ) -> None:
        self.cloud = cloud
        self.args = args
        self.nodes = [f"pb-{i:03d}" for i in range(args.edges)]
        self.fleet = StockFleet(args.peer_dir, work / f"edges-{cloud.label}", self.nodes)
        self.namespace = f"pb-{cloud.label}"
        self.api = api
        self.api_pid = apiserver_pid(args.kubeconfig) if args.kubeconfig else None
        self.results: dict[str, float] = {}
        self.pods = {f"p{i:04d}": self.nodes[i % len(self.nodes)] for i in range(args.pods)}
        self.seq = 0

    def driver(self) -> Driver:
        admin = self.cloud.admin if isinstance(self.cloud, OurCloud) and self.api is None else None
        return Driver(self.namespace, api=self.api, admin=admin)

    def api_cpu(self) -> float:
        return cpu_seconds(self.api_pid) if self.api_pid is not None else 0.0

    async def run(self) -> None:
        cloud, fleet, args = self.cloud, self.fleet, self.args
        await cloud.start()
        extra: list[str] = []
        try:
            await asyncio.sleep(args.settle)  # start-up (lists, caches) is not per edge
            rss0 = cloud.rss_kib()
            envs = {n: await cloud.edge_env(n) for n in self.nodes}
            await fleet.start_all(envs, fresh=True)
            log.info("%s: %d stock edges connected", cloud.label, len(self.nodes))
            await asyncio.sleep(args.settle)
            self.results["rss_per_edge"] = (cloud.rss_kib() - rss0) / len(self.nodes)
            driver = self.driver()
            await driver.ensure_namespace()
            cloud_restarts = driver.admin is None
            watch = RowWatch(fleet, self.namespace, self.pods)
            await driver.create(self.pods, watch)
            if not await watch.drain(args.deliver_timeout):
                raise RuntimeError(f"{cloud.label}: {watch.outstanding} pods never reached edges")
            self._latencies("create", watch.latencies)
            await self.updates(driver, "sat", count=args.updates, rate=None)
            await self.updates(
                driver, "paced", count=int(args.rate * args.paced_seconds), rate=args.rate
            )
            await asyncio.sleep(args.settle)
            idle0, began = cloud.cpu_seconds(), time.monotonic()
            await asyncio.sleep(args.idle_seconds)
            idle_s = time.monotonic() - began
            self.results["cpu_idle"] = (cloud.cpu_seconds() - idle0) / idle_s * 1e3
            self.results["rss_idle"] = cloud.rss_kib() / 1024
            await self.restart(changes_while_down=cloud_restarts)
            if args.reconnect_pods:
                extra = [f"r{i:04d}" for i in range(args.reconnect_pods)]
                await self.reconnect(self.driver(), extra)
        finally:
            fleet.stop(self.nodes, mosquitto=True)
            await cloud.stop()
            await self.driver().delete_all([*self.pods, *extra])

    def _latencies(self, prefix: str, values: list[float]) -> None:
        self.results[f"{prefix}_p50"] = percentile(values, 50) * 1000
        self.results[f"{prefix}_p99"] = percentile(values, 99) * 1000

    async def updates(self, driver: Driver, name: str, *, count: int, rate: float | None) -> None:
        """``count`` patches (as fast as allowed, or at ``rate``/s), CPU per update until every
        edge holds the last version, and the latencies."""
        watch = RowWatch(self.fleet, self.namespace, self.pods)
        names = list(self.pods)
        gate = asyncio.Semaphore(self.args.concurrency)
        # one patch of a pod at a time: concurrent ones could land out of order
        locks = {pod: asyncio.Lock() for pod in names}
        done = asyncio.Event()

        interval = 0.02 if rate is None else self.args.paced_poll_ms / 1000

        async def poller() -> None:
            while not done.is_set():
                watch.poll()
                await asyncio.sleep(interval)

        async def one(i: int) -> None:
            pod = names[i % len(names)]
            async with locks[pod], gate:
                self.seq += 1
                seq = self.seq
                watch.sent(pod, seq, time.monotonic())
                await driver.patch(pod, self.pods[pod], seq)

        c0, a0, t0 = self.cloud.cpu_seconds(), self.api_cpu(), time.monotonic()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(poller())
            try:
                async with asyncio.TaskGroup() as sends:
                    for i in range(count):
                        if rate is not None:
                            await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
                        sends.create_task(one(i))
            finally:
                done.set()
        ok = await watch.drain(self.args.deliver_timeout, interval)
        c1, a1 = self.cloud.cpu_seconds(), self.api_cpu()
        if not ok:
            log.warning("%s %s: %d versions never seen", self.cloud.label, name, watch.outstanding)
        key = "cpu_sat" if rate is None else "cpu_paced"
        self.results[key] = (c1 - c0) / count * 1e6
        if rate is None and self.api_pid is not None:
            self.results["api_cpu"] = (a1 - a0) / count * 1e6
        self._latencies(name, watch.latencies)
        log.info("%s %s: %d patches in %.1fs", self.cloud.label, name, count, time.monotonic() - t0)

    async def _quiet_count(self, offsets: dict[str, int], quiet: float, limit: float) -> int:
        """Messages the edges logged since ``offsets`` once ``quiet`` s pass without one."""
        last, since, began = -1, time.monotonic(), time.monotonic()
        while time.monotonic() - began < limit:
            now = self.fleet.messages_since(offsets)
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                break
            await asyncio.sleep(0.2)
        return last

    async def restart(self, *, changes_while_down: bool) -> None:
        """The cloud restarts with 2 pods changed meanwhile (in embedded mode, where nothing
        writes while it is down, at once after it is back)."""
        cloud = self.cloud
        await cloud.stop()
        changed = list(self.pods)[:2]
        watch = RowWatch(self.fleet, self.namespace, {p: self.pods[p] for p in changed})

        async def change() -> None:
            driver = self.driver()
            for pod in changed:
                self.seq += 1
                watch.sent(pod, self.seq, 0.0)
                await driver.patch(pod, self.pods[pod], self.seq)

        if changes_while_down:
            await change()
        offsets = self.fleet.log_sizes()
        await cloud.start()
        if not changes_while_down:
            await change()
        node = self.pods[changed[0]]
        connected = None
        deadline = time.monotonic() + self.args.deliver_timeout
        while time.monotonic() < deadline:
            if connected is None and self.fleet.connected_since(node, offsets[node]):
                connected = time.monotonic()
            watch.poll()
            if watch.seen.get(changed[0], -1) >= self.seq - 1 and connected is not None:
                self.results["restart_at_edge"] = time.monotonic() - connected
                break
            await asyncio.sleep(0.01)
        self.results["restart_msgs"] = await self._quiet_count(offsets, quiet=QUIET, limit=90)

    async def reconnect(self, driver: Driver, extra: list[str]) -> None:
        """One edge with ``--reconnect-pods`` pods goes away, 10 change, it comes back."""
        node = self.nodes[0]
        pods = dict.fromkeys(extra, node)
        watch = RowWatch(self.fleet, self.namespace, pods)
        await driver.create(pods, watch)
        if not await watch.drain(self.args.deliver_timeout):
            log.warning("%s: %d reconnect pods never arrived", self.cloud.label, watch.outstanding)
        await asyncio.sleep(self.args.settle)
        await asyncio.to_thread(self.fleet.stop, [node])
        self.seq += 1
        for pod in extra[:10]:
            await driver.patch(pod, node, self.seq)
        offsets = {node: 0}  # edgecore-up.sh starts the edge's log afresh
        env = await self.cloud.edge_env(node)
        await asyncio.to_thread(self.fleet.start, node, env, fresh=False)
        self.results["reconnect_msgs"] = await self._quiet_count(offsets, quiet=QUIET, limit=90)


def _median(runs: list[dict[str, float]], key: str) -> float:
    values = [r[key] for r in runs if key in r]
    return statistics.median(values) if values else float("nan")


def report(
    fig: Figures, sides: dict[str, list[dict[str, float]]], args: argparse.Namespace
) -> None:
    for key, label, unit in ROWS:
        for name, runs in sides.items():
            value = _median(runs, key)
            spread = [round(r[key], 1) for r in runs if key in r]
            note = f"{unit} (runs: {spread})" if len(runs) > 1 else unit
            fig.add(f"{name}: {label}", value, note, digits=0 if unit == "msgs" else 1)
    if "peer" in sides and "ours" in sides:
        for key, label, _ in ROWS:
            fig.ratio(
                f"ratio ours/peer: {label}",
                _median(sides["ours"], key),
                _median(sides["peer"], key),
            )
    fig.add(
        "workload",
        f"{args.edges} stock edges, {args.pods} pods, {args.updates} patches saturated, "
        f"{args.rate:g}/s for {args.paced_seconds:g} s, "
        f"{args.reconnect_pods} on the reconnecting edge",
    )


async def main(args: argparse.Namespace, fig: Figures) -> bool:
    peer: Path = args.peer_dir
    missing = [p for p in ("bin/edgecore", "edgecore-up.sh") if not (peer / p).exists()]
    if missing:
        fig.add(
            "peer", f"stock KubeEdge edgecore not found in {peer} ({missing[0]}); nothing measured"
        )
        return True
    has_cloudcore = (peer / "bin/cloudcore").exists() and (peer / "cloudcore-up.sh").exists()
    kubeconfig: Path | None = args.kubeconfig
    run_peer = has_cloudcore and kubeconfig is not None and not args.ours_only
    if not run_peer:
        why = (
            "--ours-only"
            if args.ours_only
            else "no --kubeconfig"
            if kubeconfig is None
            else f"no stock cloudcore in {peer}"
        )
        store = "embedded store" if kubeconfig is None else "the real apiserver"
        fig.add("peer side", f"skipped ({why}): our figures on {store} alone, no ratios")
    api = KubeApi.from_config(kubeconfig, workers=args.concurrency) if kubeconfig else None
    sides: dict[str, list[dict[str, float]]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="peer-kubeedge-") as tmp:
            for pair in range(args.pairs):
                work = Path(tmp) / f"pair-{pair}"
                clouds: list[Cloud] = []
                if run_peer:
                    assert kubeconfig is not None
                    clouds.append(PeerCloud(peer, work, kubeconfig))
                clouds.append(OurCloud(work, kubeconfig))
                for cloud in clouds:
                    side = Side(cloud, args, work, api)
                    try:
                        await side.run()
                    except BaseException:
                        log.exception("%s side failed", cloud.label)
                        raise
                    sides.setdefault(cloud.label, []).append(side.results)
                    log.info("%s: %s", cloud.label, side.results)
    finally:
        if api is not None:
            await api.close()
    report(fig, sides, args)
    return True


def cli() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--peer-dir", type=Path, default=DEFAULT_PEER, help="stock KubeEdge build")
    p.add_argument(
        "--kubeconfig", type=Path, default=DEFAULT_KUBECONFIG, help="the API server both clouds use"
    )
    p.add_argument("--ours-only", action="store_true", help="skip stock cloudcore")
    p.add_argument("--pairs", type=int, default=1, help="peer/ours runs (default 1)")
    p.add_argument("--edges", type=int, default=20, help="stock edgecores (default 20)")
    p.add_argument("--pods", type=int, default=100, help="pods, round-robin (default 100)")
    p.add_argument("--updates", type=int, default=1000, help="saturated patches (default 1000)")
    p.add_argument("--concurrency", type=int, default=16, help="patches in flight (default 16)")
    p.add_argument("--rate", type=float, default=50.0, help="paced patches/s (default 50)")
    p.add_argument("--paced-seconds", type=float, default=10.0, help="paced phase (default 10)")
    p.add_argument(
        "--paced-poll-ms",
        type=float,
        default=5.0,
        help="how often the edges' rows are read in the paced phase, ms (default 5)",
    )
    p.add_argument(
        "--reconnect-pods", type=int, default=1000, help="pods on the reconnecting edge (0: skip)"
    )
    p.add_argument("--settle", type=float, default=5.0, help="quiet seconds before RSS figures")
    p.add_argument("--idle-seconds", type=float, default=10.0, help="idle CPU window (default 10)")
    p.add_argument("--deliver-timeout", type=float, default=120.0)
    p.add_argument("--timeout", type=float, default=1800.0, help="hard overall timeout (s)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    fig = Figures("stock KubeEdge peer, side by side")
    return run_benchmark(fig, main(args, fig), timeout=args.timeout)


if __name__ == "__main__":
    sys.exit(cli())
