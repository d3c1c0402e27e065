"""The edge's outbox through a cloud outage: how big it gets, and how fast the cloud catches up.

Why it matters: while the cloud is away every accepted twin report is kept in the edge's
SQLite outbox, to be sent once the link is back (KubeEdge drops them). Kept one row per report,
a device reporting 10 times a second fills ~0.5 GB of a gateway's flash per day of outage
and needs hours of replay. edgecore folds the rows of each device and kind into one while the
link is down (``edgecore.devicetwin.module``), so the outbox stays at about one row per device
and kind, and the replay sends that many messages.

The run, all real processes on 127.0.0.1: cloudhub, edgecore with its mosquitto, one
DeviceModel and ``--devices`` Devices; the mappers of ``bench/twin_throughput.py`` connect and
are answered; cloudhub stops; the mappers report at ``--rate`` for ``--seconds`` (the edge
answers them from its own store); the outbox is sampled meanwhile; cloudhub starts again, and
the time until the edge is back and until its outbox is empty (every row applied and ACKed
by the cloud) is measured. Run ``python bench/twin_offline.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.children import Child
from bench.cloud import Admin
from bench.common import add_run_options, finish_workdir, setup_logging, wait_for_condition
from bench.measure import Figures, run_benchmark
from bench.twin_parts import NODE, EdgeCore
from bench.twin_throughput import (
    TunedCloudHub,
    device_name,
    device_object,
    model_object,
    spawn_workers,
)

log = logging.getLogger(__name__)

LINK_UP = "connected to wss://"


def _db_bytes(edge: EdgeCore) -> int:
    db = edge.db_path
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.is_file())


async def run(args: argparse.Namespace, fig: Figures) -> bool:
    workdir = Path(tempfile.mkdtemp(prefix="edgebridge-twin-offline-", dir=args.workdir))
    hub = TunedCloudHub(workdir=workdir, node_rate=None)
    edge = EdgeCore(workdir=workdir, node=NODE)
    workers: list[Child] = []
    try:
        await hub.start()
        admin = Admin.for_hub(hub)
        try:
            await edge.join_with(admin, hub)
            await edge.start()
            names = [device_name(i) for i in range(args.devices)]
            await admin.apply([model_object()])
            await admin.apply_batched([device_object(n) for n in names], batch=500)
        finally:
            await admin.close()
        wargs = argparse.Namespace(workers=args.workers, window=args.window, verbose=False)
        workers = await spawn_workers(
            wargs, role="twin", port=edge.mqtt_port, idents=names, epoch=time.time()
        )
        readies = await asyncio.gather(*(c.expect("ready", 120) for c in workers))
        if not all(r.get("ok") for r in readies):
            raise RuntimeError(f"mappers were not answered 200 by the edge: {readies}")
        await wait_for_condition(lambda: edge.outbox_rows() == 0, timeout=30, what="warm-up")

        log.info(
            "cloud down: stopping cloudhub; %d mappers report for %.0fs", len(names), args.seconds
        )
        hub.stop()
        start = time.time() + 0.3
        for c in workers:
            c.send(
                {
                    "cmd": "run",
                    "rate": args.rate / len(workers),
                    "duration": args.seconds,
                    "start": start,
                }
            )
        peak_rows = peak_bytes = 0
        deadline = time.monotonic() + args.seconds + 1.0
        while time.monotonic() < deadline:
            peak_rows = max(peak_rows, edge.outbox_rows())
            peak_bytes = max(peak_bytes, _db_bytes(edge))
            await asyncio.sleep(0.25)
        dones = await asyncio.gather(*(c.expect("step_done", 60) for c in workers))
        accepted = sum(int(x["ok"]) for x in dones)
        rows_end = edge.outbox_rows()
        errors = {k: v for x in dones for k, v in x["errors"].items()}

        ups = edge.log_path.read_text(errors="replace").count(LINK_UP)
        t0 = time.monotonic()
        await hub.start()
        back = await wait_for_condition(
            lambda: edge.log_path.read_text(errors="replace").count(LINK_UP) > ups,
            timeout=60,
            what="the edge's link",
        )
        t_link = time.monotonic() - t0
        t1 = time.monotonic()
        drained = await wait_for_condition(
            lambda: edge.outbox_rows() == 0, timeout=args.drain, what="the outbox to drain"
        )
        t_drain = time.monotonic() - t1
    finally:
        await asyncio.gather(*(c.stop() for c in workers), return_exceptions=True)
        edge.stop()
        hub.stop()
        finish_workdir(workdir, keep=args.keep)

    fig.add("devices", args.devices, "devices, one mapper each")
    fig.add("offline_seconds", args.seconds, "s with cloudhub stopped", digits=0)
    fig.add("offline_reports_accepted", accepted, "reports answered 200 by the edge meanwhile")
    fig.add("offline_accepted_per_s", accepted / args.seconds, "reports/s")
    fig.add("offline_refused", sum(errors.values()), f"reports refused {errors or ''}".strip())
    fig.add("outbox_rows_peak", peak_rows, f"rows (one per report would be {accepted})")
    fig.add("outbox_rows_at_reconnect", rows_end, "rows = messages the replay sends")
    fig.add("edge_db_peak", peak_bytes / 1e6, "MB (edgecore.db with its WAL)")
    fig.add(
        "edge_back_after",
        t_link if back else float("nan"),
        "s from cloudhub start to the edge's link (its backoff)",
    )
    fig.add(
        "outbox_drained_after",
        t_drain if drained else float("nan"),
        "s from the link to an empty outbox (all ACKed)",
    )
    ok = back and drained and not errors
    fig.add(
        "converged",
        "PASS" if ok else "FAIL",
        "(every report accepted, outbox empty after the outage)",
    )
    return ok


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Mappers report while the cloud is down: the edge outbox's size, and the "
        "time to catch up once the cloud is back.",
        epilog="example: python bench/twin_offline.py --rate 2000 --seconds 120",
    )
    p.add_argument("--devices", type=int, default=50, help="devices, one mapper each (50)")
    p.add_argument("--workers", type=int, default=2, help="mapper processes (2)")
    p.add_argument("--window", type=int, default=32, help="unanswered updates per mapper (32)")
    p.add_argument("--rate", type=float, default=1000.0, help="reports/s while offline (1000)")
    p.add_argument("--seconds", type=float, default=30.0, help="length of the outage (30)")
    p.add_argument("--drain", type=float, default=60.0, help="max seconds to drain (60)")
    add_run_options(p, timeout=300)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(verbose=args.verbose)
    fig = Figures(
        f"twin_offline devices={args.devices} rate={args.rate:.0f}/s x {args.seconds:.0f}s"
    )
    with contextlib.suppress(KeyboardInterrupt):
        return run_benchmark(fig, run(args, fig), timeout=args.timeout)
    return 130


if __name__ == "__main__":
    sys.exit(main())
