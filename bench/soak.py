"""Soak: a small fleet under random faults, then proof that nothing was lost or reverted.

The run, all real processes on 127.0.0.1: one cloudhub (embedded store), ``--edges`` edgecores
(each with its internal mosquitto, heartbeat 1 s) that reach cloudhub through a
:class:`~tests.support.proxy.FaultProxy` each, one Device per edge with a twin mapper, and one
pod + configmap per edge. For ``--duration`` seconds:

- each mapper reports its device's ``count`` property every ``--report-interval`` seconds with
  a value one higher than the last (KubeEdge's MQTT twin protocol; the value is its sequence
  number), and counts a report *accepted* when the edge answers its ``twin/update/result``
  without an error (the edge committed it);
- every ``--change-interval`` seconds one edge's pod and configmap change through the admin API;
- about every ``--fault-interval`` seconds (exponentially distributed) one fault, each kind
  once per round of five in a random order: ``kill -9`` of cloudhub (restarted after a
  moment), of an edgecore (restarted), of an edge's mosquitto (edgecore restarts it), a link
  cut (RST both ways) or a blackhole (the link silently drops everything for 1-3 s, then its
  connections are reset);
- the cloud's Device status is polled: a device's reported version or value going backwards is
  a *revert*.

Then the faults and reports stop and the run waits until every edge matches the cloud:
for each device the cloud's reported value is at least the highest accepted one (an accepted
report whose value the cloud never reached is *lost*) and equals the edge's own; each edge's
local API serves its pod and configmap at the cloud's resourceVersion. RSS of cloudhub and the
edges (with their mosquittos) after the warm-up and at the end shows whether it grew.

Prints faults injected (per kind), reports accepted, lost (must be 0), reverts (must be 0),
time to converge after the last fault, and the RSS figures; exit code 0 when all checks pass.
``python bench/soak.py --help``; ``--edges 3 --duration 15`` is the test suite's short run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cloud import Admin, CloudHub
from bench.common import finish_workdir, setup_logging
from bench.measure import Figures, run_benchmark, tree_rss_kib
from bench.soak_parts import (
    NAMESPACE,
    CloudWatch,
    CountingMapper,
    SoakEdge,
    device_object,
    model_object,
    reported,
    workload,
)
from bench.twin_parts import EdgeCore
from tests.support.proxy import FaultProxy

log = logging.getLogger("soak")

#: the fault kinds, each drawn once per round
FAULTS = ("kill_cloudhub", "kill_edgecore", "kill_mosquitto", "cut_link", "blackhole")


class Soak:
    """The fleet, the background activity (changes, faults) and the convergence checks."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.workdir = workdir
        self.hub = CloudHub(workdir=workdir, extra_args=["--link-workers", "0"])
        self.edges: list[SoakEdge] = []
        self.faults: Counter[str] = Counter()
        self.changes = 0
        self.generation: dict[str, int] = {}
        self.last_fault_end = 0.0
        self.admin: Admin | None = None
        self._bag: list[str] = []

    async def setup(self) -> Admin:
        await self.hub.start()
        admin = Admin.for_hub(self.hub)
        self.admin = admin
        objects: list[dict[str, Any]] = [model_object()]
        for i in range(self.args.edges):
            node = f"soak-edge-{i}"
            proxy = FaultProxy()
            await proxy.start("127.0.0.1", self.hub.ws_port)
            core = EdgeCore(workdir=self.workdir / node, node=node)
            edge = SoakEdge(node, core, proxy)
            self.edges.append(edge)
            objects.append(device_object(edge.device, node))
            objects += workload(node, 0)
            self.generation[node] = 0
        await admin.apply(objects)
        for edge in self.edges:
            token = await admin.create_token(node=edge.node)
            await asyncio.to_thread(
                edge.core.join, hub=self.hub, token=token, ws_port=edge.proxy.port
            )
            # a 1 s keepalive: a blackholed link is noticed in 2 s, not 20
            edge.tune(heartbeat=1.0)
        await asyncio.gather(*(e.core.start() for e in self.edges))
        for edge in self.edges:
            edge.mapper = CountingMapper(
                edge.device, edge.core.mqtt_port, self.args.report_interval
            )
        return admin

    def rss_mib(self) -> float:
        pids = [self.hub.pid] + [e.core.pid for e in self.edges if e.core.running]
        return sum(tree_rss_kib(pid) for pid in pids) / 1024

    # -- background activity

    async def change(self, admin: Admin) -> None:
        while True:
            await asyncio.sleep(self.args.change_interval)
            node = self.rng.choice(self.edges).node
            self.generation[node] += 1
            try:
                await admin.apply(workload(node, self.generation[node]))
                self.changes += 1
            except Exception as exc:  # cloudhub down: the next change carries a newer one
                log.debug("change of %s not applied: %s", node, exc)

    async def inject(self, deadline: float) -> None:
        while True:
            wait = self.rng.expovariate(1 / self.args.fault_interval)
            if time.monotonic() + wait >= deadline:
                await asyncio.sleep(max(0.0, deadline - time.monotonic()))
                return
            await asyncio.sleep(wait)
            if not self._bag:  # every kind once per round, in a random order
                self._bag = self.rng.sample(FAULTS, len(FAULTS))
            kind = self._bag.pop()
            edge = self.rng.choice(self.edges)
            log.info("fault: %s%s", kind, "" if kind == "kill_cloudhub" else f" ({edge.node})")
            await self.fault(kind, edge)
            self.faults[kind] += 1
            self.last_fault_end = time.monotonic()

    async def fault(self, kind: str, edge: SoakEdge) -> None:
        pause = self.rng.uniform(0.2, 2.0)
        if kind == "kill_cloudhub":
            self._kill(self.hub.pid)
            await asyncio.sleep(pause)
            await self.hub.start()
        elif kind == "kill_edgecore":
            self._kill(edge.core.pid)
            await asyncio.sleep(pause)
            await edge.core.start()
        elif kind == "kill_mosquitto":
            pid = edge.core.find_broker()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        elif kind == "cut_link":
            edge.proxy.cut()
        elif kind == "blackhole":
            edge.proxy.freeze()
            await asyncio.sleep(self.rng.uniform(1.0, 3.0))
            edge.proxy.cut()
            edge.proxy.thaw()

    @staticmethod
    def _kill(pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)

    # -- the checks

    async def problems(self, admin: Admin) -> list[str]:
        """What still differs between the edges and the cloud (empty: converged)."""
        out: list[str] = []
        try:
            devices = {d["metadata"]["name"]: d for d in await admin.list("devices")}
        except Exception as exc:
            return [f"cloud not answering: {exc}"]
        for edge in self.edges:
            assert edge.mapper is not None
            cloud = reported(devices.get(edge.device, {}))
            value = cloud[1] if cloud else 0
            if value < edge.mapper.max_accepted:
                out.append(
                    f"{edge.device}: cloud has {value} < accepted {edge.mapper.max_accepted}"
                )
            local = await asyncio.to_thread(edge.twin_actual)
            if cloud is not None and local != str(value):
                out.append(f"{edge.device}: edge has {local}, cloud {value}")
            for plural in ("configmaps", "pods"):
                name = f"soak-{edge.node}"
                try:
                    want = (await admin.get(plural, NAMESPACE, name))["metadata"]["resourceVersion"]
                except Exception as exc:
                    out.append(f"{plural} {name}: {exc}")
                    continue
                got = await asyncio.to_thread(
                    edge.local, f"/api/v1/namespaces/{NAMESPACE}/{plural}/{name}"
                )
                have = (got or {}).get("metadata", {}).get("resourceVersion")
                if have != want:
                    out.append(f"{edge.node} {plural}/{name}: rv {have}, cloud {want}")
        return out

    async def converge(self, admin: Admin, timeout: float) -> tuple[bool, list[str]]:
        deadline = time.monotonic() + timeout
        while True:
            found = await self.problems(admin)
            if not found or time.monotonic() > deadline:
                return not found, found
            await asyncio.sleep(0.25)

    async def stop(self) -> None:
        for edge in self.edges:
            edge.core.stop()
            await edge.proxy.stop()
        self.hub.stop()
        if self.admin is not None:
            await self.admin.close()


async def run(args: argparse.Namespace, fig: Figures) -> bool:
    workdir = Path(tempfile.mkdtemp(prefix="edgebridge-soak-", dir=args.workdir))
    soak = Soak(args, workdir)
    tasks: list[asyncio.Task[None]] = []
    try:
        log.info("starting cloudhub and %d edges in %s", args.edges, workdir)
        admin = await soak.setup()
        mappers = [e.mapper for e in soak.edges if e.mapper is not None]
        tasks += [asyncio.create_task(m.run(), name=f"mapper:{m.device}") for m in mappers]
        ok, left = await soak.converge(admin, args.converge_timeout)
        if not ok:
            raise RuntimeError(f"the fleet did not come up: {left[:3]}")
        rss_start = soak.rss_mib()
        watch = CloudWatch(admin)
        tasks.append(asyncio.create_task(watch.run(), name="cloud-watch"))
        tasks.append(asyncio.create_task(soak.change(admin), name="changes"))
        started = time.monotonic()
        log.info(
            "soaking for %.0fs (a fault about every %.1fs)", args.duration, args.fault_interval
        )
        await soak.inject(started + args.duration)
        soak.last_fault_end = soak.last_fault_end or time.monotonic()
        for m in mappers:
            m.stop()
        await asyncio.gather(*tasks[: len(mappers)], return_exceptions=True)
        ok, left = await soak.converge(admin, args.converge_timeout)
        converged_after = time.monotonic() - soak.last_fault_end
        with contextlib.suppress(Exception):
            await watch.poll()
        rss_end = soak.rss_mib()
        lost = 0
        for edge in soak.edges:
            assert edge.mapper is not None
            final = watch.seen.get(edge.device)
            value = final[1] if final else 0
            lost += sum(1 for v in edge.mapper.accepted if v > value)
        for name, count in sorted(soak.faults.items()):
            fig.add(f"faults_{name}", count)
        fig.add("faults_injected", sum(soak.faults.values()))
        fig.add("object_changes_applied", soak.changes)
        fig.add("reports_sent", sum(m.sent for m in mappers))
        fig.add("reports_accepted", sum(len(m.accepted) for m in mappers))
        fig.add("lost", lost, "(accepted reports the cloud never reached; must be 0)")
        fig.add("reverts", len(watch.reverts), "(cloud values that went backwards; must be 0)")
        fig.add("converged", "yes" if ok else "no")
        fig.add("time_to_converge_after_last_fault", converged_after, "s")
        fig.add("rss_after_warmup", rss_start, "MiB (cloudhub + edgecores + mosquittos)")
        fig.add("rss_at_end", rss_end, "MiB")
        rss_ok = rss_end <= rss_start * 1.25 + 32
        fig.add("rss_grew", "no" if rss_ok else "yes")
        for problem in left[:10]:
            log.error("not converged: %s", problem)
        for revert in watch.reverts[:10]:
            log.error("revert: %s", revert)
        return ok and lost == 0 and not watch.reverts and rss_ok
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await soak.stop()
        finish_workdir(workdir, keep=args.keep)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="A fleet under random kill -9s, link cuts and blackholes; checks that no "
        "accepted report is lost, nothing reverts and every edge matches the cloud.",
        epilog="short run: python bench/soak.py --edges 3 --duration 15",
    )
    p.add_argument("--edges", type=int, default=10, help="edgecores, one device each (10)")
    p.add_argument("--duration", type=float, default=300.0, help="seconds of faults (300)")
    p.add_argument(
        "--fault-interval", type=float, default=5.0, help="mean seconds between faults (5)"
    )
    p.add_argument(
        "--report-interval", type=float, default=0.2, help="seconds between a mapper's reports"
    )
    p.add_argument(
        "--change-interval", type=float, default=1.0, help="seconds between object changes (1)"
    )
    p.add_argument(
        "--converge-timeout", type=float, default=60.0, help="seconds allowed to converge (60)"
    )
    p.add_argument("--seed", type=int, default=None, help="seed the fault schedule")
    p.add_argument("--workdir", type=Path, default=None, help="parent of the run's directory")
    p.add_argument("--keep", action="store_true", help="keep the run's directory and logs")
    p.add_argument("--timeout", type=float, default=None, help="hard limit (duration + 180 s)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.edges < 1 or args.duration <= 0 or args.fault_interval <= 0:
        p.error("--edges, --duration and --fault-interval must be positive")
    setup_logging(verbose=args.verbose, prefix="soak: ")
    fig = Figures("soak")
    timeout = args.timeout or args.duration + 180
    return run_benchmark(fig, run(args, fig), timeout=timeout)


if __name__ == "__main__":
    sys.exit(main())
