"""The hub's per-update path over a real TLS websocket to a stock-edge-like client.

Why: ``hub_path.py`` measures the hub's own code without a socket; most of an update's CPU is
around it (websockets' framing, asyncio's TLS, the loop waking up for each ACK). Here one
:class:`~cloudhub.hub.session.NodeSession` holds a TLS websocket served the way the hub serves
it (:class:`~cloudhub.hub.links.HubConnection`, no compression), its ACKs taken by
:class:`~cloudhub.hub.reader.FrameReader` in the transport's callback, and a child process
plays a stock edgecore: it ACKs every object in the layout Go's encoding/json writes. The
figure is this process's CPU (user + system) per delivered and ACKed update:

- ``wire_<edge>_batch1``: one update at a time, the next once its ACK is in (an update per
  loop wake-up, as at a low rate);
- ``wire_<edge>_batch<N>``: ``--batch`` updates of as many pods at once (one watch read's
  worth), the next batch once all are ACKed.

``--against DIR`` runs the same on the code in DIR (e.g. ``/work/main``) in a child process
and prints the ratios. Run ``python bench/hub_wire.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent
# This tree's bench helpers, imported before the code measured is chosen: with --against, the
# other tree may not have them (bench.common imports no cloudhub at the top).
sys.path.insert(0, str(_ROOT))
from bench.common import tls_server  # noqa: E402

sys.path.insert(0, os.environ.get("HUB_PATH_CODE") or str(_ROOT))

from websockets.asyncio.client import connect  # noqa: E402
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

from cloudhub.config import HubSettings  # noqa: E402
from cloudhub.hub.links import HubConnection  # noqa: E402
from cloudhub.hub.reader import FrameReader  # noqa: E402
from cloudhub.hub.session import NodeSession  # noqa: E402

NODE = "edge-0001"
#: an ACK as a stock v1.15 edgecore writes it (Go's encoding/json, a newline after it)
_STOCK_ACK = (
    '{"header":{"msg_id":"a%d","parent_msg_id":"%s","timestamp":1796670000000},'
    '"route":{"source":"edgecontroller","group":"resource","operation":"response",'
    '"resource":"%s"},"content":"OK"}\n'
)


def _pods(n: int, round_: int) -> list[tuple[str, str, dict[str, Any], str]]:
    """Round ``round_``'s ``n`` pods, each its own (a pod updated again within the hub's
    ``coalesce`` pause would wait for it: what burst_coalescing.py measures)."""
    out = []
    for i in range(n * round_, n * (round_ + 1)):
        rv = str(100 + i)
        obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"p{i}",
                "namespace": "bench",
                "resourceVersion": rv,
                "annotations": {"bench/seq": rv},
            },
            "spec": {
                "nodeName": NODE,
                "containers": [
                    {
                        "name": "app",
                        "image": "registry.example.com/bench/app:1.0.0",
                        "env": [{"name": f"S_{j}", "value": f"value-{j:04d}"} for j in range(10)],
                    }
                ],
            },
        }
        out.append((f"bench/pod/p{i}", rv, obj, json.dumps(obj, separators=(",", ":"))))
    return out


async def _edge(port: int) -> None:
    """The stock-edge-like child: ACK every object frame, cheaply."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    async with connect(
        f"wss://127.0.0.1:{port}", ssl=context, compression=None, ping_interval=None
    ) as ws:
        n = 0
        async for frame in ws:
            assert isinstance(frame, str)
            start = frame.index('"msg_id":"') + 10
            msg_id = frame[start : frame.index('"', start)]
            start = frame.index('"resource":"') + 12
            resource = frame[start : frame.index('"', start)]
            n += 1
            await ws.send(_STOCK_ACK % (n, msg_id, resource))


async def run(stock: bool, updates: int, batch: int, directory: Path) -> float:
    """This process's CPU µs per update delivered to the child edge and ACKed."""
    context = tls_server(directory)[0]
    loop = asyncio.get_running_loop()
    held: asyncio.Future[NodeSession] = loop.create_future()
    acked = asyncio.Event()
    finished = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        node = NodeSession(
            node=NODE,
            ws=ws,
            heartbeat=15.0,
            ack_timeout=3600.0,
            window=64,
            min_interval=HubSettings().coalesce,
            send_timeout=10.0,
            stock=stock,
        )
        node.start({}, {})
        node.run_writer()
        reader = FrameReader(node, HubSettings(), loop.time)
        downstream = node.downstream

        def sink(frame: str | bytes) -> bool:
            taken = reader.ack_now(frame)
            if downstream.in_flight == 0:
                acked.set()
            return taken

        node.link.take_frames(sink)
        held.set_result(node)
        with contextlib.suppress(ConnectionClosed):
            async for frame in node.link:  # what the callback did not take (none expected)
                sink(frame)
        await finished.wait()

    server = await serve(
        handler,
        "127.0.0.1",
        0,
        ssl=context,
        create_connection=HubConnection,
        compression=None,
        ping_interval=None,
        max_queue=64,
    )
    port = next(iter(server.sockets)).getsockname()[1]
    child = await asyncio.create_subprocess_exec(sys.executable, __file__, "--edge", str(port))
    try:
        node = await asyncio.wait_for(held, 30)
        for _ in range(100):
            await asyncio.sleep(0.01)
            if node._parked:
                break
        cache = node.state._encoded
        rounds = [_pods(batch, r) for r in range(updates // batch)]
        begin = time.process_time()
        for pods in rounds:
            acked.clear()
            for key, rv, obj, body in pods:
                cache.put((key, rv), body)
                node.state.change(key, rv, obj)
            node.deliver()
            async with asyncio.timeout(30):  # no task per wait, unlike wait_for
                await acked.wait()
        spent = time.process_time() - begin
        assert len(node.downstream.edge) == len(rounds) * batch, "a pod did not reach the edge"
        finished.set()
        await node.close("done")
    finally:
        child.kill()
        await child.wait()
        server.close()
    return spent / (len(rounds) * batch) * 1e6


def measure(updates: int, batch: int, rounds: int) -> dict[str, float]:
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as directory:
        for _ in range(rounds):
            for stock in (False, True):
                for size in (1, batch):
                    name = f"wire_{'stock' if stock else 'ours'}_batch{size}"
                    value = asyncio.run(run(stock, updates, size, Path(directory)))
                    best[name] = min(best.get(name, value), value)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=2000, help="updates per case (2000)")
    parser.add_argument("--batch", type=int, default=20, help="pods per batch (20)")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many rounds (3)")
    parser.add_argument("--against", metavar="DIR", help="also run on the code in DIR: ratios")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--edge", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.edge:
        try:
            asyncio.run(_edge(args.edge))
        except Exception:  # the hub side ends the link when it is done
            pass
        return
    ours = measure(args.updates, args.batch, args.rounds)
    if args.json:
        print(json.dumps(ours))
        return
    base: dict[str, float] = {}
    if args.against:
        argv = [sys.executable, __file__, "--json", "--updates", str(args.updates)]
        argv += ["--batch", str(args.batch), "--rounds", str(args.rounds)]
        env = {**os.environ, "HUB_PATH_CODE": str(Path(args.against).resolve())}
        child = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
        base = json.loads(child.stdout.strip().splitlines()[-1])
    for name, value in ours.items():
        line = f"{name}: {value:.1f} us/update (hub process CPU)"
        if name in base:
            line += f"  (baseline {base[name]:.1f}, ratio {value / base[name]:.2f})"
        print(line)
    print(f"host_cpus: {os.cpu_count()}")
    print(f"loadavg: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
