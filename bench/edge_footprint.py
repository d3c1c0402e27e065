"""What an idle edgecore costs: RSS and CPU as its cache and its devices grow.

What it answers (issue 14, "Memory"): edgecore's resident memory and idle CPU with 0 / 1,000 /
10,000 cached objects and 0 / 100 / 1,000 devices, against the 50 MB target for edgecore
itself (KubeEdge claims ~70 MB for its Go edgecore) and against an idle Python interpreter
started by this bench (the floor any Python edgecore pays).

The run, all real processes on 127.0.0.1: cloudhub (embedded store) and, for each point of
``--points`` (``OBJECTS:DEVICES``), one edgecore joined as its own node with its internal
mosquitto. Per point: the pods (``bench_pod``, ~1 KB each, as the cloud benches use) and the
Devices (one DeviceModel) are applied to that node, edgecore starts and syncs them into its
cache, and once it is quiet its CPU over ``--idle`` seconds and then its memory are read; then it is
restarted on the same data dir (cache on disk, nothing to send) and read again. mosquitto's
RSS is printed apart: it is a process of its own. Points run one after the other, so an
edge's idle CPU is not another's load.

Memory figures, MiB: ``rss`` (resident, shared libraries included: what ``top`` shows),
``uss`` (pages only this process has: what stopping it frees) and ``anon`` (heap and
stacks: Python objects, SQLite's page caches, thread stacks).

Run ``python bench/edge_footprint.py --help``; ``--quick`` measures 0:0 and 1000:100 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cloud import Admin, CloudHub, bench_pod
from bench.common import (
    REPO_ROOT,
    add_run_options,
    finish_workdir,
    setup_logging,
    wait_for_condition,
)
from bench.measure import Figures, cpu_seconds, proc_status, run_benchmark
from bench.twin_parts import EdgeCore
from bench.twin_throughput import device_object, model_object

log = logging.getLogger(__name__)

THIS_FILE = Path(__file__).resolve()

TARGET_MIB = 50.0
DEFAULT_POINTS = "0:0,1000:0,10000:0,0:100,0:1000,1000:100,10000:1000"
QUICK_POINTS = "0:0,1000:100"
#: the point the target is stated for
TARGET_POINT = (1000, 100)
#: an idle interpreter with an event loop, and one that has imported what ``edgecore run`` does
IDLE_PYTHON = "import asyncio; asyncio.run(asyncio.sleep(3600))"
IMPORTS_ONLY = "import asyncio, edgecore.cli; asyncio.run(asyncio.sleep(3600))"
#: what ``edgecore run`` imports, whatever its settings (the app imports the rest when used)
RUN_IMPORTS = "import edgecore.cli, edgecore.app"
#: imported on top of RUN_IMPORTS by an edge that runs pods over CRI or has a DMI mapper
CRI_DMI_IMPORTS = (
    "import edgecore.dmi.module, edgecore.dmi.rpc, edgecore.edged.module, edgecore.edgestream.cri"
)
#: the child that measures import costs (stdlib only, so it starts from a bare interpreter)
IMPORT_COSTS = THIS_FILE.parent / "import_costs.py"


async def measure_imports(fig: Figures, *, top: int) -> None:
    """The import costs of ``edgecore run`` (and what DMI/CRI add), each in a fresh child."""
    for name, code in (("run", RUN_IMPORTS), ("cri_dmi", f"{RUN_IMPORTS}; {CRI_DMI_IMPORTS}")):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(IMPORT_COSTS), code,
            cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
        costs: dict[str, float] = json.loads(out)
        start = costs.pop("(start)")
        total = sum(costs.values())
        fig.add(f"imports_{name}_total", total, f"MiB on top of a bare interpreter ({start:.1f})")
        if name == "run":
            for module, mib_ in sorted(costs.items(), key=lambda kv: -kv[1])[:top]:
                fig.add(f"imports_run_{module}", mib_, "MiB (exclusive of its own imports)")


@dataclass(frozen=True, slots=True)
class Memory:
    """One process's memory, KiB."""

    rss: int
    uss: int
    anon: int
    threads: int

    @classmethod
    def of(cls, pid: int) -> Memory:
        rollup: dict[str, int] = {}
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
                name, _, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    rollup[name] = int(parts[0])
        threads = 0
        with contextlib.suppress(OSError):
            threads = len(list(Path(f"/proc/{pid}/task").iterdir()))
        return cls(
            rss=proc_status(pid).get("VmRSS", 0),
            uss=rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0),
            anon=rollup.get("Anonymous", 0),
            threads=threads,
        )


def parse_points(text: str) -> list[tuple[int, int]]:
    """``"0:0,1000:100"`` -> ``[(0, 0), (1000, 100)]``.

    Raises:
        argparse.ArgumentTypeError: not a comma-separated list of ``OBJECTS:DEVICES``.
    """
    points = []
    for item in text.split(","):
        objects, sep, devices = item.strip().partition(":")
        if not sep or not objects.isdigit() or not devices.isdigit():
            raise argparse.ArgumentTypeError(f"{item!r} is not OBJECTS:DEVICES (e.g. 1000:100)")
        points.append((int(objects), int(devices)))
    return points


def counts(edge: EdgeCore) -> tuple[int, int]:
    """(pods in edgecore's cache, devices in its twin tables), from its database read-only."""
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{edge.db_path}?mode=ro", uri=True, timeout=1.0)
        ) as db:
            pods = db.execute("SELECT count(*) FROM meta WHERE type = 'pod'").fetchone()[0]
            devices = db.execute("SELECT count(*) FROM device").fetchone()[0]
            return int(pods), int(devices)
    except sqlite3.Error:
        return -1, -1


async def quiet(pid: int, *, below: float = 2.0, window: float = 1.0, timeout: float = 60) -> bool:
    """Wait until ``pid`` used less than ``below`` % of a core over ``window`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c0 = cpu_seconds(pid)
        await asyncio.sleep(window)
        if 100.0 * (cpu_seconds(pid) - c0) / window < below:
            return True
    log.warning("pid %d did not become quiet in %.0fs", pid, timeout)
    return False


async def idle_cpu(pid: int, seconds: float) -> float:
    """% of a core ``pid`` used over ``seconds``."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    return 100.0 * (cpu_seconds(pid) - c0) / max(1e-6, time.monotonic() - t0)


def mib(kib: int) -> float:
    return kib / 1024


async def baseline(fig: Figures, name: str, code: str, what: str) -> Memory:
    """Start ``python -c code`` here, wait until its memory stops growing, read it, stop it."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, cwd=REPO_ROOT)
    try:
        last = -1
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            now = Memory.of(proc.pid).rss
            if now == last:
                break
            last = now
        mem = Memory.of(proc.pid)
    finally:
        proc.kill()
        await proc.wait()
    fig.add(f"{name}_rss", mib(mem.rss), f"MiB ({what})")
    fig.add(f"{name}_uss", mib(mem.uss), "MiB")
    return mem


async def point(
    args: argparse.Namespace,
    fig: Figures,
    hub: CloudHub,
    admin: Admin,
    workdir: Path,
    objects: int,
    devices: int,
) -> Memory:
    """Measure one edgecore with ``objects`` pods and ``devices`` Devices; its synced Memory."""
    tag = f"o{objects}_d{devices}"
    node = f"fp-{tag.replace('_', '-')}"
    extra = [
        "--runtime",
        args.runtime,
        "--dmi-socket",
        args.dmi_socket or str(workdir / "dmi.sock"),
    ]
    edge = EdgeCore(workdir=workdir / tag, node=node, extra_args=extra)
    edge.data_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        await edge.join_with(admin, hub)
        pods = [bench_pod(f"{node}-pod-{i:05d}", node) for i in range(objects)]
        await admin.apply_batched(pods, batch=500)
        names = [f"{node}-dev-{i:04d}" for i in range(devices)]
        await admin.apply_batched([device_object(n, node) for n in names], batch=500)
        t0 = time.monotonic()
        await edge.start()
        synced = await wait_for_condition(
            lambda: counts(edge) == (objects, devices),
            timeout=60 + objects / 100,
            interval=0.25,
            what=f"{objects} pods and {devices} devices in the edge's store",
        )
        if not synced:
            raise RuntimeError(f"edge {node} has {counts(edge)} of ({objects}, {devices})")
        sync_s = time.monotonic() - t0
        await quiet(edge.pid)
        # memory is read at the end of the idle window: what an idle edge holds
        cpu = await idle_cpu(edge.pid, args.idle)
        live = Memory.of(edge.pid)
        broker = Memory.of(edge.broker_pid) if edge.broker_pid else Memory(0, 0, 0, 0)
        edge.stop()
        await edge.start()
        await asyncio.sleep(1.0)  # the link's inventory exchange; then wait for quiet
        await quiet(edge.pid)
        cpu_restarted = await idle_cpu(edge.pid, args.idle)
        restarted = Memory.of(edge.pid)
    finally:
        edge.stop()
    log.info(
        "%s: synced in %.1fs; edgecore rss %.1f MiB (restarted %.1f), cpu %.2f %%, %d threads",
        tag,
        sync_s,
        mib(live.rss),
        mib(restarted.rss),
        cpu,
        live.threads,
    )
    fig.add(f"sync_{tag}", sync_s, "s (start to every object in the edge's store)")
    fig.add(f"edgecore_rss_{tag}", mib(live.rss), "MiB (after syncing them)")
    fig.add(f"edgecore_uss_{tag}", mib(live.uss), "MiB")
    fig.add(f"edgecore_anon_{tag}", mib(live.anon), "MiB")
    fig.add(f"edgecore_threads_{tag}", live.threads, "threads")
    fig.add(f"edgecore_cpu_idle_{tag}", cpu, "% of a core", digits=2)
    fig.add(f"edgecore_rss_restarted_{tag}", mib(restarted.rss), "MiB (restarted on its cache)")
    fig.add(f"edgecore_uss_restarted_{tag}", mib(restarted.uss), "MiB")
    fig.add(f"edgecore_cpu_idle_restarted_{tag}", cpu_restarted, "% of a core", digits=2)
    fig.add(f"mosquitto_rss_{tag}", mib(broker.rss), "MiB (edgecore's broker, apart)")
    return live


async def run(args: argparse.Namespace, fig: Figures) -> bool:
    workdir = Path(tempfile.mkdtemp(prefix="edgebridge-edge-footprint-", dir=args.workdir))
    ok = True
    try:
        idle = await baseline(fig, "python_idle", IDLE_PYTHON, "an idle interpreter, asyncio")
        await baseline(fig, "edgecore_imports", IMPORTS_ONLY, "idle, edgecore run's imports")
        await measure_imports(fig, top=args.import_rows)
        fig.add("target_rss", TARGET_MIB, "MiB (edgecore itself, 1,000 objects + 100 devices)")
        fig.add("runtime", args.runtime)
        fig.add("dmi", "off" if args.dmi_socket == "off" else "served")
        async with CloudHub(workdir=workdir) as hub:
            async with Admin.for_hub(hub) as admin:
                await admin.apply([model_object()])
                for objects, devices in args.points:
                    mem = await point(args, fig, hub, admin, workdir, objects, devices)
                    if (objects, devices) == TARGET_POINT:
                        fig.ratio("edgecore_rss_vs_target", mib(mem.rss), TARGET_MIB)
                        fig.ratio("edgecore_rss_vs_python_idle", mem.rss, idle.rss)
                        ok = mib(mem.rss) <= TARGET_MIB
    finally:
        finish_workdir(workdir, keep=args.keep)
    return ok


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="edgecore's RSS and idle CPU with 0 / 1,000 / 10,000 cached objects and "
        "0 / 100 / 1,000 devices, against an idle interpreter and the 50 MB target. "
        "Exit code 1 when the 1000:100 point is measured and above the target.",
        epilog="example: python bench/edge_footprint.py --points 1000:100 --idle 20",
    )
    p.add_argument(
        "--points",
        type=parse_points,
        default=None,
        help=f"OBJECTS:DEVICES,... one edgecore each ({DEFAULT_POINTS})",
    )
    p.add_argument("--quick", action="store_true", help=f"points {QUICK_POINTS}, --idle 3")
    p.add_argument("--idle", type=float, default=None, help="seconds of idle CPU per read (10)")
    p.add_argument(
        "--runtime",
        choices=["none", "cri"],
        default="none",
        help="edgecore --runtime (none; cri needs a containerd, and would run the pods)",
    )
    p.add_argument(
        "--dmi-socket",
        default=None,
        help="edgecore --dmi-socket: 'off' serves no DMI; default: one in the temp dir (DMI "
        "served, as edgecore's default /etc/kubeedge/dmi.sock; gRPC loads only when a mapper "
        "connects, and none does here)",
    )
    p.add_argument("--import-rows", type=int, default=12, help="biggest import costs printed (12)")
    add_run_options(p, timeout=900)
    args = p.parse_args(argv)
    if args.points is None:
        args.points = parse_points(QUICK_POINTS if args.quick else DEFAULT_POINTS)
    if args.idle is None:
        args.idle = 3.0 if args.quick else 10.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(verbose=args.verbose)
    fig = Figures("edge_footprint: edgecore's memory and idle CPU by cache size")
    with contextlib.suppress(KeyboardInterrupt):
        return run_benchmark(fig, run(args, fig), timeout=args.timeout)
    return 130


if __name__ == "__main__":
    sys.exit(main())
