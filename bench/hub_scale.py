"""How many edge links one cloudhub holds, what each costs, and how fast updates reach them.

Why this shape: the claim to check is that one cloudhub process can hold a large fleet
(10,000 nodes by default) over real mutual-TLS websockets, and that delivering object updates
to them is not far from what the websocket stack itself can do. So the benchmark:

1. starts a real cloudhub (embedded store) and applies one Node object per simulated node;
2. connects N simulated edges from K client processes (this file re-run with ``--worker``),
   each edge stating an empty inventory and ACKing everything, keepalive every 15 s; a node
   counts as *held* once it received its Node object (it is connected *and* synced);
3. creates one pod on a sample of nodes, then pushes U annotation updates to those pods as fast
   as the admin API takes them (throughput phase), then ~200 updates/s for ~10 s (latency
   phase: each update carries ``bench/sent`` = wall clock at send time; edges record
   receive time minus that);
4. with only C of the N edges left connected, runs the throughput phase again, so that
   edgebridge is also measured at the baseline's connection count;
5. stops cloudhub and runs the baseline: a bare ``websockets`` echo server (same TLS, no
   compression) in its own process, driven by the same worker processes with C connections
   sending ~1 KB JSON and awaiting the echo. The ratio edgebridge/raw says how much of the
   ceiling cloudhub's own logic leaves on the table (printed for the full fleet and for C
   connections; bench/README.md says which is which);
6. when the fleet was larger than C, runs the echo again with as many connections as the
   fleet held, all but C of them idle and sending keepalives as idle edges do: the baseline
   at the same load as the full-fleet phase.

Client processes share the machine with cloudhub, so on a small box the figures are a floor:
they include the clients' CPU. The echo baseline is measured the same way, which keeps the
ratio meaningful.

Run ``python bench/hub_scale.py --help``; ``--quick`` checks the script in under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.children import Child, gather_events
from bench.cloud import Admin, CloudHub, bench_pod, node_object
from bench.common import add_run_options, finish_workdir, raise_nofile, setup_logging
from bench.hub_workers import NAMESPACE, echo_server_main, node_name, pod_name, worker_main
from bench.measure import (
    CpuMeter,
    Figures,
    PySpy,
    percentile,
    run_benchmark,
)

log = logging.getLogger(__name__)

THIS_FILE = Path(__file__).resolve()

PHASE_CREATE = "create"
PHASE_TPUT = "tput"
PHASE_LAT = "lat"
#: the throughput phase again, with only as many edges connected as the echo baseline uses
PHASE_TPUT_SAME = "tput-same"
#: seconds to wait after a burst of connects/disconnects before measuring: cloudhub freezes
#: the survivors of a burst for its garbage collector within 5 s (cloudhub.tuning)
SETTLE_MIN_WAIT = 6.0


# =============================================================================================
# driver
# =============================================================================================


@dataclass
class Plan:
    """Which nodes live in which worker."""

    ranges: list[tuple[int, int]]  # (first index, count) per worker

    def worker_of(self, index: int) -> int:
        for w, (first, count) in enumerate(self.ranges):
            if first <= index < first + count:
                return w
        raise IndexError(index)


def machine_meter(cloud_pid: int, workers: list[Child]) -> CpuMeter:
    """CPU of the server under test (cloudhub or the echo), the client workers and this driver
    (it builds the apply requests), so a phase's whole cost per message can be compared.

    The server counts with its descendants: cloudhub may spawn link worker processes that
    terminate TLS for it, and their CPU is cloudhub's. (The driver counts alone: cloudhub and
    the workers are its children.)"""
    return CpuMeter(
        {
            "server": [cloud_pid],
            "server_main": [cloud_pid],
            "clients": [w.proc.pid for w in workers],
            "driver": [os.getpid()],
        },
        trees=["server"],
        views=["server_main"],
    )


def server_seconds(cpu: dict[str, float]) -> float:
    """CPU seconds of the server under test in a phase :func:`machine_meter` measured."""
    return cpu["server"] / 100 * cpu["seconds"]


def main_seconds(cpu: dict[str, float]) -> float:
    """The same for cloudhub's own process, without its link workers."""
    return cpu["server_main"] / 100 * cpu["seconds"]


def add_machine_figures(fig: Figures, prefix: str, cpu: dict[str, float], events: float) -> float:
    """Per-process CPU of a phase and the machine CPU per message (server + clients + driver);
    returns the latter in µs."""
    raw = prefix.startswith("raw")
    server = "echo_server" if raw else "cloudhub"
    fig.add(f"{prefix}_cpu_{server}", cpu["server"], "% of a core")
    if not raw:
        fig.add(
            f"{prefix}_cpu_cloudhub_main",
            cpu["server_main"],
            "% of a core (the cloudhub process alone)",
        )
        fig.add(
            f"{prefix}_cpu_link_workers",
            cpu["server"] - cpu["server_main"],
            "% of a core (its link worker processes)",
        )
    fig.add(f"{prefix}_cpu_clients", cpu["clients"], "% of a core (all workers)")
    fig.add(f"{prefix}_cpu_driver", cpu["driver"], "% of a core (this script)")
    fig.add(f"{prefix}_host_busy", cpu["host_busy"], "% of all cores")
    fig.add(f"{prefix}_cpu_other_processes", cpu["others"], "% of a core (not ours)")
    ours = (cpu["server"] + cpu["clients"] + cpu["driver"]) / 100 * cpu["seconds"]
    per = ours / events * 1e6 if events else math.nan
    fig.add(f"{prefix}_machine_cpu_per_msg", per, "us (server, clients and driver)", digits=0)
    return per


def pod_update(node: str, phase: str, seq: int, sent: float) -> dict[str, Any]:
    return bench_pod(
        pod_name(node),
        node,
        namespace=NAMESPACE,
        annotations={"bench/phase": phase, "bench/seq": str(seq), "bench/sent": repr(sent)},
    )


class PodBodies:
    """Apply request bodies (``{"objects": [pod, ...]}`` as bytes), built from per-node JSON
    text templates of :func:`pod_update`'s pod.

    Why: the driver shares the 2-core machine with the server under test, so each µs it
    spends per update is taken from cloudhub. Building the pod dicts and ``json.dumps`` of a
    500-pod batch cost ~26 µs per update; filling three annotation values into a ready text
    costs ~1 µs. The bytes are exactly what ``json.dumps({"objects": [pod_update(...)]})``
    (aiohttp's ``json=``) gives, so the server receives the same request; each template is
    checked against that once, when it is cut.
    """

    #: stand for the three annotation values while a pod's JSON text is cut into a template
    _HOLES = ("\x00phase\x00", "\x00seq\x00", "\x00sent\x00")

    def __init__(self) -> None:
        #: node index -> the pod's text around the three annotation values
        self._parts: dict[int, tuple[str, str, str, str]] = {}

    def _template(self, node_idx: int) -> tuple[str, str, str, str]:
        node = node_name(node_idx)
        phase, seq, sent = self._HOLES
        # the same pod as pod_update's, with placeholders for the annotation values
        pod = bench_pod(
            pod_name(node),
            node,
            namespace=NAMESPACE,
            annotations={"bench/phase": phase, "bench/seq": seq, "bench/sent": sent},
        )
        text = json.dumps(pod)
        head, rest = text.split(json.dumps(phase))
        mid1, rest = rest.split(json.dumps(seq))
        mid2, tail = rest.split(json.dumps(sent))
        parts = (head, mid1, mid2, tail)
        esc = encode_basestring_ascii
        probe = self._fill(parts, esc("probe"), esc("7"), esc(repr(1234.5)))
        if probe != json.dumps(pod_update(node, "probe", 7, 1234.5)):
            raise RuntimeError(f"pod template for {node} does not match pod_update")
        self._parts[node_idx] = parts
        return parts

    @staticmethod
    def _fill(parts: tuple[str, str, str, str], phase: str, seq: str, sent: str) -> str:
        """The pod's text with the three values, each already a JSON string literal."""
        head, mid1, mid2, tail = parts
        return "".join((head, phase, mid1, seq, mid2, sent, tail))

    def body(self, chunk: list[tuple[int, int]], phase: str, sent: float) -> bytes:
        """The apply body for ``(node index, seq)`` pairs, all stamped ``phase`` and ``sent``
        (one ``sent`` for the whole batch, as before: the batch is stamped when built)."""
        esc = encode_basestring_ascii  # what json.dumps does to a str (ensure_ascii)
        phase_text = esc(phase)
        sent_text = esc(repr(sent))
        parts = self._parts
        pods = [
            self._fill(
                parts.get(node_idx) or self._template(node_idx),
                phase_text,
                esc(str(seq)),
                sent_text,
            )
            for node_idx, seq in chunk
        ]
        return ('{"objects": [' + ", ".join(pods) + "]}").encode("ascii")


#: shared by every phase: a node's template is cut once per run
POD_BODIES = PodBodies()


async def run_phase(
    *,
    phase: str,
    workers: list[Child],
    plan: Plan,
    sample: list[int],
    updates: list[int],
    admin: Admin,
    batch: int,
    concurrency: int,
    rate: float | None,
    converge_timeout: float,
) -> dict[str, float]:
    """Apply ``updates`` (indices into ``sample``), then wait until every edge ACKed the last one.

    With ``rate`` the batches are paced to that many updates per second; without, they go out
    as fast as ``concurrency`` parallel requests allow. Returns timing figures.
    """
    seqs: dict[int, int] = {}
    plan_updates: list[tuple[int, int]] = []
    for idx in updates:
        node_idx = sample[idx]
        seqs[node_idx] = seqs.get(node_idx, 0) + 1
        plan_updates.append((node_idx, seqs[node_idx]))
    finals: list[dict[str, int]] = [{} for _ in workers]
    for node_idx, seq in seqs.items():
        finals[plan.worker_of(node_idx)][node_name(node_idx)] = seq
    for w, child in enumerate(workers):
        child.send({"cmd": "expect", "phase": phase, "final": finals[w]})
    await gather_events(workers, "expecting", 30)

    sem = asyncio.Semaphore(concurrency)
    bodies = POD_BODIES
    last_accept = 0.0
    errors = 0

    async def send(chunk: list[tuple[int, int]]) -> None:
        nonlocal last_accept, errors
        async with sem:
            body = bodies.body(chunk, phase, time.time())
            try:
                # the response lists every stored object; parsing it would cost the driver
                # ~13 µs per update of the CPU it shares with cloudhub, for nothing
                await admin.apply_body(body)
            except Exception as exc:
                errors += 1
                log.warning("apply failed: %s", exc)
            last_accept = max(last_accept, time.time())

    t_start = time.time()
    tasks: list[asyncio.Task[None]] = []
    chunks = [plan_updates[i : i + batch] for i in range(0, len(plan_updates), batch)]
    if rate is None:
        await asyncio.gather(*(send(c) for c in chunks))
    else:
        interval = batch / rate
        mono0 = time.monotonic()
        for k, chunk in enumerate(chunks):
            delay = mono0 + k * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(chunk)))
        await asyncio.gather(*tasks)
    applied_at = time.time()
    log.info(
        "%s: %d updates accepted in %.1fs (%.0f/s); waiting for edges",
        phase,
        len(plan_updates),
        applied_at - t_start,
        len(plan_updates) / max(1e-9, applied_at - t_start),
    )
    converged = await asyncio.gather(
        *(c.expect("converged", converge_timeout, phase=phase) for c in workers),
        return_exceptions=True,
    )
    ends = [e["t"] for e in converged if isinstance(e, dict)]
    missing = sum(1 for e in converged if not isinstance(e, dict))
    if missing:
        log.warning("%s: %d worker(s) did not converge in %.0fs", phase, missing, converge_timeout)
        for child in workers:
            child.send({"cmd": "status", "phase": phase})
        for st in await gather_events(workers, "status", 30):
            if st["remaining"]:
                log.warning(
                    "  %d pods never reached their last update, e.g. %s",
                    st["remaining"],
                    st["remaining_sample"],
                )
    t_end = max(ends, default=math.nan)
    return {
        "start": t_start,
        "accepted": applied_at,
        "last_accept": last_accept,
        "end": t_end,
        "updates": float(len(plan_updates)),
        "errors": float(errors),
        "unconverged_workers": float(missing),
    }


async def driver(args: argparse.Namespace, fig: Figures) -> None:
    nofile = raise_nofile()
    log.info("open-file limit %d (inherited by cloudhub and workers)", nofile)
    workdir = Path(tempfile.mkdtemp(prefix="edgebridge-hub-scale-", dir=args.workdir))
    workers: list[Child] = []
    echo: Child | None = None
    extra = [] if args.link_workers is None else ["--link-workers", args.link_workers]
    hub = CloudHub(workdir=workdir, verbose=args.verbose_cloud, extra_args=extra)
    try:
        await hub.start()
        admin = Admin.for_hub(hub, limit=max(8, args.apply_concurrency * 2))
        try:
            await _edgebridge_phases(args, fig, hub, admin, workdir, workers)
        finally:
            await admin.close()
        if workers:
            for w in workers:
                w.send({"cmd": "disconnect"})
            await gather_events(workers, "disconnected", 60)
        hub.stop()
        if args.echo_seconds > 0 and workers:
            echo = await Child.spawn(
                "echo-server",
                THIS_FILE,
                [
                    "--echo-server",
                    "--data-dir",
                    str(hub.data_dir),
                    "--cert-dir",
                    str(workdir / "certs"),
                ],
            )
            port = (await echo.expect("listening", 30))["port"]
            await _echo_phase(args, fig, workers, port, echo)
    finally:
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
        if echo is not None:
            await echo.stop()
        hub.stop()
        finish_workdir(workdir, keep=args.keep)


async def _edgebridge_phases(
    args: argparse.Namespace,
    fig: Figures,
    hub: CloudHub,
    admin: Admin,
    workdir: Path,
    workers: list[Child],
) -> None:
    n = args.nodes
    k = max(1, min(args.workers, n))
    rss_idle = hub.rss_kib()
    t = time.time()
    await admin.apply_batched([node_object(node_name(i)) for i in range(n)], batch=500)
    log.info("applied %d Node objects in %.1fs", n, time.time() - t)

    base, extra = divmod(n, k)
    ranges: list[tuple[int, int]] = []
    first = 0
    for w in range(k):
        count = base + (1 if w < extra else 0)
        ranges.append((first, count))
        first += count
    plan = Plan(ranges)
    per_worker_conc = max(1, args.connect_concurrency // k)
    for w, (first_i, count) in enumerate(ranges):
        workers.append(
            await Child.spawn(
                f"worker-{w}",
                THIS_FILE,
                [
                    "--worker",
                    "--worker-index",
                    str(w),
                    "--first",
                    str(first_i),
                    "--count",
                    str(count),
                    "--ws-port",
                    str(hub.ws_port),
                    "--data-dir",
                    str(hub.data_dir),
                    "--cert-dir",
                    str(workdir / "certs"),
                    "--heartbeat",
                    str(args.heartbeat),
                    "--connect-concurrency",
                    str(per_worker_conc),
                    "--sync-timeout",
                    str(args.connect_timeout),
                    "--connect-attempts",
                    str(args.connect_attempts),
                ]
                + (["-v"] if args.verbose else []),
            )
        )
    await gather_events(workers, "ready", 300)
    await asyncio.sleep(1.0)
    rss_before = hub.rss_kib()
    rss_before_tree = hub.rss_kib_with_children()
    cpu_before = hub.cpu_seconds()
    log.info("connecting %d nodes from %d workers (cloudhub RSS %d KiB)", n, k, rss_before)

    t0 = time.time()
    for child in workers:
        child.send({"cmd": "connect"})

    async def report_progress() -> None:
        while True:
            await asyncio.sleep(5.0)
            conn = sum(w.progress.get("connected", 0) for w in workers)
            synced = sum(w.progress.get("synced", 0) for w in workers)
            log.info(
                "  %5.0fs: %d connected, %d synced; cloudhub RSS %d KiB",
                time.time() - t0,
                conn,
                synced,
                hub.rss_kib() if hub.running else 0,
            )

    ticker = asyncio.create_task(report_progress())
    try:
        results = await asyncio.gather(
            *(w.expect("connected", args.connect_timeout * 2 + 60) for w in workers),
            return_exceptions=True,
        )
    finally:
        ticker.cancel()
    done = [r for r in results if isinstance(r, dict)]
    connected = sum(r["ok"] for r in done)
    failed = sum(r["failed"] for r in done)
    synced = sum(r["synced"] for r in done)
    t_last = max((r["t_last_sync"] for r in done), default=math.nan)
    delays = [d for r in done for d in r["sync_delays"]]
    for r in done:
        for e in r["errors"]:
            log.warning("connect error: %s", e)
    connect_s = t_last - t0
    cpu_connected, t_connected = hub.cpu_seconds(), time.monotonic()
    cpu_connect = cpu_connected - cpu_before
    log.info("%d/%d nodes connected and synced in %.1fs (%d failed)", synced, n, connect_s, failed)
    await asyncio.sleep(2.0)
    rss_after = hub.rss_kib()
    rss_after_tree = hub.rss_kib_with_children()

    fig.add("nodes_requested", n, "nodes")
    fig.add("nodes_connected", connected, "nodes")
    fig.add("nodes_failed", failed, "nodes")
    fig.add("nodes_held", synced, "nodes (connected and synced)")
    fig.add("connect_time", connect_s, "s (first connect -> last node synced)")
    fig.add("connect_rate", synced / connect_s if connect_s > 0 else math.nan, "nodes/s")
    fig.add("sync_delay_p50", percentile(delays, 50) * 1000, "ms (connect -> Node received)")
    fig.add("sync_delay_p99", percentile(delays, 99) * 1000, "ms")
    fig.add("cloudhub_cpu_connect", cpu_connect, "s CPU during connect")
    fig.add(
        "cloudhub_cpu_per_connect",
        cpu_connect / synced * 1000 if synced else math.nan,
        "ms CPU per node",
    )
    fig.add("cloudhub_rss_idle", rss_idle, "KiB (fresh, no objects)")
    fig.add("cloudhub_rss_before", rss_before, "KiB (Node objects stored, no links)")
    fig.add("cloudhub_rss_after", rss_after, "KiB (all links up)")
    fig.add(
        "rss_per_node",
        (rss_after - rss_before) / synced if synced else math.nan,
        "KiB per connected node",
    )
    # with cloudhub's descendants (link workers); shared pages count once per process
    fig.add("cloudhub_rss_after_with_children", rss_after_tree, "KiB (all links up)")
    fig.add(
        "rss_per_node_with_children",
        (rss_after_tree - rss_before_tree) / synced if synced else math.nan,
        "KiB per connected node (cloudhub and its child processes)",
    )
    if synced == 0:
        raise RuntimeError("no node could connect; see the cloudhub log")

    # -- the burst's after-effects: Nodes marked Ready, the GC freeze after a burst -----------
    await _settle(hub, min_wait=SETTLE_MIN_WAIT)
    fig.add(
        "cloudhub_cpu_settle",
        hub.cpu_seconds() - cpu_connected,
        "s CPU from the last node synced until cloudhub went quiet",
    )
    fig.add("settle_time", time.monotonic() - t_connected, "s (idem)")

    # -- holding the fleet with nothing to deliver: keepalives only ----------------------------
    if args.idle_seconds > 0:
        log.info("idle phase: %.0fs with every link up and nothing to deliver", args.idle_seconds)
        cpu_idle0 = hub.cpu_seconds()
        await asyncio.sleep(args.idle_seconds)
        idle_cpu = (hub.cpu_seconds() - cpu_idle0) / args.idle_seconds
        fig.add("cloudhub_idle_cpu", idle_cpu * 100, "% of a core holding the fleet (keepalives)")
        args.measured["idle_cpu"] = idle_cpu

    # -- observing the fleet: /metrics and the fleet page with every link up -----------------
    await _observing_costs(fig, hub, admin, synced, requests=args.scrapes)

    # -- pods on a sample of the held nodes ---------------------------------------------------
    statuses = []
    for child in workers:
        child.send({"cmd": "status"})
    statuses = await gather_events(workers, "status", 60)
    unsynced = {name for s in statuses for name in s["unsynced"]}
    held = [i for i in range(n) if node_name(i) not in unsynced]
    p = min(args.pods, len(held))
    sample = [held[(j * len(held)) // p] for j in range(p)]
    log.info("creating %d pods on %d nodes", p, p)
    create = await run_phase(
        phase=PHASE_CREATE,
        workers=workers,
        plan=plan,
        sample=sample,
        updates=list(range(p)),
        admin=admin,
        batch=500,
        concurrency=1,
        rate=None,
        converge_timeout=args.converge_timeout,
    )
    fig.add("pods", p, "pods (one per sampled node)")
    fig.add("pod_create_time", create["end"] - create["start"], "s (apply -> all ACKed)")

    # -- throughput ---------------------------------------------------------------------------
    log.info("throughput phase: %d updates, batches of %d", args.updates, args.batch)
    profiler = PySpy(pid=hub.pid, out=workdir / "cloudhub-profile.txt") if args.profile else None
    if profiler is not None:
        profiler.start()
    meter = machine_meter(hub.pid, workers)
    meter.start()
    tput = await run_phase(
        phase=PHASE_TPUT,
        workers=workers,
        plan=plan,
        sample=sample,
        updates=[j % p for j in range(args.updates)],
        admin=admin,
        batch=args.batch,
        concurrency=args.apply_concurrency,
        rate=None,
        converge_timeout=args.converge_timeout,
    )
    tput_machine = meter.stop()
    cpu_tput = server_seconds(tput_machine)
    # -- latency ------------------------------------------------------------------------------
    lat_updates = round(args.latency_rate * args.latency_seconds)
    log.info("latency phase: %d updates at %.0f/s", lat_updates, args.latency_rate)
    lat = await run_phase(
        phase=PHASE_LAT,
        workers=workers,
        plan=plan,
        sample=sample,
        updates=[j % p for j in range(lat_updates)],
        admin=admin,
        batch=args.latency_batch,
        concurrency=8,
        rate=args.latency_rate,
        converge_timeout=args.converge_timeout,
    )

    if profiler is not None:
        profiler.stop()
    for child in workers:
        child.send({"cmd": "report"})
    reports = await gather_events(workers, "report", 120)
    rss_end = hub.rss_kib()
    rss_end_tree = hub.rss_kib_with_children()
    peak = hub.peak_rss_kib()

    acked = {ph: sum(r["acked"].get(ph, 0) for r in reports) for ph in (PHASE_TPUT, PHASE_LAT)}
    lat_values = [v for r in reports for v in r["latencies"].get(PHASE_LAT, [])]
    tput_lat = [v for r in reports for v in r["latencies"].get(PHASE_TPUT, [])]
    total_bytes = sum(r["bytes"] for r in reports)
    total_msgs = sum(r["messages"] for r in reports)
    held_end = sum(r["synced"] for r in reports)
    reasons: dict[str, int] = {}
    for r in reports:
        for reason, c in r["close_reasons"].items():
            reasons[reason] = reasons.get(reason, 0) + c

    tput_s = tput["end"] - tput["start"]
    updates_per_s = tput["updates"] / tput_s if tput_s > 0 else math.nan
    delivered_per_s = acked[PHASE_TPUT] / tput_s if tput_s > 0 else math.nan
    fig.add("tput_updates", int(tput["updates"]), "updates applied")
    fig.add(
        "tput_apply_rate",
        tput["updates"] / (tput["accepted"] - tput["start"]),
        "updates/s accepted by the admin API",
    )
    fig.add("tput_time", tput_s, "s (first apply -> last pod's final version ACKed)")
    fig.add("tput_delivered_msgs", acked[PHASE_TPUT], "pod messages delivered+ACKed")
    fig.add("edgebridge_updates_per_s", updates_per_s, "updates/s (applied and converged)")
    fig.add("edgebridge_delivered_per_s", delivered_per_s, "messages/s delivered+ACKed")
    fig.add(
        "tput_coalesced",
        int(tput["updates"]) - acked[PHASE_TPUT],
        "updates superseded before delivery (latest wins)",
    )
    fig.add("tput_latency_p50", percentile(tput_lat, 50) * 1000, "ms (under saturation)")
    fig.add("tput_latency_p99", percentile(tput_lat, 99) * 1000, "ms (under saturation)")
    fig.add("cloudhub_cpu_per_update", cpu_tput / tput["updates"] * 1e6, "us CPU per update")
    args.measured["hub_us"] = cpu_tput / tput["updates"] * 1e6
    args.measured["hub_main_us"] = main_seconds(tput_machine) / tput["updates"] * 1e6
    args.measured["machine_us"] = add_machine_figures(fig, "tput", tput_machine, tput["updates"])
    args.measured["full_fleet_machine_us"] = args.measured["machine_us"]
    if "idle_cpu" in args.measured:
        net = cpu_tput - args.measured["idle_cpu"] * tput_s
        fig.add(
            "cloudhub_cpu_per_update_net",
            net / tput["updates"] * 1e6,
            "us CPU per update, the idle phase's keepalive load subtracted",
        )
    fig.add("apply_errors", int(tput["errors"] + lat["errors"] + create["errors"]), "requests")
    fig.add("latency_updates", int(lat["updates"]), "updates")
    lat_rate = lat["updates"] / max(1e-9, lat["accepted"] - lat["start"])
    fig.add("latency_rate", lat_rate, "updates/s achieved")
    fig.add("latency_received", len(lat_values), "pod messages")
    fig.add("latency_p50", percentile(lat_values, 50) * 1000, "ms (apply sent -> edge received)")
    fig.add("latency_p99", percentile(lat_values, 99) * 1000, "ms")
    fig.add("latency_max", max(lat_values, default=math.nan) * 1000, "ms")
    avg_msg = total_bytes / total_msgs if total_msgs else 0.0
    fig.add("avg_object_message", avg_msg, "bytes")
    fig.add("cloudhub_rss_end", rss_end, "KiB")
    fig.add("cloudhub_rss_peak", peak, "KiB (VmHWM)")
    fig.add("cloudhub_rss_end_with_children", rss_end_tree, "KiB (cloudhub and its children)")
    fig.add("nodes_held_end", held_end, "nodes still connected and synced at the end")
    for reason, c in sorted(reasons.items(), key=lambda kv: -kv[1])[:5]:
        log.warning("%d links closed: %s", c, reason)
    args.measured.update(
        updates_per_s=updates_per_s,
        delivered_per_s=delivered_per_s,
        avg_msg=avg_msg,
        fleet=held_end,
    )
    if args.echo_seconds > 0 and min(args.echo_conns, len(held)) < held_end:
        await _same_conns_phase(args, fig, hub, admin, workers, plan, sample, held)


async def _request_cost(
    hub: CloudHub, admin: Admin, path: str, requests: int
) -> tuple[float, float, str]:
    """cloudhub CPU per GET of ``path`` (its CPU while idle over as long subtracted: the
    fleet's keepalives go on), the median wall time, and the last body."""
    cpu0, t0 = hub.cpu_seconds(), time.monotonic()
    await asyncio.sleep(2.0)
    idle_rate = (hub.cpu_seconds() - cpu0) / (time.monotonic() - t0)
    walls: list[float] = []
    body = ""
    cpu1, t1 = hub.cpu_seconds(), time.monotonic()
    for _ in range(requests):
        start = time.monotonic()
        body = await admin.get_text(path)
        walls.append(time.monotonic() - start)
    spent = hub.cpu_seconds() - cpu1 - idle_rate * (time.monotonic() - t1)
    return max(0.0, spent) / requests, percentile(walls, 50), body


async def _observing_costs(
    fig: Figures, hub: CloudHub, admin: Admin, held: int, *, requests: int
) -> None:
    """What scraping ``/metrics`` and viewing the fleet page cost with the whole fleet held,
    against the cheapest HTTPS request (``/healthz``) measured the same way: the baseline."""
    log.info("observing phase: %d scrapes of /metrics, %d fleet page views", requests, requests)
    base_cpu, _, _ = await _request_cost(hub, admin, "/healthz", requests)
    cpu, wall, text = await _request_cost(hub, admin, "/metrics", requests)
    line = next(
        (x for x in text.splitlines() if x.startswith("edgebridge_cloud_connected_edges ")), ""
    )
    fig.add("metrics_connected_edges", float(line.split()[-1]) if line else math.nan, "edges")
    fig.add("metrics_scrape_cpu", cpu * 1000, f"ms cloudhub CPU per scrape ({held} edges held)")
    fig.add("metrics_scrape_wall", wall * 1000, "ms per scrape (median)")
    fig.add("healthz_cpu", base_cpu * 1000, "ms cloudhub CPU per /healthz (baseline)")
    fig.add(
        "metrics_scrape_vs_healthz",
        cpu / base_cpu if base_cpu > 0 else math.nan,
        "x (scrape CPU / baseline CPU)",
    )
    await admin.get_text(f"/ui/?token={hub.admin_token}")  # log in: the session cookie
    cpu, wall, _ = await _request_cost(hub, admin, "/ui/", requests)
    fig.add("fleet_page_cpu", cpu * 1000, "ms cloudhub CPU per fleet page view (first page)")
    fig.add("fleet_page_wall", wall * 1000, "ms per fleet page view (median)")


async def _same_conns_phase(
    args: argparse.Namespace,
    fig: Figures,
    hub: CloudHub,
    admin: Admin,
    workers: list[Child],
    plan: Plan,
    sample: list[int],
    held: list[int],
) -> None:
    """The throughput phase again with only ``--echo-conns`` edges connected.

    The echo baseline runs over ``--echo-conns`` connections; the full-fleet phase has every
    node connected (each idle link costs its keepalives, each live session its share of the
    hub's bookkeeping). Measuring edgebridge at the echo's connection count as well makes the
    comparison like for like; both figures are printed.
    """
    conns = min(args.echo_conns, len(held))
    k = min(conns, len(sample))
    active = [sample[(j * len(sample)) // k] for j in range(k)]
    keep = set(active)
    for i in held:  # more connections than pods: idle ones, as in the full fleet
        if len(keep) >= conns:
            break
        keep.add(i)
    names = [node_name(i) for i in sorted(keep)]
    for child in workers:
        child.send({"cmd": "keep_only", "nodes": names})
    kept = sum(e["open"] for e in await gather_events(workers, "kept", 120))
    await _settle(hub, min_wait=SETTLE_MIN_WAIT)
    log.info("throughput phase at %d connections (%d pods updated)", kept, k)
    meter = machine_meter(hub.pid, workers)
    meter.start()
    res = await run_phase(
        phase=PHASE_TPUT_SAME,
        workers=workers,
        plan=plan,
        sample=active,
        updates=[j % k for j in range(args.updates)],
        admin=admin,
        batch=args.batch,
        concurrency=args.apply_concurrency,
        rate=None,
        converge_timeout=args.converge_timeout,
    )
    machine = meter.stop()
    cpu = server_seconds(machine)
    for child in workers:
        child.send({"cmd": "report"})
    reports = await gather_events(workers, "report", 120)
    delivered = sum(r["acked"].get(PHASE_TPUT_SAME, 0) for r in reports)
    secs = res["end"] - res["start"]
    rate = res["updates"] / secs if secs > 0 else math.nan
    fig.add("same_conns_nodes", kept, "edges connected (the echo baseline's connection count)")
    fig.add("same_conns_pods", k, "pods updated")
    fig.add("edgebridge_updates_per_s_same_conns", rate, "updates/s (applied and converged)")
    fig.add(
        "edgebridge_delivered_per_s_same_conns",
        delivered / secs if secs > 0 else math.nan,
        "messages/s delivered+ACKed",
    )
    fig.add(
        "cloudhub_cpu_per_update_same_conns",
        cpu / res["updates"] * 1e6 if res["updates"] else math.nan,
        "us CPU per update",
    )
    args.measured["updates_per_s_same_conns"] = rate
    if res["updates"]:
        args.measured["hub_us"] = cpu / res["updates"] * 1e6
        args.measured["hub_main_us"] = main_seconds(machine) / res["updates"] * 1e6
        args.measured["machine_us"] = add_machine_figures(
            fig, "same_conns", machine, res["updates"]
        )


async def _settle(
    hub: CloudHub, *, min_wait: float = 0.0, quiet: float = 0.25, timeout: float = 60.0
) -> None:
    """Wait at least ``min_wait`` seconds, then until cloudhub uses less than ``quiet`` of a
    core over a second: the after-effects of a burst of connects or disconnects (Nodes marked
    Ready or not, the GC freeze) are over."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        before = hub.cpu_seconds()
        await asyncio.sleep(1.0)
        if time.monotonic() - start >= min_wait and hub.cpu_seconds() - before < quiet:
            return


async def _echo_phase(
    args: argparse.Namespace, fig: Figures, workers: list[Child], port: int, echo: Child
) -> None:
    cores = os.cpu_count() or 1
    raw = await _echo_run(args, fig, workers, port, echo, prefix="raw", idle=0)
    fig.ratio("ratio_updates_vs_raw", args.measured["updates_per_s"], raw)
    fig.ratio("ratio_delivered_vs_raw", args.measured["delivered_per_s"], raw)
    same = args.measured.get("updates_per_s_same_conns")
    if same is not None:
        fig.ratio("ratio_updates_vs_raw_same_conns", same, raw)
    # What the ratio could be at most on this machine, from CPU alone (the phase measured last,
    # over the echo's connection count when there was one): if our run filled every core, and
    # if one cloudhub process had a whole core to itself.
    if "machine_us" in args.measured:
        fig.ratio("ratio_ceiling_cpu", cores * 1e6 / args.measured["machine_us"], raw)
        fig.ratio("ratio_ceiling_one_process", 1e6 / args.measured["hub_main_us"], raw)
    idle = int(args.measured.get("fleet", 0)) - args.echo_conns
    if args.echo_fleet and idle > 0:
        fleet = await _echo_run(args, fig, workers, port, echo, prefix="raw_full_fleet", idle=idle)
        fig.ratio("ratio_updates_vs_raw_full_fleet", args.measured["updates_per_s"], fleet)
        fig.ratio(
            "ratio_ceiling_cpu_full_fleet",
            cores * 1e6 / args.measured["full_fleet_machine_us"],
            fleet,
        )


async def _echo_run(
    args: argparse.Namespace,
    fig: Figures,
    workers: list[Child],
    port: int,
    echo: Child,
    *,
    prefix: str,
    idle: int,
) -> float:
    """One echo run over ``--echo-conns`` busy connections plus ``idle`` ones that only send
    keepalives; its figures under ``prefix``. Returns its round trips per second."""
    k = len(workers)
    conns = args.echo_conns
    per = [conns // k + (1 if w < conns % k else 0) for w in range(k)]
    per_idle = [idle // k + (1 if w < idle % k else 0) for w in range(k)]
    url = f"wss://127.0.0.1:{port}/echo"
    for w, child in enumerate(workers):
        child.send({"cmd": "echo_connect", "url": url, "conns": per[w], "idle": per_idle[w]})
    got = await gather_events(workers, "echo_connected", 600)
    n_conns = sum(g["n"] for g in got)
    n_idle = sum(g.get("idle", 0) for g in got)
    payload = int(args.measured.get("avg_msg") or 1000) or 1000
    log.info(
        "raw echo baseline: %d busy connections (%d more idle, keepalives only), "
        "%d-byte JSON, %.0fs",
        n_conns,
        n_idle,
        payload,
        args.echo_seconds,
    )
    meter = machine_meter(echo.proc.pid, workers)
    meter.start()
    for child in workers:
        child.send({"cmd": "echo_run", "payload": payload, "seconds": args.echo_seconds})
    done = await gather_events(workers, "echo_done", args.echo_seconds + 120)
    machine = meter.stop()
    cpu = server_seconds(machine)
    roundtrips = sum(d["roundtrips"] for d in done)
    seconds = max(d["seconds"] for d in done)
    raw = roundtrips / seconds if seconds > 0 else math.nan
    if idle:
        fig.add(f"{prefix}_connections", n_conns + n_idle, f"echo connections, {n_idle} idle")
        fig.add(f"{prefix}_roundtrips_per_s", raw, "round trips/s on the busy connections")
    else:
        fig.add(f"{prefix}_connections", n_conns, "echo connections")
        fig.add(f"{prefix}_payload", payload, "bytes per message")
        fig.add(
            f"{prefix}_roundtrips_per_s",
            raw,
            "round trips/s (websockets echo, TLS, no compression)",
        )
    fig.add(
        f"{prefix}_server_cpu_per_roundtrip",
        cpu / roundtrips * 1e6 if roundtrips else math.nan,
        "us CPU of the echo server per round trip",
    )
    add_machine_figures(fig, prefix, machine, roundtrips)
    return raw


# =============================================================================================
# command line
# =============================================================================================


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Connect N simulated edge nodes to one cloudhub; measure memory per link, "
        "update throughput and latency, and compare with a raw websockets echo baseline.",
        epilog="example: python bench/hub_scale.py --nodes 2000 --updates 10000",
    )
    p.add_argument("--nodes", type=int, default=10_000, help="simulated edge nodes (10000)")
    p.add_argument("--workers", type=int, default=4, help="client processes (4)")
    p.add_argument("--updates", type=int, default=20_000, help="pod updates, throughput (20000)")
    p.add_argument("--pods", type=int, default=1000, help="pods, one per sampled node (1000)")
    p.add_argument("--batch", type=int, default=500, help="updates per apply request (500)")
    p.add_argument(
        "--apply-concurrency",
        type=int,
        default=2,
        help="apply requests in flight in the throughput phase (2)",
    )
    p.add_argument(
        "--latency-rate", type=float, default=200.0, help="updates/s in the latency phase (200)"
    )
    p.add_argument(
        "--latency-seconds", type=float, default=10.0, help="length of the latency phase (10)"
    )
    p.add_argument(
        "--latency-batch",
        type=int,
        default=10,
        help="updates per apply request in the latency phase (10)",
    )
    p.add_argument("--echo-conns", type=int, default=1000, help="raw baseline connections (1000)")
    p.add_argument(
        "--no-echo-fleet",
        dest="echo_fleet",
        action="store_false",
        help="skip the second echo run, over as many connections as the fleet held (all but "
        "--echo-conns of them idle, sending keepalives)",
    )
    p.add_argument(
        "--echo-seconds", type=float, default=10.0, help="raw baseline duration; 0 skips it (10)"
    )
    p.add_argument("--heartbeat", type=float, default=15.0, help="edge keepalive, seconds (15)")
    p.add_argument(
        "--scrapes",
        type=int,
        default=20,
        help="GETs of /metrics, of the fleet page and of /healthz (their baseline) with the "
        "fleet held (default 20)",
    )
    p.add_argument(
        "--idle-seconds",
        type=float,
        default=15.0,
        help="measure cloudhub's CPU this long with all links up and no updates; 0 skips (15)",
    )
    p.add_argument(
        "--connect-concurrency",
        type=int,
        default=64,
        help="TLS handshakes in flight, all workers together (64)",
    )
    p.add_argument("--connect-attempts", type=int, default=5, help="tries per node (5)")
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=600.0,
        help="seconds to wait for all nodes to sync after connecting (600)",
    )
    p.add_argument(
        "--converge-timeout",
        type=float,
        default=300.0,
        help="seconds to wait for edges to ACK a phase's last updates (300)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="500 nodes, 2000 updates, short phases: checks the script in < 1 min",
    )
    p.add_argument("--verbose-cloud", action="store_true", help="run cloudhub with -v")
    p.add_argument(
        "--link-workers",
        default=None,
        metavar="N",
        help="cloudhub's --link-workers (default: cloudhub's own, auto); 0 compares with "
        "everything in one process",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="sample cloudhub with py-spy during the update phases; summary on stderr",
    )
    add_run_options(p, timeout=1800, keeps="cloudhub log, certs")
    # internal: the same file runs as a client worker or as the echo server
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--ws-port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--data-dir", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--cert-dir", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--sync-timeout", type=float, default=600.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.nodes = min(args.nodes, 500)
        args.updates = min(args.updates, 2000)
        args.pods = min(args.pods, 500)
        args.latency_seconds = min(args.latency_seconds, 3.0)
        args.echo_seconds = min(args.echo_seconds, 3.0)
        args.echo_conns = min(args.echo_conns, 200)
        args.idle_seconds = min(args.idle_seconds, 3.0)
        args.timeout = min(args.timeout, 120.0)
    args.measured = {}
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker or args.echo_server:
        setup_logging(verbose=args.verbose, prefix=f"[w{args.worker_index}] ")
        with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
            asyncio.run(worker_main(args) if args.worker else echo_server_main(args))
        return 0
    setup_logging(verbose=args.verbose)
    fig = Figures(f"hub_scale nodes={args.nodes} workers={args.workers} updates={args.updates}")
    return run_benchmark(
        fig, driver(args, fig), timeout=args.timeout, pass_fail=False, catch_interrupt=True
    )


if __name__ == "__main__":
    sys.exit(main())
