"""The worker side of ``bench/twin_throughput.py``: paho clients in one selectors loop.

A worker is ``bench/twin_throughput.py --worker`` (a mapper per device, a raw publisher or the
raw subscriber); it takes JSON-line commands on stdin and reports JSON-line events on stdout,
logs on stderr. :func:`worker_main` is its entry point.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import random
import selectors
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.twin_parts import RAW_TOPIC, update_payload

log = logging.getLogger(__name__)


# =============================================================================================
# worker processes: paho clients in one selectors loop (mappers, raw publishers, raw subscriber)
# =============================================================================================


def emit(event: dict[str, Any]) -> None:
    """One JSON line to the driver (stdout is the worker's channel; logs go to stderr)."""
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class _Reservoir:
    """A uniform sample of at most ``size`` values (latencies), so reports stay small."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.seen = 0
        self.values: list[float] = []

    def add(self, v: float) -> None:
        self.seen += 1
        if len(self.values) < self.size:
            self.values.append(v)
        else:
            j = random.randrange(self.seen)
            if j < self.size:
                self.values[j] = v


@dataclass
class _Step:
    """One worker's counts for one step (``start``..``end`` on the monotonic clock)."""

    start: float
    end: float
    rate: float
    published: int = 0
    throttled: int = 0
    ok: int = 0
    late_ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    late_errors: int = 0
    buckets: list[int] = field(default_factory=list)
    latency: _Reservoir = field(default_factory=lambda: _Reservoir(20_000))
    reasons: dict[str, int] = field(default_factory=dict)
    done: bool = False


class _Client:
    """One paho client: a mapper of one device, a raw publisher, or the raw subscriber."""

    def __init__(self, worker: _Worker, ident: str, index: int) -> None:
        self.worker = worker
        self.ident = ident
        self.index = index
        self.seq = 0
        #: event_id -> monotonic publish time (twin mode); mids awaiting PUBACK (raw mode)
        self.pending: dict[str, float] = {}
        self.unacked = 0
        self.progress = 0
        self.connected = False
        self.ready = False
        self.next_warmup = 0.0
        role = worker.role
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"bench-{role}-{ident}-{os.getpid()}",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        self.c.max_inflight_messages_set(max(20, worker.window))
        self.c.max_queued_messages_set(0)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_publish = self._on_publish
        base = f"$hw/events/device/{ident}/twin"
        self.update_topic = f"{base}/update" if role == "twin" else f"{RAW_TOPIC}/{ident}"
        self.subscriptions = (
            [(f"{base}/update/result", 1), (f"{base}/update/delta", 1)]
            if role == "twin"
            else [(f"{RAW_TOPIC}/#", 1)]
            if role == "sub"
            else []
        )

    def connect(self, port: int) -> None:
        self.c.connect("127.0.0.1", port, keepalive=60)
        sock = self.c.socket()
        if isinstance(sock, socket.socket):  # small QoS 1 packets: do not wait for Nagle
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_connect(self, c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            log.error("%s: connect refused: %s", self.ident, rc)
            return
        self.connected = True
        if self.subscriptions:
            c.subscribe(self.subscriptions)

    def _on_publish(self, _c: mqtt.Client, _u: Any, _mid: int, _rc: Any, _p: Any) -> None:
        self.progress += 1
        self.unacked -= 1
        if self.worker.role == "raw":
            self.worker.on_raw_ack()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.progress += 1
        if self.worker.role == "sub":
            self.worker.on_raw_message()
            return
        if msg.topic.endswith("/delta"):
            self.worker.deltas += 1
            return
        try:
            obj = json.loads(msg.payload)
        except ValueError:
            self.worker.note_result(None, "unparsable", "")
            return
        eid = str(obj.get("event_id", ""))
        code = obj.get("code")
        reason = str(obj.get("reason", ""))
        if eid.startswith("w"):
            if code in (None, 200):
                if not self.ready:
                    self.ready = True
                    self.worker.ready_count += 1
            else:
                self.worker.warmup_reasons[reason] = self.worker.warmup_reasons.get(reason, 0) + 1
            return
        sent = self.pending.pop(eid, None)
        if sent is None:
            self.worker.strays += 1
            return
        ok = code in (None, 200)
        self.worker.note_result(time.monotonic() - sent if ok else None, str(code), reason)

    def publish_update(self, epoch: float, *, warmup: bool = False) -> None:
        self.seq += 1
        eid = f"{'w' if warmup else ''}{self.index}-{self.seq}"
        now = time.time()
        payload = update_payload(eid, now - epoch, int(now * 1000))
        if not warmup and self.worker.role == "twin":
            self.pending[eid] = time.monotonic()
        self.unacked += 1
        self.c.publish(self.update_topic, payload, qos=1)

    def pump_read(self) -> None:
        """Read everything the socket has: paho's ``loop_read`` handles few packets per call
        (one for a client with nothing in flight), so call it until it makes no progress."""
        for _ in range(512):
            before = self.progress
            rc = self.c.loop_read()
            if rc != mqtt.MQTT_ERR_SUCCESS:
                log.error("%s: connection lost (%s)", self.ident, rc)
                self.worker.lost += 1
                self.connected = False
                return
            if self.progress == before:
                return


class _Worker:
    """All clients of one process and the loop that paces them."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.role: str = args.role
        self.window: int = args.window
        self.epoch: float = args.epoch
        self.port: int = args.port
        self.sel = selectors.DefaultSelector()
        idents = [s for s in args.idents.split(",") if s] if args.idents else ["sub"]
        self.clients = [_Client(self, ident, args.first + i) for i, ident in enumerate(idents)]
        self.step: _Step | None = None
        self.deltas = 0
        self.strays = 0
        self.lost = 0
        self.ready_count = 0
        self.warmup_reasons: dict[str, int] = {}
        #: raw subscriber: messages per 10 ms bucket (wall clock), raw publishers: PUBACKs
        self.raw_buckets: dict[int, int] = {}
        self.raw_total = 0
        self._stdin_buf = b""
        self._running = True
        self._rr = 0

    # -- counters -------------------------------------------------------------------------

    def note_result(self, latency: float | None, code: str, reason: str) -> None:
        st = self.step
        if st is None:
            self.strays += 1
            return
        now = time.monotonic()
        in_window = now <= st.end
        if latency is not None:
            if in_window:
                st.ok += 1
                b = int(now - st.start)
                if 0 <= b < len(st.buckets):
                    st.buckets[b] += 1
                st.latency.add(latency)
            else:
                st.late_ok += 1
            return
        if in_window:
            st.errors[code] = st.errors.get(code, 0) + 1
        else:
            st.late_errors += 1
        if len(st.reasons) < 20:
            st.reasons[reason] = st.reasons.get(reason, 0) + 1

    def on_raw_message(self) -> None:
        k = int(time.time() * 100)
        self.raw_buckets[k] = self.raw_buckets.get(k, 0) + 1
        self.raw_total += 1

    def on_raw_ack(self) -> None:
        st = self.step
        if st is not None and time.monotonic() <= st.end:
            st.ok += 1
            b = int(time.monotonic() - st.start)
            if 0 <= b < len(st.buckets):
                st.buckets[b] += 1
        self.raw_total += 1

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        os.set_blocking(0, False)
        self.sel.register(0, selectors.EVENT_READ, None)
        for cl in self.clients:
            cl.connect(self.port)
            sock = cl.c.socket()
            if sock is None:
                raise RuntimeError(f"{cl.ident}: no socket after connect")
            self.sel.register(sock, selectors.EVENT_READ, cl)
        deadline = time.monotonic() + 60
        while not all(cl.connected for cl in self.clients) and time.monotonic() < deadline:
            self._tick(0.01)
        if not all(cl.connected for cl in self.clients):
            emit({"ev": "ready", "ok": False, "why": "not all clients connected in 60 s"})
            return
        if self.role == "twin":
            self._warmup()
        else:
            emit({"ev": "ready", "ok": True})
        misc_at = time.monotonic() + 1.0
        while self._running:
            now = time.monotonic()
            st = self.step
            timeout = 0.05
            if st is not None and not st.done:
                if now >= st.start:
                    self._publish_due(st, now)
                    timeout = 0.002
                else:
                    timeout = min(0.05, st.start - now)
                if now > st.end:
                    st.done = True
                    self._report_step(st)
            self._tick(timeout)
            if now >= misc_at:
                misc_at = now + 1.0
                for cl in self.clients:
                    cl.c.loop_misc()
        for cl in self.clients:
            with contextlib.suppress(Exception):
                cl.c.disconnect()
                cl.c.loop_write()

    def _tick(self, timeout: float) -> None:
        for key, _ in self.sel.select(max(0.0, timeout)):
            if key.data is None:
                self._read_stdin()
            else:
                key.data.pump_read()
        for cl in self.clients:
            if cl.c.want_write():
                cl.c.loop_write()

    def _publish_due(self, st: _Step, now: float) -> None:
        if st.rate <= 0:  # as fast as the window allows (raw baseline)
            for cl in self.clients:
                while cl.unacked < self.window:
                    cl.publish_update(self.epoch)
                    st.published += 1
            return
        due = int((min(now, st.end) - st.start) * st.rate) - (st.published + st.throttled)
        n = len(self.clients)
        for _ in range(max(0, due)):
            cl = self.clients[self._rr % n]
            self._rr += 1
            if len(cl.pending) >= self.window:
                st.throttled += 1
                continue
            cl.publish_update(self.epoch)
            st.published += 1

    def _warmup(self) -> None:
        """One report per device until each is answered 200: the edge knows the Device and its
        model (404 until they arrive from the cloud)."""
        deadline = time.monotonic() + 90
        while self.ready_count < len(self.clients) and time.monotonic() < deadline:
            now = time.monotonic()
            for cl in self.clients:
                if not cl.ready and now >= cl.next_warmup:
                    cl.next_warmup = now + 0.5
                    cl.publish_update(self.epoch, warmup=True)
            self._tick(0.02)
        ok = self.ready_count == len(self.clients)
        emit({"ev": "ready", "ok": ok, "ready": self.ready_count, "why": self.warmup_reasons})

    def _read_stdin(self) -> None:
        try:
            data = os.read(0, 65536)
        except BlockingIOError:
            return
        if not data:
            self._running = False
            return
        self._stdin_buf += data
        while b"\n" in self._stdin_buf:
            line, self._stdin_buf = self._stdin_buf.split(b"\n", 1)
            if line.strip():
                self._command(json.loads(line))

    def _command(self, cmd: dict[str, Any]) -> None:
        what = cmd.get("cmd")
        if what == "exit":
            self._running = False
        elif what == "run":
            # wall-clock start from the driver, so every worker starts together
            start = time.monotonic() + (float(cmd["start"]) - time.time())
            duration = float(cmd["duration"])
            self.step = _Step(
                start=start,
                end=start + duration,
                rate=float(cmd["rate"]),
                buckets=[0] * max(1, math.ceil(duration)),
            )
        elif what == "stats":
            st = self.step
            emit(
                {
                    "ev": "stats",
                    "outstanding": sum(len(cl.pending) for cl in self.clients),
                    "unacked": sum(cl.unacked for cl in self.clients),
                    "late_ok": st.late_ok if st else 0,
                    "late_errors": st.late_errors if st else 0,
                    "raw_total": self.raw_total,
                    "lost": self.lost,
                }
            )
        elif what == "count":
            lo, hi = int(float(cmd["from"]) * 100), int(float(cmd["to"]) * 100)
            window = sum(n for k, n in self.raw_buckets.items() if lo <= k < hi)
            emit({"ev": "count", "window": window, "total": self.raw_total})

    def _report_step(self, st: _Step) -> None:
        emit(
            {
                "ev": "step_done",
                "published": st.published,
                "throttled": st.throttled,
                "ok": st.ok,
                "errors": st.errors,
                "reasons": st.reasons,
                "buckets": st.buckets,
                "latency": st.latency.values,
                "latency_seen": st.latency.seen,
                "deltas": self.deltas,
                "strays": self.strays,
                "lost": self.lost,
            }
        )


def worker_main(args: argparse.Namespace) -> None:
    _Worker(args).run()
