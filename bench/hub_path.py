"""The hub's per-update path to an edge, in process: CPU per delivered update and its ACK.

Why: per delivered update the hub is about half of the cloud's CPU (issue 19). This drives the
very code a pod update and its ACK run through, without sockets or other processes, so that
a change to it shows in microseconds per update rather than in the noise of a fleet bench:

- ``pure``: :class:`~cloudhub.hub.linksession.LinkSession` alone: ``change`` (the object's
  text already in the content cache, as the inbox puts it), ``poll`` (the frame), the edge's
  ACK as a stock edgecore writes it through ``frame``, and ``next_deadline``;
- ``session``: :class:`~cloudhub.hub.session.NodeSession` with its writer parked, as the inbox
  and the reader drive it: ``state.change`` + ``deliver`` (frame, write, alarm) and the ACK
  through :meth:`~cloudhub.hub.reader.FrameReader.ack_now`. The link collects the frames (the
  process edge: no TLS, no websocket framing, which ``hub_scale.py`` measures);
- ``inbox``: ``session``, the change arriving as edgecontroller sends it, a bus message to the
  hub's inbox (:class:`~cloudhub.hub.inbox.Inbox` running), one loop iteration per update.

Each runs for our edge and a stock one, with ``--in-flight`` other objects waiting for their
ACK (a busy link: what a scan per event costs). ``--against DIR`` runs the same script on the
code in DIR (e.g. ``/work/main``) in a child process and prints the ratios.

Run ``python bench/hub_path.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.environ.get("HUB_PATH_CODE") or str(_ROOT))

from cloudhub import routes  # noqa: E402
from cloudhub.config import HubSettings  # noqa: E402
from cloudhub.hub.inbox import Inbox  # noqa: E402
from cloudhub.hub.linksession import LinkSession  # noqa: E402
from cloudhub.hub.reader import FrameReader  # noqa: E402
from cloudhub.hub.session import NodeSession  # noqa: E402
from cloudhub.hub.upstream import Requests  # noqa: E402
from hive.bus import Bus  # noqa: E402
from hive.local_messages import MessageIds  # noqa: E402
from wire.messages import Message  # noqa: E402

NODE = "edge-0001"
#: the hub's default ``coalesce`` (HubSettings), the delivery's ``min_interval``
COALESCE = HubSettings().coalesce

#: an ACK as a stock v1.15 edgecore writes it (Go's encoding/json, a newline after it)
_STOCK_ACK = (
    '{"header":{"msg_id":"a%d","parent_msg_id":"%s","timestamp":1796670000000},'
    '"route":{"source":"edgecontroller","group":"resource","operation":"response",'
    '"resource":"%s"},"content":"OK"}\n'
)


def _msg_id(frame: str) -> str:
    start = frame.index('"msg_id":"') + 10
    return frame[start : frame.index('"', start)]


def pod(i: int) -> dict[str, Any]:
    """About 1 KB of pod, as bench/cloud.py's bench_pod writes it."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"p{i}",
            "namespace": "bench",
            "resourceVersion": str(100 + i),
            "labels": {"app": "bench", "bench/node": NODE},
            "annotations": {"bench/seq": str(i)},
        },
        "spec": {
            "nodeName": NODE,
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example.com/bench/app:1.0.0",
                    "env": [{"name": f"S_{i}", "value": f"value-{i:04d}"} for i in range(10)],
                }
            ],
        },
    }


class Meter:
    """What a case measures between :meth:`begin` and :meth:`end`: CPU µs per update."""

    def begin(self) -> None:
        self._start = time.process_time()

    def end(self, updates: int) -> float:
        return (time.process_time() - self._start) / updates * 1e6


class Calls(Meter):
    """Python and builtin calls per update (exact: no noise; the profile hook slows the run)."""

    def begin(self) -> None:
        self._calls = 0

        def count(frame: Any, event: str, arg: Any) -> None:
            if event in ("call", "c_call"):
                self._calls += 1

        sys.setprofile(count)

    def end(self, updates: int) -> float:
        sys.setprofile(None)
        return self._calls / updates


def _versions(n: int) -> list[tuple[str, str, dict[str, Any], str]]:
    """``n`` updates of ``n`` pods, one each: with the hub's default ``coalesce`` pause, a pod
    updated again within 50 ms would be held back (what burst_coalescing.py measures)."""
    return [
        (f"bench/pod/p{i}", str(100 + i), obj := pod(i), json.dumps(obj, separators=(",", ":")))
        for i in range(n)
    ]


def _state(stock: bool, in_flight: int) -> LinkSession:
    state = LinkSession(
        node=NODE,
        stock=stock,
        heartbeat=15.0,
        now=0.0,
        ack_timeout=3600.0,
        window=in_flight + 8,
        min_interval=COALESCE,
        max_frame=4 << 20,
    )
    state.start({}, {})
    for i in range(in_flight):  # objects waiting for an ACK that does not come in the run
        state.change(f"bench/configmap/c{i}", "1", {"kind": "ConfigMap"})
    state.poll(0.0, 0)
    return state


def pure(stock: bool, in_flight: int, updates: int, meter: Meter) -> float:
    """µs per update: change -> poll (frame) -> the edge's ACK -> next_deadline."""
    state = _state(stock, in_flight)
    versions = _versions(updates)
    cache = state._encoded
    acks = 0
    meter.begin()
    now = 1.0
    for key, rv, obj, body in versions:
        now += 0.001
        cache.put((key, rv), body)  # the inbox does it: the store's own text of the version
        state.change(key, rv, obj)
        frames = state.poll(now, 1796670000000)
        msg_id = _msg_id(frames[-1])
        state.frame(_STOCK_ACK % (acks, msg_id, key), now)
        acks += 1
        state.next_deadline()
    figure = meter.end(updates)
    assert len(state.downstream.edge) == updates, "an update was not ACKed"
    return figure


class _Collect:
    """A link that takes every frame at once (the process edge: no socket)."""

    remote_address = ("127.0.0.1", 0)

    def __init__(self) -> None:
        self.last = ""

    def may_wait(self, frames: list[str]) -> bool:
        return False

    def may_wait_one(self, frame: str) -> bool:
        return False

    def write_now(self, frame: str) -> bool:
        self.last = frame
        return True

    def write_now_all(self, frames: list[str]) -> bool:
        self.last = frames[-1]
        return True

    def take_frames(self, sink: Any) -> None:
        pass

    async def send(self, frame: str) -> None:
        self.last = frame

    def abort(self) -> None:
        pass

    async def close(self, code: int, reason: str) -> None:
        pass


async def _node(stock: bool, in_flight: int, link: _Collect) -> tuple[NodeSession, list[float]]:
    """A started session, its writer parked with ``in_flight`` objects awaiting their ACK,
    and the list holding its clock."""
    node = NodeSession(
        node=NODE,
        link=link,  # type: ignore[arg-type]
        heartbeat=15.0,
        ack_timeout=3600.0,
        window=in_flight + 8,
        min_interval=COALESCE,
        send_timeout=10.0,
        stock=stock,
    )
    node.start({}, {})
    node.run_writer()
    for i in range(in_flight):
        node.state.change(f"bench/configmap/c{i}", "1", {"kind": "ConfigMap"})
    node.wake()
    for _ in range(100):
        await asyncio.sleep(0)
        if node._parked and node.downstream.in_flight == in_flight:
            break
    # The session's clock advances 1 ms per update, as in ``pure``: a node gets a handful of
    # updates per ``coalesce`` pause, not the thousands this loop would fit into one.
    clock = [asyncio.get_running_loop().time()]
    node._clock = lambda: clock[0]
    return node, clock


async def session(stock: bool, in_flight: int, updates: int, meter: Meter) -> float:
    """µs per update through NodeSession: change + deliver, the ACK through the reader."""
    link = _Collect()
    node, clock = await _node(stock, in_flight, link)
    reader = FrameReader(node, HubSettings(), lambda: clock[0])
    versions = _versions(updates)
    cache = node.state._encoded
    meter.begin()
    for i, (key, rv, obj, body) in enumerate(versions):
        clock[0] += 0.001
        cache.put((key, rv), body)
        if node.state.change(key, rv, obj):
            node.deliver()
        msg_id = _msg_id(link.last)
        if not reader.ack_now(_STOCK_ACK % (i, msg_id, key)):
            raise SystemExit("the ACK did not take the fast path")
    figure = meter.end(updates)
    assert len(node.downstream.edge) == updates, "an update was not ACKed"
    await node.close("done")
    return figure


async def inbox(stock: bool, in_flight: int, updates: int, meter: Meter) -> float:
    """µs per update from edgecontroller's bus message to the ACK: a ``Fanouts`` of one change
    sent to the hub's inbox (its routing task running), the sender yielding once per update
    as a watch reader does between reads, then the ACK through the reader."""
    link = _Collect()
    node, clock = await _node(stock, in_flight, link)
    reader = FrameReader(node, HubSettings(), lambda: clock[0])
    bus = Bus()
    bus.register(routes.HUB, "hub")
    hub = Inbox(
        bus=bus,
        sessions={NODE: node},
        requests=Requests(),
        ids=MessageIds(),
        encoded=node.state._encoded,
    )
    router = asyncio.create_task(hub.run())
    await asyncio.sleep(0)
    messages = [
        Message.new(
            source=routes.EDGECONTROLLER,
            group="resource",
            operation="update",
            resource="",
            content=routes.Fanouts((routes.Fanout(key, rv, (NODE,), obj, body),)),
        )
        for key, rv, obj, body in _versions(updates)
    ]
    meter.begin()
    for i, msg in enumerate(messages):
        clock[0] += 0.001
        last = link.last
        if not bus.send_nowait(routes.HUB, msg):
            raise SystemExit("the hub's inbox is full")
        await asyncio.sleep(0)
        if link.last is last:
            raise SystemExit("the change did not reach the link within a loop iteration")
        if not reader.ack_now(_STOCK_ACK % (i, _msg_id(link.last), msg.content.changes[0].key)):
            raise SystemExit("the ACK did not take the fast path")
    figure = meter.end(updates)
    assert len(node.downstream.edge) == updates, "an update was not ACKed"
    router.cancel()
    await asyncio.gather(router, return_exceptions=True)
    await node.close("done")
    return figure


def measure(updates: int, in_flight: int, rounds: int) -> dict[str, float]:
    """Best of ``rounds`` for each case (the least disturbed by the machine's other work),
    and the calls per update of each case (one run: they do not vary)."""
    best: dict[str, float] = {}
    for round_ in range(rounds):
        for stock in (False, True):
            edge = "stock" if stock else "ours"
            for flights in sorted({0, in_flight}):
                name = f"{edge}_inflight{flights}"
                figures = {
                    f"pure_{name}": pure(stock, flights, updates, Meter()),
                    f"session_{name}": asyncio.run(session(stock, flights, updates, Meter())),
                    f"inbox_{name}": asyncio.run(inbox(stock, flights, updates, Meter())),
                }
                if round_ == 0:
                    few = min(updates, 500)
                    figures |= {
                        f"calls_pure_{name}": pure(stock, flights, few, Calls()),
                        f"calls_session_{name}": asyncio.run(session(stock, flights, few, Calls())),
                        f"calls_inbox_{name}": asyncio.run(inbox(stock, flights, few, Calls())),
                    }
                for key, value in figures.items():
                    best[key] = min(best.get(key, value), value)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=5000, help="updates per case (5000)")
    parser.add_argument("--in-flight", type=int, default=50, help="other objects in flight (50)")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many rounds (3)")
    parser.add_argument("--against", metavar="DIR", help="also run on the code in DIR: ratios")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    ours = measure(args.updates, args.in_flight, args.rounds)
    if args.json:
        print(json.dumps(ours))
        return
    base: dict[str, float] = {}
    if args.against:
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--json",
                "--updates",
                str(args.updates),
                "--in-flight",
                str(args.in_flight),
                "--rounds",
                str(args.rounds),
            ],
            env={**os.environ, "HUB_PATH_CODE": str(Path(args.against).resolve())},
            capture_output=True,
            text=True,
            check=True,
        )
        base = json.loads(child.stdout.strip().splitlines()[-1])
    for name, value in ours.items():
        unit = "calls/update" if name.startswith("calls_") else "us/update"
        line = f"{name}: {value:.2f} {unit}"
        if name in base:
            line += f"  (baseline {base[name]:.2f}, ratio {value / base[name]:.2f})"
        print(line)
    print(f"host_cpus: {os.cpu_count()}")
    print(f"loadavg: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
