"""The worker and echo-server side of ``bench/hub_scale.py``.

A worker is ``bench/hub_scale.py --worker``: it holds a share of the simulated edges, tracks the
pod messages they receive and, for the baseline, drives echo connections. The echo server is
``bench/hub_scale.py --echo-server``: a bare ``websockets`` echo over mutual TLS. Both take
JSON-line commands on stdin and report JSON-line events on stdout (logs go to stderr);
:func:`worker_main` and :func:`echo_server_main` are their entry points. The node and pod names
shared with the driver live here too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from bench.common import raise_nofile, wait_for_condition
from bench.simedge import CertMinter, SimEdge, connect_all, encode_frame, keepalive_loop
from cloudhub.tuning import shrink_tls_read_buffer

log = logging.getLogger(__name__)

NAMESPACE = "bench"


def node_name(i: int) -> str:
    return f"bn{i:05d}"


def pod_name(node: str) -> str:
    return f"bp-{node}"


def pod_key(node: str) -> str:
    return f"{NAMESPACE}/pod/{pod_name(node)}"


# =============================================================================================
# worker process: holds a share of the simulated edges, then echo clients
# =============================================================================================


def emit(event: dict[str, Any]) -> None:
    """One JSON line to the driver (stdout is the worker's channel; logs go to stderr)."""
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


@dataclass
class Tracker:
    """Per-phase counts and latencies of pod messages seen by this worker's edges."""

    acked: dict[str, int] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    #: phase being waited for, and pod key -> the seq that completes it
    phase: str = ""
    remaining: dict[str, int] = field(default_factory=dict)
    last_ack: float = 0.0

    def on_object(
        self, edge: SimEdge, op: str, key: str, rv: str, content: Any, now: float
    ) -> None:
        ann = _annotations(content) if "/pod/" in key and op != "delete" else None
        if ann is None:
            return
        phase = ann.get("bench/phase", "")
        sent = ann.get("bench/sent")
        if sent:
            self.latencies.setdefault(phase, []).append(now - float(sent))

    def on_acked(self, edge: SimEdge, op: str, key: str, content: Any, now: float) -> None:
        ann = _annotations(content) if "/pod/" in key and op != "delete" else None
        if ann is None:
            return
        phase = ann.get("bench/phase", "")
        self.acked[phase] = self.acked.get(phase, 0) + 1
        if phase != self.phase or key not in self.remaining:
            return
        if int(ann.get("bench/seq", "0")) >= self.remaining[key]:
            del self.remaining[key]
            self.last_ack = now
            if not self.remaining:
                emit({"ev": "converged", "phase": phase, "t": now})


def _annotations(content: Any) -> dict[str, str] | None:
    if not isinstance(content, dict):
        return None
    meta = content.get("metadata")
    if not isinstance(meta, dict):
        return None
    ann = meta.get("annotations")
    return ann if isinstance(ann, dict) else None


async def _stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def worker_main(args: argparse.Namespace) -> None:
    raise_nofile()
    # cloudhub's TLS read buffer, not CPython's 256 KiB: 2,500 links per worker would hold
    # 640 MB of buffers for nothing (the echo clients are these processes too)
    shrink_tls_read_buffer()
    names = [node_name(i) for i in range(args.first, args.first + args.count)]
    minter = CertMinter(data_dir=args.data_dir, out_dir=args.cert_dir / f"w{args.worker_index}")
    t = time.monotonic()
    contexts = [minter.client_context(n) for n in names]
    log.debug("minted %d certificates in %.1fs", len(names), time.monotonic() - t)
    tracker = Tracker()
    edges = [
        SimEdge(
            node=n,
            url=f"wss://127.0.0.1:{args.ws_port}/bench/{n}/events",
            ssl_context=ctx,
            heartbeat=args.heartbeat,
            on_object=tracker.on_object,
            on_acked=tracker.on_acked,
        )
        for n, ctx in zip(names, contexts, strict=True)
    ]
    by_node = {e.node: e for e in edges}
    keepalive = asyncio.create_task(keepalive_loop(lambda: edges), name="keepalive")
    echo_conns: list[ClientConnection] = []
    echo_idle: list[ClientConnection] = []
    stdin = await _stdin_lines()
    emit({"ev": "ready", "count": len(edges)})
    try:
        while True:
            line = await stdin.readline()
            if not line:
                return  # the driver is gone
            cmd = json.loads(line)
            name = cmd["cmd"]
            if name == "connect":
                await _connect_edges(edges, args)
            elif name == "expect":
                tracker.phase = cmd["phase"]
                tracker.remaining = {pod_key(n): int(s) for n, s in cmd["final"].items()}
                emit({"ev": "expecting", "phase": tracker.phase, "n": len(tracker.remaining)})
                if not tracker.remaining:
                    emit({"ev": "converged", "phase": tracker.phase, "t": time.time()})
            elif name == "status":
                emit(_status(edges, tracker, by_node, cmd.get("phase", "")))
            elif name == "report":
                emit(
                    {
                        **_status(edges, tracker, by_node, ""),
                        "ev": "report",
                        "acked": tracker.acked,
                        "latencies": {k: v for k, v in tracker.latencies.items()},
                        "bytes": sum(e.bytes_received for e in edges),
                        "messages": sum(e.messages() for e in edges),
                        "close_reasons": _reasons(edges),
                    }
                )
            elif name == "keep_only":
                # Drop every edge not named, as a fleet shrinking to the echo's size would.
                keep = set(cmd["nodes"])
                await asyncio.gather(*(e.close() for e in edges if e.node not in keep))
                emit({"ev": "kept", "open": sum(1 for e in edges if e.open)})
            elif name == "disconnect":
                keepalive.cancel()
                await asyncio.gather(*(e.close() for e in edges))
                emit({"ev": "disconnected"})
            elif name == "echo_connect":
                # `conns` busy connections, then `idle` ones that only send keepalives (a
                # fleet of the same size as edgebridge's, most of it idle)
                active, idle = cmd["conns"], cmd.get("idle", 0)
                echo_conns = await _echo_connect(cmd["url"], contexts[: active + idle], cmd)
                echo_idle = echo_conns[active:]
                echo_conns = echo_conns[:active]
                emit({"ev": "echo_connected", "n": len(echo_conns), "idle": len(echo_idle)})
            elif name == "echo_run":
                count, seconds = await _echo_run(
                    echo_conns,
                    cmd["payload"],
                    cmd["seconds"],
                    idle=echo_idle,
                    heartbeat=args.heartbeat,
                )
                emit({"ev": "echo_done", "roundtrips": count, "seconds": seconds})
                for ws in echo_conns + echo_idle:
                    ws.transport.abort()
                echo_conns, echo_idle = [], []
            elif name == "exit":
                return
    finally:
        keepalive.cancel()
        for e in edges:
            if e.ws is not None:
                e.ws.transport.abort()


def _reasons(edges: list[SimEdge]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in edges:
        if e.close_reason and not e.open:
            r = e.close_reason[:80]
            out[r] = out.get(r, 0) + 1
    return out


def _status(
    edges: list[SimEdge], tracker: Tracker, by_node: dict[str, SimEdge], phase: str
) -> dict[str, Any]:
    open_ = sum(1 for e in edges if e.open)
    synced = sum(1 for e in edges if e.open and e.synced_at)
    return {
        "ev": "status",
        "open": open_,
        "synced": synced,
        "unsynced": [e.node for e in edges if not (e.open and e.synced_at)],
        "remaining": len(tracker.remaining) if tracker.phase == phase else -1,
        "remaining_sample": sorted(tracker.remaining.items())[:3],
        "errors": sum(len(e.errors) for e in edges),
    }


async def _connect_edges(edges: list[SimEdge], args: argparse.Namespace) -> None:
    state = {"ok": 0, "failed": 0}

    def progress(ok: int, failed: int) -> None:
        state["ok"], state["failed"] = ok, failed

    async def ticker() -> None:
        while True:
            await asyncio.sleep(2.0)
            synced = sum(1 for e in edges if e.synced_at and e.open)
            emit({"ev": "progress", "connected": state["ok"], "synced": synced})

    tick = asyncio.create_task(ticker())
    try:
        ok, failed, errors = await connect_all(
            edges,
            concurrency=args.connect_concurrency,
            attempts=args.connect_attempts,
            on_progress=progress,
        )
        # Everyone connected (or gave up): wait for the Node objects to arrive.
        await wait_for_condition(
            lambda: all(e.synced_at or not e.open for e in edges),
            timeout=args.sync_timeout,
            interval=0.1,
        )
    finally:
        tick.cancel()
    synced_times = [e.synced_at for e in edges if e.synced_at]
    emit(
        {
            "ev": "connected",
            "ok": ok,
            "failed": failed,
            "synced": sum(1 for e in edges if e.synced_at and e.open),
            "t_last_sync": max(synced_times, default=0.0),
            "errors": errors[:5],
            "sync_delays": [e.synced_at - e.connected_at for e in edges if e.synced_at],
        }
    )


async def _echo_connect(
    url: str, contexts: list[Any], cmd: dict[str, Any]
) -> list[ClientConnection]:
    sem = asyncio.Semaphore(32)

    async def one(ctx: Any) -> ClientConnection | None:
        async with sem:
            try:
                return await connect(
                    url,
                    ssl=ctx,
                    compression=None,
                    ping_interval=None,
                    open_timeout=60,
                    max_size=8 * 1024 * 1024,
                )
            except Exception as exc:
                log.warning("echo connect failed: %s", exc)
                return None

    conns = await asyncio.gather(*(one(c) for c in contexts))
    return [c for c in conns if c is not None]


async def _echo_run(
    conns: list[ClientConnection],
    payload_size: int,
    seconds: float,
    *,
    idle: Sequence[ClientConnection] = (),
    heartbeat: float = 15.0,
) -> tuple[int, float]:
    """Closed loop per connection: send ~payload_size bytes of JSON, await the echo, parse it.

    Each of ``idle`` meanwhile sends what an idle edge sends, a keepalive every ``heartbeat``
    seconds (first at a random point of the period), and awaits its echo; those round trips
    are not counted, as the fleet's keepalives are not counted as updates.
    """
    start = time.monotonic()
    stop_at = start + seconds
    counts = [0] * len(conns)
    pad = "x" * max(0, payload_size - 200)

    async def loop(i: int, ws: ClientConnection) -> None:
        n = 0
        try:
            while time.monotonic() < stop_at:
                body = json.dumps(
                    {
                        "header": {"msg_id": f"{i}-{n}", "timestamp": time.time()},
                        "route": {"operation": "update", "resource": f"bench/pod/p{i}"},
                        "content": {"pad": pad},
                    }
                )
                await ws.send(body)
                json.loads(await ws.recv())
                n += 1
                counts[i] = n
        except ConnectionClosed:
            pass

    async def keepalives(ws: ClientConnection) -> None:
        ping = encode_frame("keepalive", "node", "ping")
        next_at = start + heartbeat * random.uniform(0.0, 1.0)
        try:
            while next_at < stop_at:
                await asyncio.sleep(next_at - time.monotonic())
                await ws.send(ping)
                json.loads(await ws.recv())
                next_at += heartbeat
        except ConnectionClosed:
            pass

    idlers = [asyncio.create_task(keepalives(ws), name="echo-idle") for ws in idle]
    try:
        await asyncio.gather(*(loop(i, ws) for i, ws in enumerate(conns)))
    finally:
        for task in idlers:
            task.cancel()
        await asyncio.gather(*idlers, return_exceptions=True)
    return sum(counts), time.monotonic() - start


# =============================================================================================
# echo server process (the raw baseline)
# =============================================================================================


async def echo_server_main(args: argparse.Namespace) -> None:
    raise_nofile()
    shrink_tls_read_buffer()  # as cloudhub does: the baseline pays no memory cost it avoids
    minter = CertMinter(data_dir=args.data_dir, out_dir=args.cert_dir / "echo")
    ctx = minter.server_context()

    async def handler(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                await ws.send(message)

    async with serve(
        handler,
        "127.0.0.1",
        0,
        ssl=ctx,
        compression=None,
        ping_interval=None,
        max_size=8 * 1024 * 1024,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        emit({"ev": "listening", "port": port})
        stdin = await _stdin_lines()
        await stdin.read()  # until the driver closes our stdin
