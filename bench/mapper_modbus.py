"""The mapper's cost and latency against real Modbus devices, and a bare pymodbus loop beside it.

Setup, all on 127.0.0.1 with free ports::

    pymodbus server process (N unit ids x 5 holding registers)
        ^ reads/writes (N TCP connections)
    mapper process: devices.mapper.Mapper, N Devices x 5 properties, 1 s collect/report cycle
        | twin/update (QoS 1)          ^ twin/update/delta
        v                              |
    mosquitto (edgecore's internal broker config)  <->  this driver (plays the edge)

The mapper child runs the real :class:`devices.mapper.Mapper` with its Devices given directly
(a static source instead of the edge local API: the local API is read once at start and is not
what is measured). The driver subscribes to the reports as the edge's twin would.

Phases:

1. steady: ``--seconds`` of the mapper at its cycle; reads/s sustained (= property values
   reported per second, one read per value) and the mapper process's CPU per read.
2. register change -> report: the driver changes a ReadOnly register at the device (its own
   Modbus client) and times until a report with the new value reaches the broker
   (``--changes`` samples). With a 1 s cycle this is at most one cycle plus the trip; the edge's
   and the cloud's part of the way to ``Device.status`` is the twin's (``bench/twin_throughput``)
   and the link's (``bench/hub_scale``), measured there.
3. desired -> register: the driver publishes a delta for the ReadWrite property, as the edge
   does, and times until the register holds it (polled every 5 ms; ``--writes`` samples).
4. bare loop: a child that opens the same N connections and reads the same registers at the
   same cadence with pymodbus alone (no MQTT, no twin): reads/s and CPU per read. The ratio
   ``bare CPU per read / mapper CPU per read`` is the share of the bare loop's reads per CPU
   second the mapper keeps (target >= 0.7).

``python bench/mapper_modbus.py --help``; ``--quick`` for a short run (20 devices, 5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiomqtt
from pymodbus.client import AsyncModbusTcpClient

from bench.common import free_port, port_open, setup_logging, wait_for_condition
from bench.measure import Figures, cpu_seconds, percentile, run_benchmark

log = logging.getLogger("bench.mapper_modbus")

PROPS = 5
#: the ReadWrite property is the last register
WRITABLE = PROPS - 1


def device_objects(n: int, port: int, cycle_ms: int) -> list[dict[str, Any]]:
    """One DeviceModel and ``n`` Devices (unit ids 1..n), 5 INT properties each."""
    model = {
        "kind": "DeviceModel",
        "metadata": {"name": "bench-model", "namespace": "default"},
        "spec": {
            "properties": [
                {
                    "name": f"p{i}",
                    "type": "INT",
                    "accessMode": "ReadWrite" if i == WRITABLE else "ReadOnly",
                }
                for i in range(PROPS)
            ]
        },
    }
    out: list[dict[str, Any]] = [model]
    for unit in range(1, n + 1):
        out.append(
            {
                "kind": "Device",
                "metadata": {"name": f"dev-{unit}", "namespace": "default"},
                "spec": {
                    "deviceModelRef": {"name": "bench-model"},
                    "protocol": {
                        "protocolName": "modbus",
                        "configData": {"ip": "127.0.0.1", "port": port, "slaveID": unit},
                    },
                    "properties": [
                        {
                            "name": f"p{i}",
                            "collectCycle": cycle_ms,
                            "reportCycle": cycle_ms,
                            "visitors": {
                                "protocolName": "modbus",
                                "configData": {"register": "HoldingRegister", "offset": i},
                            },
                        }
                        for i in range(PROPS)
                    ],
                },
            }
        )
    return out


# -- children ---------------------------------------------------------------------------------


async def serve_modbus(port: int, units: int) -> None:
    from tests.support.fielddevices import _serve

    await _serve(port, units, list(range(PROPS)))


async def run_mapper(broker_port: int, objects_file: str) -> None:
    from devices.driver import Registry
    from devices.mapper import Mapper, MapperSettings
    from devices.source import StaticSource

    for name in ("pymodbus", "mqtt"):
        logging.getLogger(name).setLevel(logging.ERROR)
    source = StaticSource()
    source.put(*json.loads(await asyncio.to_thread(Path(objects_file).read_text)))
    mapper = Mapper(
        MapperSettings(broker=f"mqtt://127.0.0.1:{broker_port}"),
        source,
        registry=Registry(load_entry_points=False),
    )
    await mapper.run()


async def run_bare(port: int, units: int, cycle: float, seconds: float) -> None:
    """N clients, PROPS reads each per cycle, fixed rate; prints reads and CPU as JSON."""
    logging.getLogger("pymodbus").setLevel(logging.ERROR)
    clients = []
    for _ in range(units):
        c = AsyncModbusTcpClient("127.0.0.1", port=port, retries=0, reconnect_delay=0)
        assert await c.connect()
        clients.append(c)
    reads = 0

    async def device(unit: int, client: AsyncModbusTcpClient) -> None:
        nonlocal reads
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            for i in range(PROPS):
                rr = await client.read_holding_registers(i, count=1, device_id=unit)
                if not rr.isError():
                    reads += 1
            next_at += cycle
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    tasks = [asyncio.create_task(device(u, c)) for u, c in enumerate(clients, start=1)]
    await asyncio.sleep(2 * cycle)  # warm up
    r0, c0, t0 = reads, _self_cpu(), time.monotonic()
    await asyncio.sleep(seconds)
    r1, c1, t1 = reads, _self_cpu(), time.monotonic()
    for t in tasks:
        t.cancel()
    print(json.dumps({"reads": r1 - r0, "cpu": c1 - c0, "seconds": t1 - t0}), flush=True)


def _self_cpu() -> float:
    import os

    t = os.times()
    return t.user + t.system


# -- the driver -------------------------------------------------------------------------------


SCRIPT = str(Path(__file__).resolve())


async def _child(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, SCRIPT, *args, stdout=asyncio.subprocess.PIPE
    )


async def measure(args: argparse.Namespace, fig: Figures) -> bool:
    from edgecore.eventbus.broker import Mosquitto

    tmp = Path(tempfile.mkdtemp(prefix="bench-mapper-"))
    n, cycle = args.devices, args.cycle
    broker = Mosquitto(data_dir=tmp / "broker", port=free_port(), stop_timeout=2.0)
    await broker.start()
    mb_port = free_port()
    procs: list[asyncio.subprocess.Process] = []
    try:
        server = await _child("--serve-modbus", str(mb_port), "--units", str(n))
        procs.append(server)
        await wait_for_condition(lambda: port_open(mb_port), timeout=10, what="modbus server")
        objects = tmp / "objects.json"
        objects.write_text(json.dumps(device_objects(n, mb_port, int(cycle * 1000))))

        seen: dict[str, float] = {}  # "dev-k/pX=value" -> first time seen
        values = 0
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="bench-edge") as edge:
            await edge.subscribe("$hw/events/device/+/twin/update", qos=1)

            async def pump() -> None:
                nonlocal values
                async for msg in edge.messages:
                    now = time.monotonic()
                    dev = msg.topic.value.split("/")[3]
                    body = json.loads(msg.payload if isinstance(msg.payload, bytes) else b"{}")
                    for prop, entry in body.get("twin", {}).items():
                        values += 1
                        seen.setdefault(f"{dev}/{prop}={entry['actual']['value']}", now)

            pumper = asyncio.create_task(pump())
            mapper = await _child("--mapper", str(broker.port), str(objects))
            procs.append(mapper)
            ok = await wait_for_condition(
                lambda: len({k.split("=")[0] for k in seen}) >= n * PROPS,
                timeout=60,
                what="first report of every property",
            )
            if not ok:
                return False
            await asyncio.sleep(2 * cycle)

            log.info("steady: %d devices x %d properties for %.0fs", n, PROPS, args.seconds)
            v0, c0, t0 = values, cpu_seconds(mapper.pid), time.monotonic()
            await asyncio.sleep(args.seconds)
            v1, c1, t1 = values, cpu_seconds(mapper.pid), time.monotonic()
            reads_s = (v1 - v0) / (t1 - t0)
            mapper_cpu_per_read = (c1 - c0) / max(1, v1 - v0)
            fig.add("devices", n)
            fig.add("properties_per_device", PROPS)
            fig.add("cycle", cycle, "s", digits=2)
            fig.add("reads_per_s_sustained", reads_s, "reads/s")
            fig.add("reads_per_s_target", n * PROPS / cycle, "reads/s")
            fig.add("mapper_cpu", 100 * (c1 - c0) / (t1 - t0), "% of a core")
            fig.add("mapper_cpu_per_read", 1e6 * mapper_cpu_per_read, "µs")

            poke = AsyncModbusTcpClient("127.0.0.1", port=mb_port, retries=0, reconnect_delay=0)
            assert await poke.connect()
            rng = random.Random(1)

            log.info("register change -> report: %d samples", args.changes)
            lat: list[float] = []
            for i in range(args.changes):
                unit, reg, value = rng.randint(1, n), rng.randrange(WRITABLE), 1000 + i
                key = f"dev-{unit}/p{reg}={value}"
                t = time.monotonic()
                await poke.write_registers(reg, [value], device_id=unit)

                def reported(k: str = key) -> bool:
                    return k in seen

                if await wait_for_condition(reported, timeout=5 * cycle + 5):
                    lat.append(seen[key] - t)
                await asyncio.sleep(rng.uniform(0, cycle / 4))
            fig.add("change_to_report_p50", 1000 * percentile(lat, 50), "ms")
            fig.add("change_to_report_p99", 1000 * percentile(lat, 99), "ms")
            fig.add("change_to_report_samples", len(lat))

            log.info("desired -> register: %d samples", args.writes)
            wlat: list[float] = []
            for i in range(args.writes):
                unit, value = rng.randint(1, n), 2000 + i
                payload = {
                    "event_id": f"w{i}",
                    "timestamp": 0,
                    "delta": {f"p{WRITABLE}": str(value)},
                }
                t = time.monotonic()
                await edge.publish(
                    f"$hw/events/device/dev-{unit}/twin/update/delta", json.dumps(payload), qos=1
                )
                deadline = t + 5
                while time.monotonic() < deadline:
                    rr = await poke.read_holding_registers(WRITABLE, count=1, device_id=unit)
                    if not rr.isError() and rr.registers[0] == value:
                        wlat.append(time.monotonic() - t)
                        break
                    await asyncio.sleep(0.005)
                await asyncio.sleep(rng.uniform(0, cycle / 4))
            fig.add("desired_to_register_p50", 1000 * percentile(wlat, 50), "ms")
            fig.add("desired_to_register_p99", 1000 * percentile(wlat, 99), "ms")
            fig.add("desired_to_register_samples", len(wlat))
            poke.close()
            pumper.cancel()

        mapper.terminate()
        await mapper.wait()

        log.info("bare pymodbus loop: same devices, registers and cycle")
        bare = await _child(
            "--bare", str(mb_port), "--units", str(n), "--cycle", str(cycle),
            "--seconds", str(args.seconds),
        )  # fmt: skip
        procs.append(bare)
        assert bare.stdout is not None
        line = await asyncio.wait_for(bare.stdout.readline(), args.seconds + 60)
        b = json.loads(line)
        bare_reads_s = b["reads"] / b["seconds"]
        bare_cpu_per_read = b["cpu"] / max(1, b["reads"])
        fig.add("bare_reads_per_s", bare_reads_s, "reads/s")
        fig.add("bare_cpu", 100 * b["cpu"] / b["seconds"], "% of a core")
        fig.add("bare_cpu_per_read", 1e6 * bare_cpu_per_read, "µs")
        fig.ratio("mapper_vs_bare_reads_per_cpu_s", bare_cpu_per_read, mapper_cpu_per_read)
        return True
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
        await broker.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--devices", type=int, default=100)
    p.add_argument("--cycle", type=float, default=1.0, help="collect/report cycle, seconds")
    p.add_argument("--seconds", type=float, default=20.0, help="steady-state window")
    p.add_argument("--changes", type=int, default=60, help="register-change samples")
    p.add_argument("--writes", type=int, default=60, help="desired-write samples")
    p.add_argument("--quick", action="store_true", help="20 devices, 5 s windows, 20 samples")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("-v", "--verbose", action="store_true")
    # children
    p.add_argument("--serve-modbus", type=int, help=argparse.SUPPRESS)
    p.add_argument("--units", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--mapper", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--bare", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_modbus:
        logging.getLogger("pymodbus").setLevel(logging.ERROR)
        asyncio.run(serve_modbus(args.serve_modbus, args.units))
        return 0
    if args.mapper:
        logging.basicConfig(level=logging.WARNING)
        asyncio.run(run_mapper(int(args.mapper[0]), args.mapper[1]))
        return 0
    if args.bare:
        asyncio.run(run_bare(args.bare, args.units, args.cycle, args.seconds))
        return 0
    if args.quick:
        args.devices, args.seconds, args.changes, args.writes = 20, 5.0, 20, 20
    setup_logging(verbose=args.verbose)
    logging.getLogger("pymodbus").setLevel(logging.ERROR)
    fig = Figures("mapper_modbus")
    return run_benchmark(fig, measure(args, fig), timeout=args.timeout)


if __name__ == "__main__":
    sys.exit(main())
