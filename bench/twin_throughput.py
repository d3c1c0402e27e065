"""How many reported twin values per second one edge takes, and how soon the cloud shows them.

Why this shape: the claim to check (issue 4, "Bench") is that a real edgecore accepts at least
3,000 reported updates/s from its mappers on a 2-core box, with every acknowledged update
durable (SQLite ``synchronous=FULL``, group commit), that the cloud shows them as
``status.twins[].reported`` with a p99 lag under 1 s, and that this is at least half of what
the MQTT broker itself carries with the same client library. So the benchmark runs the real
thing end to end, all on 127.0.0.1:

1. baseline: a plain mosquitto configured exactly as edgecore configures its own
   (:class:`edgecore.eventbus.broker.Mosquitto`: persistence, ``max_inflight_messages 200``,
   TCP_NODELAY); the same paho client processes publish the same payload at QoS 1 as fast as
   paho lets them, and one paho subscriber (QoS 1, the one consumer, like edgecore) counts
   what arrives. That is ``raw_qos1_msgs_per_s``: a one-way pub->sub through the broker;
2. a real ``cloudhub`` (embedded store) and a real ``edgecore`` (``join`` with a token, then
   ``run`` with its internal mosquitto on a free port); one DeviceModel and M Devices bound
   to the edge, applied through the admin API;
3. M simulated mappers (paho, QoS 1, one MQTT connection per device, spread over a few
   worker processes; each worker drives its clients from one ``selectors`` loop, no thread
   per client) publish ``$hw/events/device/{id}/twin/update`` with an ``actual`` value at a
   target aggregate rate, step by step (1000, 3000, 6000, 8000, 10000, 12000 updates/s by default),
   and count the ``.../twin/update/result`` answers;
4. meanwhile a poller reads a sample of the Devices from the cloud's admin API every few
   tens of milliseconds to time when each reported value becomes visible there.

How the figures are measured:

- *accepted updates/s*: results without ``code`` or with ``code`` 200 that arrived during the
  step, divided by its length. Each mapper keeps at most ``--window`` updates unanswered (a
  mapper that waited for nothing would only grow queues); a send due while its window is full
  is skipped and counted as ``throttled``, so ``throttled > 0`` means the edge is saturated.
- *ack latency*: mapper publish -> its result (the edge answers only after the commit).
- *visibility lag*: every reported value is the mapper's wall clock at publish time (seconds
  since the run began, a valid FLOAT). The poller GETs each sampled device in turn; the first
  response showing a new value gives ``lag = response received - value``. This is an upper
  bound: the value became visible at most one poll interval (``--poll-interval``) plus one
  request earlier. Values overwritten before any poll saw them are not sampled; a cloud that
  falls behind shows up anyway, because then every value it shows is old. The poller's own
  cost to cloudhub is measured while idle and printed (``cloudhub_cpu_polling_idle``).
- *CPU* is user+system time from ``/proc`` over the step, in % of one core, for edgecore, its
  mosquitto, cloudhub and the mapper workers; ``host_busy`` is the whole machine's.
- *outbox backlog*: rows left in the edge's outbox (read-only SQLite query on
  ``edgecore.db``) when the step ends: >0 and growing means the cloud path is the limit.

The mappers share the machine with everything they measure (on a 2-core box they take a good
part of it), in both the baseline and the twin run. Absolute rates are a floor; the ratio is
the meaningful part. Run ``python bench/twin_throughput.py --help``; ``--quick`` finishes in
under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.children import Child
from bench.cloud import Admin, CloudHub
from bench.common import (
    REPO_ROOT,
    add_run_options,
    finish_workdir,
    free_port,
    raise_nofile,
    setup_logging,
    wait_for_condition,
)
from bench.measure import CpuMeter, Figures, PySpy, percentile, rss_kib, run_benchmark
from bench.twin_parts import (
    MODEL,
    NAMESPACE,
    NODE,
    PROPERTY,
    EdgeCore,
    LagPoller,
    update_payload,
)
from bench.twin_workers import worker_main
from edgecore.eventbus.broker import Mosquitto

log = logging.getLogger(__name__)

THIS_FILE = Path(__file__).resolve()

DEFAULT_RATES = "1000,3000,6000,8000,10000,12000"
#: the issue's targets
TARGET_RATE = 3000.0
TARGET_P99_LAG = 1.0
TARGET_RATIO = 0.5


def device_name(i: int) -> str:
    return f"bench-dev-{i:04d}"


def model_object() -> dict[str, Any]:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": MODEL, "namespace": NAMESPACE},
        "spec": {
            "protocol": "virtual",
            "properties": [
                {
                    "name": PROPERTY,
                    "description": "the mapper's send time, seconds since the run began",
                    "type": "FLOAT",
                    "accessMode": "ReadOnly",
                    "minimum": "-1000",
                    "maximum": "10000000",
                }
            ],
        },
    }


def device_object(name: str, node: str = NODE) -> dict[str, Any]:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"model": MODEL}},
        "spec": {
            "deviceModelRef": {"name": MODEL},
            "nodeName": node,
            "protocol": {"protocolName": "virtual"},
            "properties": [
                {
                    "name": PROPERTY,
                    "reportCycle": 1000,
                    "collectCycle": 1000,
                    "reportToCloud": True,
                }
            ],
        },
    }


# =============================================================================================
# driver side: child processes
# =============================================================================================


async def ask_all(
    children: Sequence[Child], cmd: dict[str, Any], ev: str, timeout: float
) -> list[dict[str, Any]]:
    for c in children:
        c.send(cmd)
    return list(await asyncio.gather(*(c.expect(ev, timeout) for c in children)))


async def spawn_workers(
    args: argparse.Namespace, *, role: str, port: int, idents: list[str], epoch: float
) -> list[Child]:
    k = max(1, min(args.workers, len(idents)))
    children = []
    for w in range(k):
        first = w * len(idents) // k
        last = (w + 1) * len(idents) // k
        argv = [
            "--worker",
            "--role", role,
            "--port", str(port),
            "--idents", ",".join(idents[first:last]),
            "--first", str(first),
            "--window", str(args.window),
            "--epoch", repr(epoch),
        ]  # fmt: skip
        if args.verbose:
            argv.append("-v")
        children.append(await Child.spawn(f"{role}-{w}", THIS_FILE, argv))
    return children


class TunedCloudHub(CloudHub):
    """:class:`CloudHub`, optionally with another per-node frame budget (``--node-rate``)."""

    def __init__(self, *, workdir: Path, node_rate: float | None) -> None:
        super().__init__(workdir=workdir)
        self.node_rate = node_rate

    def _launch(self, argv: list[str]) -> None:
        if self.node_rate is not None:
            argv = [*argv, "--node-rate", f"{self.node_rate:g}"]
        super()._launch(argv)


def durability_setting() -> str:
    """What the twin store does per commit, read from its source (so a change shows here):
    the pragmas of every edge database connection (``edgecore/db.py``), the twin's batching."""
    path = REPO_ROOT / "edgecore" / "db.py"
    mod = REPO_ROOT / "edgecore" / "devicetwin" / "module.py"
    try:
        text = path.read_text()
        mtext = mod.read_text()
    except OSError:
        return "unknown (edgecore/db.py not readable)"
    sync = re.search(r"PRAGMA synchronous=(\w+)", text)
    journal = re.search(r"PRAGMA journal_mode=(\w+)", text)
    window = re.search(r"batch_window_ms: float = ([\d.]+)", mtext)
    bmax = re.search(r"batch_max: int = (\d+)", mtext)
    return (
        f"synchronous={sync.group(1) if sync else '?'}"
        f" journal={journal.group(1) if journal else '?'}"
        f", group commit <= {window.group(1) if window else '?'} ms / <= "
        f"{bmax.group(1) if bmax else '?'} msgs per transaction, result published after commit"
    )


# =============================================================================================
# driver
# =============================================================================================


@dataclass
class StepResult:
    rate: float
    duration: float
    accepted_per_s: float = math.nan
    accepted_min_1s: float = math.nan
    published_per_s: float = math.nan
    throttled: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    late_errors: int = 0
    unanswered: int = 0
    ack_p50: float = math.nan
    ack_p99: float = math.nan
    lag_p50: float = math.nan
    lag_p99: float = math.nan
    lag_max: float = math.nan
    lag_samples: int = 0
    stale_p50: float = math.nan
    stale_p99: float = math.nan
    outbox_start: int = -1
    outbox_end: int = -1
    cloud_acked_per_s: float = math.nan
    drain_time: float = math.nan
    cpu: dict[str, float] = field(default_factory=dict)
    rss: dict[str, int] = field(default_factory=dict)
    deltas: int = 0


async def raw_baseline(args: argparse.Namespace, fig: Figures, workdir: Path) -> None:
    """Same paho clients, same payload, QoS 1, through a mosquitto configured like edgecore's."""
    broker = Mosquitto(data_dir=workdir / "raw", port=free_port())
    await broker.start()
    children: list[Child] = []
    try:
        assert broker.pid is not None
        sub = await Child.spawn(
            "raw-sub",
            THIS_FILE,
            ["--worker", "--role", "sub", "--port", str(broker.port), "--window", "1"],
        )
        children.append(sub)
        await sub.expect("ready", 60)
        idents = [device_name(i) for i in range(args.devices)]
        pubs = await spawn_workers(args, role="raw", port=broker.port, idents=idents, epoch=0.0)
        children += pubs
        readies = await asyncio.gather(*(c.expect("ready", 60) for c in pubs))
        if not all(r.get("ok") for r in readies):
            raise RuntimeError(f"raw publishers did not connect: {readies}")
        d = args.baseline_seconds
        meter = CpuMeter(
            {
                "mosquitto": [broker.pid],
                "subscriber": [sub.pid],
                "publishers": [c.pid for c in pubs],
                "driver": [os.getpid()],
            }
        )
        start = time.time() + 0.3
        for c in pubs:
            c.send({"cmd": "run", "rate": 0, "duration": d, "start": start})
        await asyncio.sleep(max(0.0, start - time.time()))
        meter.start()
        await asyncio.sleep(d)
        cpu = meter.stop()
        dones = await asyncio.gather(*(c.expect("step_done", 30) for c in pubs))
        # skip the first half second (connections warming up, queues filling)
        sub.send({"cmd": "count", "from": start + 0.5, "to": start + d})
        counted = await sub.expect("count", 10)
        rate = counted["window"] / (d - 0.5)
        published = sum(x["published"] for x in dones)
        acked = sum(x["ok"] for x in dones)
        # let the subscriber drain what the broker queued, to check nothing was dropped
        total = 0
        drain_deadline = time.monotonic() + args.drain
        while time.monotonic() < drain_deadline:
            sub.send({"cmd": "count", "from": 0, "to": 0})
            total = int((await sub.expect("count", 10))["total"])
            st = await ask_all(pubs, {"cmd": "stats"}, "stats", 10)
            if total >= sum(int(s["raw_total"]) for s in st) - 0:
                break
            await asyncio.sleep(0.2)
        st = await ask_all(pubs, {"cmd": "stats"}, "stats", 10)
        acked_total = sum(int(s["raw_total"]) for s in st)
        fig.add("raw_qos1_msgs_per_s", rate, "msgs/s (one paho subscriber, QoS 1)")
        fig.add("raw_publish_acked_per_s", acked / d, "PUBACKs/s to the publishers")
        fig.add("raw_published", published, "msgs")
        fig.add("raw_received_total", total, f"msgs (of {acked_total} acked; drained)")
        fig.add("raw_payload_bytes", len(update_payload("0-1", 12.345678, 1)), "bytes")
        fig.add("raw_cpu_mosquitto", cpu["mosquitto"], "% of a core")
        fig.add("raw_cpu_subscriber", cpu["subscriber"], "% of a core")
        fig.add("raw_cpu_publishers", cpu["publishers"], "% of a core (all workers)")
        fig.add("raw_host_busy", cpu["host_busy"], "% of all cores")
        fig.add("raw_cpu_other_processes", cpu["others"], "% of a core (not ours)")
        if rate:
            fig.add(
                "raw_cpu_per_msg_mosquitto", cpu["mosquitto"] / 100 / rate * 1e6, "us", digits=0
            )
            fig.add(
                "raw_cpu_per_msg_subscriber", cpu["subscriber"] / 100 / rate * 1e6, "us", digits=0
            )
            fig.add(
                "raw_cpu_per_msg_all",
                (cpu["mosquitto"] + cpu["subscriber"] + cpu["publishers"]) / 100 / rate * 1e6,
                "us (broker, subscriber, publishers)",
                digits=0,
            )
        log.info(
            "raw baseline: %.0f msgs/s received, %.0f PUBACKs/s, mosquitto %.0f%%, sub %.0f%%",
            rate,
            acked / d,
            cpu["mosquitto"],
            cpu["subscriber"],
        )
    finally:
        await asyncio.gather(*(c.stop() for c in children), return_exceptions=True)
        await broker.stop()


async def twin_run(
    args: argparse.Namespace, fig: Figures, workdir: Path, results: list[StepResult]
) -> None:
    epoch = time.time()
    async with TunedCloudHub(workdir=workdir, node_rate=args.cloud_node_rate) as hub:
        admin = Admin.for_hub(hub, limit=args.lag_devices + 4)
        edge = EdgeCore(workdir=workdir, node=NODE)
        workers: list[Child] = []
        poller: LagPoller | None = None
        try:
            await edge.join_with(admin, hub)
            await edge.start()
            names = [device_name(i) for i in range(args.devices)]
            await admin.apply([model_object()])
            await admin.apply_batched([device_object(n) for n in names], batch=500)
            log.info("applied 1 DeviceModel and %d Devices bound to %s", len(names), NODE)
            workers = await spawn_workers(
                args, role="twin", port=edge.mqtt_port, idents=names, epoch=epoch
            )
            readies = await asyncio.gather(*(c.expect("ready", 120) for c in workers))
            if not all(r.get("ok") for r in readies):
                raise RuntimeError(f"mappers were not answered 200 by the edge: {readies}")
            log.info("%d mappers answered by the edge (%d workers)", len(names), len(workers))
            sample = names[:: max(1, len(names) // max(1, args.lag_devices))][: args.lag_devices]
            poller = LagPoller(
                admin=admin, devices=sample, epoch=epoch, interval=args.poll_interval
            )
            poller.start()
            # the warm-up reports must show in the cloud: the edge's cloud link is up
            ok = await wait_for_condition(
                lambda: len(poller.latest()) == len(sample) if poller else False,
                timeout=30,
                what="the warm-up values to show in the cloud",
            )
            if not ok:
                raise RuntimeError("the cloud never showed the mappers' first reports")
            # cloudhub counts with its descendants (link workers terminate TLS for it)
            meter = CpuMeter({"cloudhub": [hub.pid]}, trees=["cloudhub"])
            meter.start()
            await asyncio.sleep(1.0 if args.quick else 3.0)
            idle = meter.stop()
            fig.add("cloudhub_cpu_polling_idle", idle["cloudhub"], "% of a core (poller only)")
            fig.add("poll_interval", args.poll_interval * 1000, "ms per sampled device", digits=0)
            fig.add("lag_devices", len(sample), "devices sampled")
            fig.add("durability", durability_setting())
            fig.add(
                "cloud_node_rate",
                "default" if args.cloud_node_rate is None else f"{args.cloud_node_rate:g}",
                "(cloudhub frames/s read per node; 0 = unlimited)",
            )
            pids: dict[str, list[int]] = {
                "edgecore": [edge.pid],
                "mosquitto": [edge.broker_pid] if edge.broker_pid else [],
                "cloudhub": [hub.pid],
                "mappers": [c.pid for c in workers],
                "driver": [os.getpid()],  # the lag poller
            }
            for rate in args.rate_list:
                res = await run_step(args, rate, edge, hub, workers, poller, pids, workdir)
                results.append(res)
                log_step(res)
            fig.add("poll_requests", poller.requests, "GETs")
            fig.add("poll_errors", poller.errors, "GETs failed")
        finally:
            if poller is not None:
                await poller.stop()
            await asyncio.gather(*(c.stop() for c in workers), return_exceptions=True)
            await admin.close()
            edge.stop()
            if args.keep:
                log.info("edgecore log: %s", edge.log_path)


async def run_step(
    args: argparse.Namespace,
    rate: float,
    edge: EdgeCore,
    hub: CloudHub,
    workers: list[Child],
    poller: LagPoller,
    pids: dict[str, list[int]],
    workdir: Path,
) -> StepResult:
    d = args.duration
    res = StepResult(rate=rate, duration=d)
    per_worker = rate / len(workers)
    start = time.time() + 0.3
    for c in workers:
        c.send({"cmd": "run", "rate": per_worker, "duration": d, "start": start})
    profiles: list[PySpy] = []
    if args.profile and rate == args.profile_at:
        profiles = [
            PySpy(pid=edge.pid, out=workdir / f"edgecore-{rate:.0f}.txt"),
            PySpy(pid=hub.pid, out=workdir / f"cloudhub-{rate:.0f}.txt"),
        ]
    # cloudhub counts with its descendants (link workers terminate TLS for it); a descendant
    # listed under another name is counted there only
    meter = CpuMeter(pids, trees=["cloudhub"] if "cloudhub" in pids else [])
    await asyncio.sleep(max(0.0, start - time.time()))
    meter.start()
    res.outbox_start = edge.outbox_rows()
    for p in profiles:
        p.start()
    await asyncio.sleep(d)
    res.cpu = meter.stop()
    res.outbox_end = edge.outbox_rows()
    res.rss = {
        "edgecore": rss_kib(edge.pid),
        "mosquitto": rss_kib(edge.broker_pid) if edge.broker_pid else 0,
        "cloudhub": rss_kib(hub.pid),
    }
    for p in profiles:
        await asyncio.to_thread(p.stop)
    dones = await asyncio.gather(*(c.expect("step_done", 30) for c in workers))
    ok = sum(int(x["ok"]) for x in dones)
    res.accepted_per_s = ok / d
    if res.outbox_start >= 0 and res.outbox_end >= 0:
        # every accepted update is one outbox row; the cloud's ACK deletes it
        res.cloud_acked_per_s = (ok - (res.outbox_end - res.outbox_start)) / d
    buckets = [sum(x["buckets"][i] for x in dones) for i in range(len(dones[0]["buckets"]))]
    full = buckets[: int(d)] or buckets
    res.accepted_min_1s = float(min(full))
    res.published_per_s = sum(int(x["published"]) for x in dones) / d
    res.throttled = sum(int(x["throttled"]) for x in dones)
    for x in dones:
        for code, n in x["errors"].items():
            res.errors[code] = res.errors.get(code, 0) + int(n)
        for reason in x["reasons"]:
            log.warning("rejected at %.0f/s: %s", rate, reason)
    lats = [v for x in dones for v in x["latency"]]
    res.ack_p50 = percentile(lats, 50)
    res.ack_p99 = percentile(lats, 99)
    res.deltas = sum(int(x["deltas"]) for x in dones)
    # drain: every update answered and the outbox empty (the cloud ACKed everything)
    t0 = time.monotonic()
    stats: list[dict[str, Any]] = []
    while True:
        stats = await ask_all(workers, {"cmd": "stats"}, "stats", 10)
        outstanding = sum(int(s["outstanding"]) for s in stats)
        if outstanding == 0 and edge.outbox_rows() == 0:
            res.drain_time = time.monotonic() - t0
            break
        if time.monotonic() - t0 > args.drain:
            log.warning(
                "step %.0f/s: not drained after %.0fs (%d unanswered, outbox %d)",
                rate,
                args.drain,
                outstanding,
                edge.outbox_rows(),
            )
            break
        await asyncio.sleep(0.1)
    res.unanswered = sum(int(s["outstanding"]) for s in stats)
    res.late_errors = sum(int(s["late_errors"]) for s in stats)
    await asyncio.sleep(max(0.0, 3 * args.poll_interval))  # a last look by the poller
    window = [seen - sent for sent, seen in poller.samples if start <= sent <= start + d]
    res.lag_samples = len(window)
    res.lag_p50 = percentile(window, 50)
    res.lag_p99 = percentile(window, 99)
    res.lag_max = max(window) if window else math.nan
    # the same pairs by when the cloud showed them: how old the cloud's view was during the step
    # (also covers a backlog left by an earlier step, which the send-time view cannot)
    shown = [seen - sent for sent, seen in poller.samples if start <= seen <= start + d]
    res.stale_p50 = percentile(shown, 50)
    res.stale_p99 = percentile(shown, 99)
    if args.pause > 0:
        await asyncio.sleep(args.pause)
    return res


def log_step(r: StepResult) -> None:
    log.info(
        "step %5.0f/s: accepted %6.0f/s (min 1s %5.0f), throttled %d, errors %s, ack p50 %.1f "
        "p99 %.1f ms, cloud lag p50 %.0f p99 %.0f ms (%d), outbox %d, cpu edge %.0f%% "
        "mosq %.0f%% cloud %.0f%% mappers %.0f%% host %.0f%%",
        r.rate,
        r.accepted_per_s,
        r.accepted_min_1s,
        r.throttled,
        r.errors or "none",
        r.ack_p50 * 1000,
        r.ack_p99 * 1000,
        r.lag_p50 * 1000,
        r.lag_p99 * 1000,
        r.lag_samples,
        r.outbox_end,
        r.cpu.get("edgecore", math.nan),
        r.cpu.get("mosquitto", math.nan),
        r.cpu.get("cloudhub", math.nan),
        r.cpu.get("mappers", math.nan),
        r.cpu.get("host_busy", math.nan),
    )


def step_figures(fig: Figures, results: list[StepResult]) -> None:
    for r in results:
        p = f"at{r.rate:.0f}_"
        fig.add(p + "accepted_per_s", r.accepted_per_s, "updates/s (result code 200)")
        fig.add(p + "accepted_min_1s", r.accepted_min_1s, "updates in the slowest second")
        fig.add(p + "published_per_s", r.published_per_s, "updates/s sent")
        fig.add(p + "throttled", r.throttled, "sends skipped: mapper window full")
        fig.add(p + "rejected", sum(r.errors.values()), f"results with an error code {r.errors}")
        fig.add(p + "unanswered_after_drain", r.unanswered, "updates")
        fig.add(p + "ack_latency_p50", r.ack_p50 * 1000, "ms (publish -> result)")
        fig.add(p + "ack_latency_p99", r.ack_p99 * 1000, "ms")
        fig.add(p + "cloud_lag_p50", r.lag_p50 * 1000, "ms (publish -> visible in cloud)")
        fig.add(p + "cloud_lag_p99", r.lag_p99 * 1000, "ms")
        fig.add(p + "cloud_lag_max", r.lag_max * 1000, "ms")
        fig.add(p + "cloud_lag_samples", r.lag_samples, "values")
        fig.add(p + "cloud_staleness_p50", r.stale_p50 * 1000, "ms (age of values shown meanwhile)")
        fig.add(p + "cloud_staleness_p99", r.stale_p99 * 1000, "ms")
        fig.add(p + "outbox_at_end", r.outbox_end, "rows not yet ACKed by the cloud")
        fig.add(p + "cloud_acked_per_s", r.cloud_acked_per_s, "outbox rows/s the cloud ACKed")
        fig.add(p + "drain_time", r.drain_time, "s (all answered, outbox empty)", digits=2)
        for name in ("edgecore", "mosquitto", "cloudhub", "mappers"):
            fig.add(p + f"cpu_{name}", r.cpu.get(name, math.nan), "% of a core")
        fig.add(p + "host_busy", r.cpu.get("host_busy", math.nan), "% of all cores")
        fig.add(p + "cpu_other_processes", r.cpu.get("others", math.nan), "% of a core (not ours)")
        for name in ("edgecore", "mosquitto", "cloudhub", "mappers"):
            # CPU per accepted update: what stays comparable on a busy machine
            fig.add(p + f"cpu_per_update_{name}", _per_update(r, name), "us", digits=0)
        fig.add(p + "cpu_per_update_all", _per_update_all(r), "us (the four above)", digits=0)
        for name in ("edgecore", "mosquitto", "cloudhub"):
            fig.add(p + f"rss_{name}", r.rss.get(name, 0) // 1024, "MiB")
        if r.deltas:
            fig.add(p + "deltas", r.deltas, "unexpected delta messages")


def _per_update(r: StepResult, name: str) -> float:
    """µs of ``name``'s CPU per accepted update in step ``r``."""
    if not r.accepted_per_s:
        return math.nan
    return r.cpu.get(name, math.nan) / 100 / r.accepted_per_s * 1e6


def _per_update_all(r: StepResult) -> float:
    return sum(_per_update(r, n) for n in ("edgecore", "mosquitto", "cloudhub", "mappers"))


def summary_figures(fig: Figures, results: list[StepResult]) -> None:
    def meets(r: StepResult) -> bool:
        return r.accepted_per_s >= 0.95 * r.rate and not r.errors and r.lag_p99 < TARGET_P99_LAG

    good = [r for r in results if meets(r)]
    best = max((r.accepted_per_s for r in good), default=0.0)
    peak = max((r.accepted_per_s for r in results), default=0.0)
    fig.add("sustained_updates_per_s", best, "highest step kept (>=95% of target, p99 lag < 1 s)")
    fig.add("peak_accepted_per_s", peak, "updates/s (any step)")
    saturated = [r for r in results if r.accepted_per_s < 0.95 * r.rate or r.throttled]
    fig.add(
        "saturates_at",
        f"{saturated[0].rate:.0f}" if saturated else "not reached",
        "updates/s target (first step below 95% of its target)",
    )
    raw = fig.value("raw_qos1_msgs_per_s")
    fig.ratio("ratio_accepted_vs_raw_qos1", best, raw)
    fig.ratio("ratio_peak_vs_raw_qos1", peak, raw)
    three = [r for r in results if r.rate >= TARGET_RATE and meets(r)]
    fig.add(
        "target_3000_per_s_p99_lag_under_1s",
        "PASS" if three else "FAIL",
        "(a step at >= 3000/s accepted >= 95% with cloud p99 lag < 1 s)",
    )
    # Both runs fill the same 2 cores, so the ratio cannot exceed the ratio of the machine's CPU
    # each spends per message; and without edgecore's own share, what the rest costs. Taken at
    # the busiest step: below saturation, idle wake-ups inflate the cost per update.
    raw_all = fig.value("raw_cpu_per_msg_all")
    top = max(results, key=lambda r: r.accepted_per_s, default=None)
    if top is not None and not math.isnan(raw_all):  # the baseline ran
        all_ = _per_update_all(top)
        rest = all_ - _per_update(top, "edgecore")
        fig.add(
            "cpu_per_update_all",
            all_,
            f"us, machine CPU per update at the busiest step ({top.accepted_per_s:.0f}/s)",
        )
        fig.ratio("ratio_ceiling_cpu", raw_all, all_)
        fig.ratio("ratio_ceiling_without_edgecore", raw_all, rest)
    ratio = best / raw if raw else math.nan
    fig.add(
        "target_half_of_raw",
        "PASS" if ratio >= TARGET_RATIO else "FAIL",
        f"(sustained / raw = {ratio:.2f})",
    )


def print_table(results: list[StepResult]) -> None:
    head = (
        f"{'target':>7} {'accept/s':>9} {'min1s':>6} {'thrott':>7} {'rej':>4} "
        f"{'ack50':>6} {'ack99':>6} {'lag50':>6} {'lag99':>6} {'outbox':>6} "
        f"{'drain':>5} {'edge%':>6} {'mosq%':>6} {'cloud%':>6} {'maps%':>6} {'other%':>6}"
    )
    print("== steps (latencies ms, drain s, CPU % of one core; other = processes not ours) ==")
    print(head)
    for r in results:
        print(
            f"{r.rate:7.0f} {r.accepted_per_s:9.0f} {r.accepted_min_1s:6.0f} {r.throttled:7d} "
            f"{sum(r.errors.values()):4d} {r.ack_p50 * 1000:6.1f} {r.ack_p99 * 1000:6.1f} "
            f"{r.lag_p50 * 1000:6.0f} {r.lag_p99 * 1000:6.0f} {r.outbox_end:6d} "
            f"{r.drain_time:5.1f} "
            f"{r.cpu.get('edgecore', math.nan):6.0f} {r.cpu.get('mosquitto', math.nan):6.0f} "
            f"{r.cpu.get('cloudhub', math.nan):6.0f} {r.cpu.get('mappers', math.nan):6.0f} "
            f"{r.cpu.get('others', math.nan):6.0f}"
        )
    sys.stdout.flush()


async def driver(args: argparse.Namespace, fig: Figures, results: list[StepResult]) -> None:
    raise_nofile()
    workdir = Path(tempfile.mkdtemp(prefix="edgebridge-twin-", dir=args.workdir))
    log.info("work directory %s", workdir)
    try:
        if args.baseline_seconds > 0:
            await raw_baseline(args, fig, workdir)
        await twin_run(args, fig, workdir, results)
    finally:
        finish_workdir(workdir, keep=args.keep)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Reported twin updates/s through mosquitto -> edgecore -> cloudhub, with "
        "the edge->cloud visibility lag and a raw mosquitto QoS 1 baseline.",
    )
    p.add_argument("--devices", type=int, default=50, help="devices, one mapper each (50)")
    p.add_argument("--workers", type=int, default=2, help="mapper processes (2)")
    p.add_argument(
        "--rates", default=DEFAULT_RATES, help=f"target updates/s per step ({DEFAULT_RATES})"
    )
    p.add_argument("--rate", type=float, default=None, help="one step at this rate instead")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per step (10)")
    p.add_argument(
        "--window", type=int, default=32, help="unanswered updates per mapper at most (32)"
    )
    p.add_argument("--lag-devices", type=int, default=5, help="devices the poller samples (5)")
    p.add_argument(
        "--poll-interval", type=float, default=0.05, help="seconds between GETs of one (0.05)"
    )
    p.add_argument(
        "--baseline-seconds", type=float, default=6.0, help="raw baseline length, 0 skips (6)"
    )
    p.add_argument("--drain", type=float, default=15.0, help="max seconds to drain a step (15)")
    p.add_argument("--pause", type=float, default=1.0, help="seconds between steps (1)")
    p.add_argument("--quick", action="store_true", help="2 short steps, < 60 s in all")
    p.add_argument(
        "--profile",
        action="store_true",
        help="py-spy edgecore and cloudhub during the step at --profile-at (pip install py-spy)",
    )
    p.add_argument("--profile-at", type=float, default=None, help="step to profile (the highest)")
    p.add_argument(
        "--cloud-node-rate",
        type=float,
        default=None,
        help="cloudhub --node-rate: frames/s read per edge (cloudhub's default; 0 = no limit)",
    )
    add_run_options(p, timeout=420, keeps="logs, profiles")
    # internal: this file runs as a worker
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--role", default="twin", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--idents", default="", help=argparse.SUPPRESS)
    p.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--epoch", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.rates = "1000,3000"
        args.duration = min(args.duration, 5.0)
        args.baseline_seconds = min(args.baseline_seconds, 3.0)
        args.drain = min(args.drain, 5.0)
        args.pause = 0.0
        args.timeout = min(args.timeout, 58.0)
    args.rate_list = [args.rate] if args.rate else [float(x) for x in args.rates.split(",") if x]
    if args.profile_at is None:
        args.profile_at = max(args.rate_list)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        setup_logging(verbose=args.verbose, prefix=f"[{args.role} {os.getpid()}] ")
        with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
            worker_main(args)
        return 0
    setup_logging(verbose=args.verbose)
    fig = Figures(
        f"twin_throughput devices={args.devices} workers={args.workers} "
        f"steps={','.join(f'{r:.0f}' for r in args.rate_list)}/s x {args.duration:.0f}s"
    )
    results: list[StepResult] = []

    def result_figures() -> None:
        step_figures(fig, results)
        summary_figures(fig, results)

    code = run_benchmark(
        fig,
        driver(args, fig, results),
        timeout=args.timeout,
        pass_fail=False,
        catch_interrupt=True,
        before_host=result_figures,
    )
    print_table(results)
    return code


if __name__ == "__main__":
    sys.exit(main())
