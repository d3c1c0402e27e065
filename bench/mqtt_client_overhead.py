"""What the eventbus's MQTT client costs per message, in and out, against the alternatives.

Why: the twin must report >= 3,000 updates/s end to end on a 2-core edge, and every update is
one MQTT message in (the mapper's ``twin/update``) and one out (the ``.../result``) besides the
twin's own work. The MQTT client's share of the CPU decides how much is left for the twin.

The run, per variant, each on a fresh mosquitto (configured as edgecore's internal broker)::

    load generator ──update──> mosquitto ──> SERVICE ──> stand-in twin
    load generator <──result── mosquitto <── SERVICE <──────┘

The load generator is its own process: a plain paho client on a ``select`` loop (no asyncio,
no code under test) that keeps ``--outstanding`` updates unanswered, sends the next one on
every result, and checks that every update got its result. The stand-in twin answers each
update at once with a result (``{"v": payload}``), so the service is all MQTT client work.

Variants (the SERVICE):

- ``raw``: no service at all; the load generator subscribes to its own topic. The ceiling of
  paho + mosquitto on this machine for one message in and out.
- ``paho-echo``: :class:`edgecore.eventbus.mqtt.Client` (paho driven by the event loop)
  answering in its message callback: no bus, no outbox. The floor for any paho-based service.
- ``paho``: :class:`edgecore.eventbus.module.EventBus`, today's eventbus, with the twin behind
  a :class:`hive.bus.Bus`.
- ``aiomqtt``: the same job written on aiomqtt used well: ``async for message in
  client.messages``, publishes awaited by up to ``--window`` tasks at once, a persistent
  session, acknowledgements sent only after the twin took the message (through the paho
  client aiomqtt wraps: aiomqtt has no manual-ack option).
- ``old``: the eventbus with the hand-written MQTT client it had before (module and client
  taken from ``git show REV:...``, ``--old-rev``; or from ``--old-dir``).

Figures per variant (median of ``--repeat`` runs): ``round trips/s`` (one update in and its
result out), the service's CPU per round trip (user+system from ``/proc``, during the timed
run only), and the load generator's and mosquitto's. The service's CPU per round trip is the
number that carries over to another machine; the rates depend on what else the 2 cores run
(here the load generator and mosquitto take more than a core between them).
``capacity`` = 1e6 / service µs per round trip: the round trips/s the service would manage
with a core to itself.

Run ``python bench/mqtt_client_overhead.py --help``; ``--quick`` for a short run.
``BENCH_PROFILE=FILE`` writes a cProfile (CPU time) of each service run to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO_ROOT, free_port
from bench.measure import Figures, add_host_figures, cpu_seconds

log = logging.getLogger("bench.mqtt")

VARIANTS = ("raw", "paho-echo", "paho", "aiomqtt", "old")
#: the hand-written client's last commit (the working tree may already have replaced it)
DEFAULT_OLD_REV = "a309851"
UPDATE_TOPIC = "$hw/events/device/{device}/twin/update"
RESULT_FILTER = "$hw/events/device/+/twin/update/result"
RAW_TOPIC = "bench/raw/{device}"
RAW_FILTER = "bench/raw/+"
DEVICES = 50
SCRIPT = str(Path(__file__).resolve())


def _setup_logging(prefix: str) -> None:
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {prefix}%(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


# -- load generator (its own process: paho on a select loop) ----------------------------------


def loadgen_main(args: argparse.Namespace) -> None:
    """Keep ``outstanding`` updates unanswered until ``count`` results came back."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    raw = args.mode == "raw"
    pub_topic = RAW_TOPIC if raw else UPDATE_TOPIC
    count, outstanding = args.count, args.outstanding
    state = {"sent": 0, "got": 0, "suback": False}
    seen = bytearray(count)
    topics = [pub_topic.format(device=f"d{i}") for i in range(DEVICES)]

    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-loadgen", clean_session=True)
    c.max_inflight_messages_set(outstanding)
    c.max_queued_messages_set(0)

    def send_next() -> None:
        n = state["sent"]
        if n < count:
            state["sent"] = n + 1
            payload = json.dumps(
                {
                    "event_id": f"e{n}",
                    "timestamp": 1,
                    "twin": {"temp": {"actual": {"value": str(n)}}},
                },
                separators=(",", ":"),
            )
            c.publish(topics[n % DEVICES], payload, qos=1)

    def on_message(_c: Any, _u: Any, m: paho.MQTTMessage) -> None:
        body = json.loads(m.payload)
        text = body if raw else json.loads(body["v"])
        seq = int(text["event_id"][1:])
        if not seen[seq]:
            seen[seq] = 1
            state["got"] += 1
        send_next()

    def on_subscribe(*_a: Any) -> None:
        state["suback"] = True

    c.on_message = on_message
    c.on_subscribe = on_subscribe
    c.connect(args.host, args.port, keepalive=60)
    sock = c.socket()
    assert isinstance(sock, socket.socket)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.subscribe(RAW_FILTER if raw else RESULT_FILTER, qos=1)

    def pump(until: Any, deadline: float) -> None:
        while not until() and time.monotonic() < deadline:
            s = c.socket()
            if s is None:
                raise SystemExit("load generator: connection lost")
            r, _w, _x = select.select([s], [s] if c.want_write() else [], [], 0.2)
            if r:
                c.loop_read()
            if c.want_write():
                c.loop_write()
            c.loop_misc()

    pump(lambda: state["suback"], time.monotonic() + 10)
    cpu0, t0 = time.process_time(), time.monotonic()
    for _ in range(outstanding):
        send_next()
    pump(lambda: state["got"] >= count, time.monotonic() + args.deadline)
    elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
    c.disconnect()
    with contextlib.suppress(Exception):
        c.loop_write()
    print(
        json.dumps({"count": count, "got": state["got"], "seconds": elapsed, "cpu": cpu}),
        flush=True,
    )


# -- services under test (their own process) --------------------------------------------------


async def _echo_twin(bus: Any) -> None:
    """The stand-in twin: every update answered at once on its result topic."""
    from wire import topics
    from wire.messages import Message

    while True:
        msg = await bus.receive("twin")
        device = topics.parse(msg.resource).device_id
        assert device is not None
        await bus.send(
            "eventbus",
            Message.new(
                source="twin",
                group="bus",
                operation="publish",
                resource=topics.twin_update_result(device),
                content={"v": msg.content},
            ),
        )


async def _run_eventbus(args: argparse.Namespace, eventbus_cls: Any, data_dir: Path) -> Any:
    from edgecore.config import MqttSettings
    from hive.bus import Bus

    bus = Bus()
    bus.register("eventbus", "bus")
    bus.register("twin", "twin")
    eb = eventbus_cls(
        bus=bus,
        settings=MqttSettings(mode="external", url=f"mqtt://{args.host}:{args.port}"),
        node_name="bench",
        data_dir=data_dir,
        window=args.window,
    )
    tasks = [asyncio.create_task(eb.run()), asyncio.create_task(_echo_twin(bus))]
    await eb.connected.wait()
    return eb, tasks


class AiomqttBridge:
    """The eventbus's job on aiomqtt, the bench's variant (a); see the module docstring."""

    def __init__(self, args: argparse.Namespace) -> None:
        from hive.bus import Bus

        self.args = args
        self.bus = Bus()
        self.bus.register("eventbus", "bus")
        self.bus.register("twin", "twin")
        self.connected = asyncio.Event()
        self.received = self.published = 0

    async def run(self) -> None:
        import aiomqtt

        from edgecore.eventbus.module import encode_payload
        from wire import topics
        from wire.messages import Message

        window = asyncio.Semaphore(self.args.window)
        client = aiomqtt.Client(
            self.args.host,
            self.args.port,
            identifier="edgecore-bench",
            clean_session=False,
            keepalive=15,
            max_inflight_messages=self.args.window,
        )
        client.pending_calls_threshold = self.args.window + 1  # its warning is per publish
        paho_client = client._client  # manual acks exist in paho only
        paho_client.manual_ack_set(True)

        async def publish_one(topic: str, payload: bytes) -> None:
            try:
                await client.publish(topic, payload, qos=1)
                self.published += 1
            finally:
                window.release()

        async def pump() -> None:
            publishes: set[asyncio.Task[None]] = set()
            while True:
                msg = await self.bus.receive("eventbus")
                await window.acquire()
                t = asyncio.create_task(publish_one(msg.resource, encode_payload(msg.content)))
                publishes.add(t)
                t.add_done_callback(publishes.discard)

        async with client:
            await client.subscribe([(t, 1) for t in topics.SUBSCRIPTIONS])
            self.connected.set()
            pumper = asyncio.create_task(pump())
            try:
                async for m in client.messages:
                    if topics.parse(m.topic.value).is_output:
                        paho_client.ack(m.mid, m.qos)
                        continue
                    payload = m.payload
                    content = payload.decode() if isinstance(payload, bytes) else str(payload)
                    await self.bus.send(
                        "twin",
                        Message.new(
                            source="eventbus",
                            group="twin",
                            operation="message",
                            resource=m.topic.value,
                            content=content,
                        ),
                    )
                    self.received += 1
                    paho_client.ack(m.mid, m.qos)
            finally:
                pumper.cancel()


class PahoEcho:
    """paho through :class:`edgecore.eventbus.mqtt.Client`, answering in the callback."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.connected = asyncio.Event()
        self.received = self.published = 0

    async def run(self) -> None:
        from edgecore.eventbus import mqtt
        from wire import topics

        def on_message(m: Any) -> bool:
            self.received += 1
            device = topics.parse(m.topic).device_id
            assert device is not None
            body = json.dumps({"v": m.payload.decode()}, separators=(",", ":")).encode()
            client.publish(topics.twin_update_result(device), body)
            return True

        def on_published(_mid: int) -> None:
            self.published += 1

        client = mqtt.Client(
            self.args.host,
            self.args.port,
            client_id="edgecore-bench",
            on_message=on_message,
            on_published=on_published,
        )
        await client.connect()
        await client.subscribe([(t, 1) for t in topics.SUBSCRIPTIONS], timeout=10)
        self.connected.set()
        try:
            await asyncio.shield(client.closed)
        finally:
            await client.disconnect()


async def service_async(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="bench-svc-"))
    tasks: list[asyncio.Task[Any]]
    try:
        if args.variant in ("paho", "old"):
            if args.variant == "old":
                sys.path.insert(0, args.old_dir)
                from old_eventbus.module import EventBus  # type: ignore[import-not-found]
            else:
                from edgecore.eventbus.module import EventBus
            svc, tasks = await _run_eventbus(args, EventBus, data_dir)
        else:
            if args.variant == "aiomqtt":
                bridge = AiomqttBridge(args)
                tasks = [
                    asyncio.create_task(bridge.run()),
                    asyncio.create_task(_echo_twin(bridge.bus)),
                ]
                svc = bridge
            else:
                svc = PahoEcho(args)
                tasks = [asyncio.create_task(svc.run())]
            await asyncio.wait(
                [asyncio.ensure_future(svc.connected.wait()), *tasks],
                return_when=asyncio.FIRST_COMPLETED,
            )
            for t in tasks:
                if t.done():
                    t.result()
        print("ready", flush=True)
        # until the parent closes our stdin
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)
        print(
            json.dumps({"received": svc.received, "published": svc.published}),
            flush=True,
        )
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


# -- the orchestrator --------------------------------------------------------------------------


def prepare_old(rev: str, into: Path) -> Path:
    """The hand-written eventbus from git ``rev`` as package ``old_eventbus`` under ``into``."""
    pkg = into / "old_eventbus"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")

    def show(path: str) -> str:
        return subprocess.run(
            ["git", "show", f"{rev}:{path}"],
            cwd=REPO_ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    (pkg / "mqtt.py").write_text(show("edgecore/eventbus/mqtt.py"))
    module = show("edgecore/eventbus/module.py").replace(
        "from edgecore.eventbus import mqtt, topics",
        "from wire import topics\nfrom old_eventbus import mqtt",
    )
    (pkg / "module.py").write_text(module)
    return into


def copy_old(src: Path, into: Path) -> Path:
    """Like :func:`prepare_old`, from a directory holding the old mqtt.py and module.py."""
    pkg = into / "old_eventbus"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    shutil.copy(src / "mqtt.py", pkg / "mqtt.py")
    (pkg / "module.py").write_text(
        (src / "module.py")
        .read_text()
        .replace(
            "from edgecore.eventbus import mqtt, topics",
            "from wire import topics\nfrom old_eventbus import mqtt",
        )
    )
    return into


async def run_once(args: argparse.Namespace, variant: str, work: Path, n: int) -> dict[str, float]:
    from edgecore.eventbus.broker import Mosquitto

    port = free_port()
    broker = Mosquitto(data_dir=work / f"{variant}-{n}", port=port, stop_timeout=2.0)
    await broker.start()
    me = [sys.executable, SCRIPT]
    common = ["--host", "127.0.0.1", "--port", str(port)]
    svc: asyncio.subprocess.Process | None = None
    try:
        if variant != "raw":
            svc = await asyncio.create_subprocess_exec(
                *me,
                "--role",
                "service",
                "--variant",
                variant,
                "--window",
                str(args.window),
                "--old-dir",
                str(args.old_dir or ""),
                *common,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            assert svc.stdout is not None
            line = await asyncio.wait_for(svc.stdout.readline(), 20)
            if line.strip() != b"ready":
                raise RuntimeError(f"service {variant} did not start: {line!r}")
        mpid = broker.pid or 0
        s_cpu0 = cpu_seconds(svc.pid) if svc else 0.0
        m_cpu0 = cpu_seconds(mpid)
        gen = await asyncio.create_subprocess_exec(
            *me,
            "--role",
            "loadgen",
            "--mode",
            "raw" if variant == "raw" else "echo",
            "--count",
            str(args.count),
            "--outstanding",
            str(args.outstanding),
            "--deadline",
            str(args.timeout),
            *common,
            stdout=subprocess.PIPE,
        )
        out, _ = await gen.communicate()
        s_cpu = (cpu_seconds(svc.pid) - s_cpu0) if svc else 0.0
        m_cpu = cpu_seconds(mpid) - m_cpu0
        result = json.loads(out.decode().strip().splitlines()[-1])
        stats: dict[str, Any] = {}
        if svc is not None:
            assert svc.stdin is not None and svc.stdout is not None
            svc.stdin.close()
            stats = json.loads((await asyncio.wait_for(svc.stdout.readline(), 10)).decode())
            await asyncio.wait_for(svc.wait(), 10)
    finally:
        if svc is not None and svc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                svc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(svc.wait(), 5)
            if svc.returncode is None:
                svc.kill()
                await svc.wait()
        await broker.stop()
    got, count, secs = result["got"], result["count"], result["seconds"]
    if got != count:
        log.warning("%s: only %d of %d results came back", variant, got, count)
    rate = got / secs if secs else 0.0
    row = {
        "rate": rate,
        "ok": float(got == count),
        "svc_us": s_cpu / got * 1e6 if got else float("nan"),
        "gen_us": result["cpu"] / got * 1e6 if got else float("nan"),
        "mosq_us": m_cpu / got * 1e6 if got else float("nan"),
        "svc_util": s_cpu / secs if secs else 0.0,
    }
    log.info(
        "%-9s run %d: %6.0f round trips/s, service %5.1f µs/rt (%.0f%% of a core), "
        "loadgen %5.1f µs/rt, mosquitto %5.1f µs/rt %s",
        variant,
        n + 1,
        rate,
        row["svc_us"],
        100 * row["svc_util"],
        row["gen_us"],
        row["mosq_us"],
        stats,
    )
    return row


async def orchestrate(args: argparse.Namespace) -> int:
    load0 = os.getloadavg()[0]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r} (choose from {', '.join(VARIANTS)})")
    work = Path(tempfile.mkdtemp(prefix="bench-mqtt-"))
    ok = True
    try:
        if "old" in variants:
            args.old_dir = (
                copy_old(Path(args.old_dir), work / "old")
                if args.old_dir
                else prepare_old(args.old_rev, work / "old")
            )
        fig = Figures(f"MQTT client overhead ({args.count} round trips, median of {args.repeat})")
        # interleaved (one run of each, then again) so a busy machine weighs on all alike
        runs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
        for n in range(args.repeat):
            for v in variants:
                runs[v].append(await run_once(args, v, work, n))
        for v in variants:
            rows = runs[v]
            ok = ok and all(r["ok"] for r in rows)

            def med(key: str, rows: list[dict[str, float]] = rows) -> float:
                return statistics.median(r[key] for r in rows)

            fig.add(f"{v}_rate", med("rate"), "round trips/s (one message in + one out)", digits=0)
            if v != "raw":
                fig.add(f"{v}_service_cpu", med("svc_us"), "µs per round trip")
                fig.add(
                    f"{v}_capacity",
                    1e6 / med("svc_us"),
                    "round trips/s with a core to itself",
                    digits=0,
                )
            fig.add(f"{v}_loadgen_cpu", med("gen_us"), "µs per round trip")
            fig.add(f"{v}_mosquitto_cpu", med("mosq_us"), "µs per round trip")
            fig.add(f"{v}_complete", "yes" if all(r["ok"] for r in rows) else "NO")
        add_host_figures(fig, load0)
        fig.print()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    p.add_argument("--count", type=int, default=30_000, help="round trips per run")
    p.add_argument("--outstanding", type=int, default=400, help="updates unanswered at once")
    p.add_argument("--window", type=int, default=256, help="service's publishes in flight")
    p.add_argument("--repeat", type=int, default=3, help="runs per variant (median reported)")
    p.add_argument("--old-rev", default=DEFAULT_OLD_REV, help="git revision of the old client")
    p.add_argument("--old-dir", default="", help="directory with the old mqtt.py + module.py")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per load run, at most")
    p.add_argument("--quick", action="store_true", help="5,000 round trips, 1 run each")
    # internal: the child processes
    p.add_argument("--role", choices=("main", "service", "loadgen"), default="main")
    p.add_argument("--variant", default="paho")
    p.add_argument("--mode", choices=("echo", "raw"), default="echo")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--deadline", type=float, default=120.0)
    args = p.parse_args()
    if args.role == "loadgen":
        loadgen_main(args)
        return 0
    if args.role == "service":
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        if os.environ.get("BENCH_PROFILE"):  # a cProfile of the service, for development
            import cProfile

            prof = cProfile.Profile(time.process_time)  # CPU, not waiting for it
            prof.runcall(asyncio.run, service_async(args))
            prof.dump_stats(os.environ["BENCH_PROFILE"])
        else:
            asyncio.run(service_async(args))
        return 0
    if args.quick:
        args.count, args.repeat = 5_000, 1
    _setup_logging("")
    return asyncio.run(asyncio.wait_for(orchestrate(args), args.timeout * 20))


if __name__ == "__main__":
    sys.exit(main())
