"""A stock KubeEdge mapper (mapper-framework v1.15) against edgecore's DMI, end to end.

Needs the mapper built by ``scripts/dmi-mapper-build.sh`` (``--mapper``, default
``$DMI_MAPPER_BIN`` or the newest ``/tmp/dmimapper-build.*/bin/dmimapper``); where there is
none it says so and exits 0.

A cloudhub (embedded store) and one edgecore serving DMI on a socket of the run's temp dir; a
DeviceModel and ``--devices`` Devices of protocol ``virtual`` applied through the admin API;
then the mapper started with ``dev_init.mode: register``. Between the two sits a recording
proxy (``bench/dmi_record.py``), so every call either way is timed and kept (``--record FILE``
writes them as JSON). Checks and figures:

- the mapper registers and gets its Devices and Models; every Device's ``level`` reaches
  ``status.twins`` in the cloud (register -> first report in the cloud, -> all devices);
- report -> cloud: the edge stamps each report's time into the twin's metadata; the cloud's
  watch stream says when the cloud shows it (p50/p99);
- desired -> mapper: ``--desired`` desired values set in the cloud (as ``edgectl twin set``);
  the mapper's driver logs each value it is handed with its wall time (p50/p99).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cloud import Admin, CloudHub
from bench.common import (
    add_run_options,
    finish_workdir,
    setup_logging,
    stop_process,
    wait_for_condition,
)
from bench.dmi_record import Recorder
from bench.measure import Figures, percentile, run_benchmark
from bench.twin_parts import EdgeCore
from edgectl.client import AdminClient
from edgectl.commands import set_desired

log = logging.getLogger("dmi_mapper")

NODE = "dmi-edge"
NAMESPACE = "default"
MODEL = "dmi-counter"
PROTOCOL = "virtual"
SET_LINE = re.compile(r"virtual-set slot=target value=(-?\d+) unix_ns=(\d+)")


def find_mapper(given: Path | None) -> Path | None:
    """The mapper binary: ``given``, ``$DMI_MAPPER_BIN``, or the newest default build."""
    if given is not None:
        return given if given.is_file() else None
    env = os.environ.get("DMI_MAPPER_BIN")
    if env:
        return Path(env) if Path(env).is_file() else None
    built = sorted(glob.glob("/tmp/dmimapper-build.*/bin/dmimapper"), key=os.path.getmtime)
    return Path(built[-1]) if built else None


def model_object() -> dict[str, Any]:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": MODEL, "namespace": NAMESPACE},
        "spec": {
            "protocol": PROTOCOL,
            "properties": [
                {"name": "level", "type": "INT", "accessMode": "ReadOnly",
                 "minimum": "0", "maximum": "100", "description": "a reading"},
                {"name": "target", "type": "INT", "accessMode": "ReadWrite",
                 "minimum": "0", "maximum": "100000", "description": "a writable value"},
            ],
        },
    }  # fmt: skip


def device_object(name: str, cycle: int) -> dict[str, Any]:
    """A Device for the mapper; ``cycle`` in nanoseconds (as v1.15 mappers read it) or, below a
    million, milliseconds (edgecore converts, see ``wire/cycles.py``)."""
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "deviceModelRef": {"name": MODEL},
            "nodeName": NODE,
            "protocol": {"protocolName": PROTOCOL, "configData": {"seed": 7}},
            "properties": [
                {"name": "level", "reportCycle": cycle, "collectCycle": cycle,
                 "reportToCloud": True,
                 "visitors": {"protocolName": PROTOCOL, "configData": {
                     "dataType": "int", "register": "level", "min": 0, "max": 100}}},
                {"name": "target", "reportCycle": cycle, "collectCycle": cycle,
                 "reportToCloud": True,
                 "desired": {"value": "1", "metadata": {"type": "int"}},
                 "visitors": {"protocolName": PROTOCOL, "configData": {
                     "dataType": "int", "register": "target"}}},
            ],
        },
    }  # fmt: skip


def mapper_config(mapper_sock: Path, edge_sock: Path) -> str:
    return (
        f"grpc_server:\n  socket_path: {mapper_sock}\n"
        "common:\n  name: virtual-mapper\n  version: v1.15.4\n  api_version: v1.0.0\n"
        f"  protocol: {PROTOCOL}\n  address: 127.0.0.1\n  edgecore_sock: {edge_sock}\n"
        "dev_init:\n  mode: register\n"
    )


class CloudWatch:
    """The cloud's watch on devices, in a thread: when each (device, reported timestamp)
    first showed up, by the wall clock."""

    def __init__(self, hub: CloudHub) -> None:
        self._client = AdminClient(server=hub.https_url, token=hub.admin_token, ca_file=hub.ca_path)
        #: (device, property, edge timestamp in ms) -> wall time first seen
        self.seen: dict[tuple[str, str, int], float] = {}
        self._thread = threading.Thread(target=self._run, daemon=True, name="cloud-watch")

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self._follow()
        except Exception as exc:  # the hub stopping ends it too
            log.debug("cloud watch ended: %s", exc)

    def _follow(self) -> None:
        for line in self._client.watch("devices", namespace=NAMESPACE):
            now = time.time()
            name = str((line.object.get("metadata") or {}).get("name") or "")
            for twin in (line.object.get("status") or {}).get("twins") or []:
                meta = (twin.get("reported") or {}).get("metadata") or {}
                with contextlib.suppress(KeyError, TypeError, ValueError):
                    key = (name, str(twin.get("propertyName")), int(meta["timestamp"]))
                    self.seen.setdefault(key, now)

    def first(self, prop: str, names: set[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        for (name, p, _ts), at in list(self.seen.items()):
            if p == prop and name in names:
                out[name] = min(out.get(name, at), at)
        return out


def mapper_sets(log_path: Path) -> dict[int, float]:
    """Values the mapper's driver was handed -> wall time (from its ``virtual-set`` lines)."""
    out: dict[int, float] = {}
    with contextlib.suppress(OSError):
        for m in SET_LINE.finditer(log_path.read_text(errors="replace")):
            out.setdefault(int(m.group(1)), int(m.group(2)) / 1e9)
    return out


async def set_desired_value(admin: Admin, name: str, value: int, mapper_log: Path) -> float | None:
    """Set ``target`` of ``name`` in the cloud (as ``edgectl twin set``); seconds until the
    mapper's driver was handed it, or None (not within 10 s)."""
    obj = await admin.get("devices", NAMESPACE, name)
    updated = set_desired(obj, {"target": str(value)})
    updated.pop("status", None)
    t0 = time.time()
    await admin.apply([updated])
    if not await wait_for_condition(lambda: value in mapper_sets(mapper_log), timeout=10):
        return None
    return mapper_sets(mapper_log)[value] - t0


def start_mapper(binary: Path, config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as out:
        mapper = subprocess.Popen(
            [str(binary), "--config-file", str(config), "--v", "2"],
            stdout=out, stderr=subprocess.STDOUT, cwd=config.parent,
        )  # fmt: skip
    log.info("mapper pid %d (%s)", mapper.pid, binary)
    return mapper


def _calls(rec: Recorder, method: str, since: float) -> list[Any]:
    return [c for c in rec.calls if c.method.endswith("/" + method) and c.at >= since]


async def lifecycle_checks(
    fig: Figures,
    admin: Admin,
    edge: EdgeCore,
    rec: Recorder,
    watch: CloudWatch,
    mapper_log: Path,
    known: str,
) -> bool:
    """A Device (with a new model) added and removed while the mapper runs; edgecore
    restarted under the mapper (which registers only once)."""
    model = model_object()
    model["metadata"]["name"] = MODEL + "-b"
    late = device_object("dmi-late", 500)  # milliseconds, as KubeEdge documents: converted
    late["spec"]["deviceModelRef"]["name"] = MODEL + "-b"
    t0 = time.time()
    await admin.apply([model, late])

    def reported() -> bool:
        return any(
            c.request.get("deviceName") == "dmi-late" and not c.error
            for c in _calls(rec, "ReportDeviceStatus", t0)
        ) and "dmi-late" in watch.first("level", {"dmi-late"})

    added = await wait_for_condition(reported, timeout=15)
    seen = watch.first("level", {"dmi-late"})
    calls = [
        c.method.rsplit("/", 1)[-1]
        for c in rec.calls
        if c.at >= t0 and c.direction == "edge->mapper"
    ]
    fig.add("late_device_calls", ",".join(calls) or "none")
    if added:
        fig.add("late_device_apply_to_first_report_in_cloud", (seen["dmi-late"] - t0) * 1e3, "ms")
    t1 = time.time()
    await admin.delete("devices", NAMESPACE, "dmi-late")
    removed = await wait_for_condition(lambda: bool(_calls(rec, "RemoveDevice", t1)), timeout=10)
    fig.add("late_device_removed", "PASS" if removed else "FAIL", "(RemoveDevice on the mapper)")

    t2 = time.time()
    edge.stop()
    await edge.start()
    await wait_for_condition(lambda: edge.log_path.read_text().count("DMI served") >= 2, timeout=10)
    fig.add("edgecore_restart_s", time.time() - t2, "s", digits=2)
    lag = await set_desired_value(admin, known, 99_999, mapper_log)
    registers = len(_calls(rec, "MapperRegister", t2))
    fig.add(
        "desired_after_edgecore_restart",
        "PASS" if lag is not None else "FAIL",
        f"(mapper registered again: {registers}; reached it in "
        + (f"{lag * 1e3:.0f} ms)" if lag is not None else "-)"),
    )
    return added and removed and lag is not None


async def run(args: argparse.Namespace, fig: Figures, binary: Path) -> bool:
    workdir = Path(tempfile.mkdtemp(prefix="edgebridge-dmi-", dir=args.workdir))
    edge_sock, proxy_edge, proxy_mapper = (workdir / n for n in ("dmi.sock", "px-e", "px-m"))
    mapper_sock = workdir / "mapper.sock"
    hub = CloudHub(workdir=workdir)
    edge = EdgeCore(workdir=workdir, node=NODE, extra_args=["--dmi-socket", str(edge_sock)])
    rec = Recorder(edge_sock, proxy_edge, proxy_mapper)
    mapper: subprocess.Popen[bytes] | None = None
    mapper_log = workdir / "mapper.log"
    names = [f"dmi-dev-{i}" for i in range(args.devices)]
    admin: Admin | None = None
    try:
        await hub.start()
        admin = Admin.for_hub(hub)
        await edge.join_with(admin, hub)
        await edge.start()
        await wait_for_condition(edge_sock.exists, timeout=10, what="edgecore's DMI socket")
        await admin.apply([model_object()])
        await admin.apply([device_object(n, int(args.cycle_ms * 1e6)) for n in names])
        await wait_for_condition(
            lambda: edge.log_path.read_text().count("joined node") >= len(names),
            timeout=20,
            what="the devices on the edge",
        )
        watch = CloudWatch(hub)
        watch.start()
        await rec.start()
        config = workdir / "mapper.yaml"
        config.write_text(mapper_config(mapper_sock, proxy_edge))
        mapper = start_mapper(binary, config, mapper_log)

        def registered() -> bool:
            return any(c.method.endswith("MapperRegister") for c in rec.calls)

        if not await wait_for_condition(registered, timeout=15, what="MapperRegister"):
            return False
        reg = next(c for c in rec.calls if c.method.endswith("MapperRegister"))
        got = reg.answer or {}
        fig.add("registered_devices", len(got.get("deviceList", [])), "")
        fig.add("registered_models", len(got.get("modelList", [])), "")
        all_in = await wait_for_condition(
            lambda: len(watch.first("level", set(names))) == len(names), timeout=30
        )
        firsts = watch.first("level", set(names))
        if firsts:
            fig.add(
                "register_to_first_report_in_cloud", (min(firsts.values()) - reg.at) * 1e3, "ms"
            )
        if all_in:
            fig.add("register_to_all_devices_in_cloud", (max(firsts.values()) - reg.at) * 1e3, "ms")
        await asyncio.sleep(args.seconds)
        lags = [at - ts / 1e3 for (_n, p, ts), at in list(watch.seen.items()) if p == "level"]
        lags = [x for x in lags if x >= 0][len(names) :]  # the first per device predates the watch
        reports = sum(1 for c in rec.calls if c.method.endswith("ReportDeviceStatus"))
        fig.add("reports_by_mapper", reports, "")
        fig.add("reports_refused", sum(1 for c in rec.calls if c.error), "")
        fig.add("cloud_updates_seen", len(lags), "")
        if lags:
            fig.add("report_to_cloud_p50", percentile(lags, 50) * 1e3, "ms")
            fig.add("report_to_cloud_p99", percentile(lags, 99) * 1e3, "ms")
        desired_lags: list[float] = []
        for k in range(args.desired):
            lag = await set_desired_value(admin, names[k % len(names)], 1000 + k, mapper_log)
            if lag is not None:
                desired_lags.append(lag)
            await asyncio.sleep(0.2)
        fig.add("desired_sent", args.desired, "")
        fig.add("desired_reached_mapper", len(desired_lags), "")
        if desired_lags:
            fig.add("desired_to_mapper_p50", percentile(desired_lags, 50) * 1e3, "ms")
            fig.add("desired_to_mapper_p99", percentile(desired_lags, 99) * 1e3, "ms")
        lifecycle = await lifecycle_checks(fig, admin, edge, rec, watch, mapper_log, names[0])
        t3 = time.time()
        stop_process(mapper, what="the mapper")
        mapper = start_mapper(binary, config, mapper_log)
        again = await wait_for_condition(
            lambda: (
                bool(_calls(rec, "MapperRegister", t3))
                and bool(_calls(rec, "ReportDeviceStatus", t3))
            ),
            timeout=15,
        )
        lag = await set_desired_value(admin, names[1], 77_777, mapper_log) if again else None
        fig.add(
            "mapper_restart",
            "PASS" if lag is not None else "FAIL",
            "(registers again, reports, gets a desired value)",
        )
        lifecycle = lifecycle and lag is not None
        unknown = sorted({c.method.rsplit("/", 1)[-1] for c in rec.calls if c.unknown_fields})
        fig.add("calls_with_fields_our_proto_lacks", ",".join(unknown) or "none")
        return all_in and len(desired_lags) == args.desired and reports > 0 and lifecycle
    finally:
        if admin is not None:
            await admin.close()
        if args.record is not None:
            rec.save(args.record)
            log.info("recorded %d DMI calls in %s", len(rec.calls), args.record)
        if mapper is not None:
            stop_process(mapper, what="the mapper")
        await rec.stop()
        edge.stop()
        hub.stop()
        finish_workdir(workdir, keep=args.keep)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="A stock mapper-framework mapper against edgecore's DMI: registration, "
        "reports into the cloud, desired values back to the mapper.",
        epilog="build the mapper first: scripts/dmi-mapper-build.sh <kubeedge-v1.15-source>",
    )
    p.add_argument("--mapper", type=Path, default=None, help="mapper binary (see above)")
    p.add_argument("--devices", type=int, default=5, help="devices of the mapper (5)")
    p.add_argument("--cycle-ms", type=float, default=500.0, help="collect/report cycle (500)")
    p.add_argument("--seconds", type=float, default=15.0, help="reporting phase (15)")
    p.add_argument("--desired", type=int, default=20, help="desired values to set (20)")
    p.add_argument("--record", type=Path, default=None, help="write the DMI calls as JSON")
    add_run_options(p, timeout=180)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(verbose=args.verbose)
    binary = find_mapper(args.mapper)
    if binary is None:
        print(
            "dmi_mapper: no mapper-framework mapper built (scripts/dmi-mapper-build.sh "
            "<kubeedge-v1.15-source>, or --mapper / DMI_MAPPER_BIN); nothing measured"
        )
        return 0
    fig = Figures(f"dmi_mapper devices={args.devices} cycle={args.cycle_ms:.0f}ms")
    with contextlib.suppress(KeyboardInterrupt):
        return run_benchmark(fig, run(args, fig, binary), timeout=args.timeout)
    return 130


if __name__ == "__main__":
    sys.exit(main())
