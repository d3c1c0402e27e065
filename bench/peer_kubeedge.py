"""Stock KubeEdge v1.15 edgecores on our cloudhub: the peer, side by side.

Needs the stock binaries built by ``/work/shared/peers/kubeedge/build.sh`` (``--peer-dir``,
default ``$KUBEEDGE_PEER_DIR`` or ``/opt/eb-harness/kubeedge``: ``bin/edgecore``,
``edgecore-up.sh``). Where they are missing it says so and exits 0.

Our side, measured here: a cloudhub (embedded store) and ``--edges`` stock edgecores started by
``edgecore-up.sh`` (each with its own mosquitto port), joined with our tokens. Figures:

- pod apply -> row in the edge's SQLite (stock metamanager's ``meta`` table) p50/p99;
- cloud CPU per delivered update, cloud RSS per connected edge.

- messages on reconnect after 10 of ``--reconnect-pods`` (1,000) pods changed.

The peer side (stock cloudcore against the same Kubernetes API) needs a cluster:
``--kubeconfig`` with ``cloudcore-up.sh``; without one the peer figures are left out and no
ratio is printed (said so in the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cloud import Admin, CloudHub, bench_pod
from bench.common import free_port
from bench.measure import Figures, percentile, run_benchmark

log = logging.getLogger("peer_kubeedge")

DEFAULT_PEER = Path(os.environ.get("KUBEEDGE_PEER_DIR", "/opt/eb-harness/kubeedge"))


def _peer_ready(peer: Path) -> str | None:
    """Why the peer cannot run, or None."""
    for part in ("bin/edgecore", "edgecore-up.sh"):
        if not (peer / part).exists():
            return f"{peer / part} is missing"
    return None


def _has_row(db: Path, key: str) -> bool:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2)
    except sqlite3.Error:
        return False
    try:
        return conn.execute("SELECT 1 FROM meta WHERE key = ?", (key,)).fetchone() is not None
    except sqlite3.Error:
        return False
    finally:
        conn.close()


async def _wait_rows(
    dbs: dict[str, Path], keys: dict[str, str], timeout: float
) -> dict[str, float]:
    """Seconds until each ``keys[pod]`` row appears in its node's database."""
    began = time.monotonic()
    pending = dict(keys)
    seen: dict[str, float] = {}
    while pending and time.monotonic() - began < timeout:
        for pod, node in list(pending.items()):
            if _has_row(dbs[node], f"bench/pod/{pod}"):
                seen[pod] = time.monotonic() - began
                del pending[pod]
        await asyncio.sleep(0.02)
    return seen


def _start_stock_edge(
    peer: Path,
    node: str,
    edge_dir: Path,
    hub: CloudHub,
    token: str,
    mqtt_port: int,
    *,
    fresh: bool = True,
) -> None:
    env = dict(
        os.environ,
        KE_NODE=node,
        KE_EDGE_DIR=str(edge_dir),
        KE_WS=f"127.0.0.1:{hub.ws_port}",
        KE_HTTPS=f"127.0.0.1:{hub.https_port}",
        KE_TOKEN=token,
        KE_MQTT_PORT=str(mqtt_port),
        KE_FRESH="1" if fresh else "0",
        KE_LOG_V="2",
    )
    out = subprocess.run(
        ["bash", str(peer / "edgecore-up.sh")], env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(f"stock edge {node} did not connect: {out.stderr.strip()[-300:]}")


def _stop_stock_edges(peer: Path, nodes: list[str], mqtt_ports: list[int]) -> None:
    """Stop the edgecores and the mosquittos ``edgecore-up.sh`` started for them."""
    pidfiles = [peer / "run" / f"edgecore-{node}.pid" for node in nodes]
    pidfiles += [peer / "run" / f"mosquitto-{port}.pid" for port in mqtt_ports]
    for pidfile in pidfiles:
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            continue
        try:
            os.kill(pid, 15)
        except OSError:
            pass


async def _metric(admin: Admin, prefix: str) -> float:
    for line in (await admin.get_text("/metrics")).splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


async def _settled(admin: Admin, prefix: str, quiet: float, timeout: float) -> float:
    """The metric once it has not moved for ``quiet`` seconds."""
    began = time.monotonic()
    last, since = await _metric(admin, prefix), time.monotonic()
    while time.monotonic() - began < timeout:
        await asyncio.sleep(0.1)
        now = await _metric(admin, prefix)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


async def reconnect(
    args: argparse.Namespace, fig: Figures, work: Path, hub: CloudHub, admin: Admin, port: int
) -> None:
    """One stock edge holding ``--reconnect-pods`` pods goes away, 10 of them change, it comes
    back: what the cloud sends it (a stock edge sends no inventory: a full resync)."""
    peer: Path = args.peer_dir
    node = "pb-000"
    db = work / "edges" / node / "edgecore.db"
    pods = {f"r{i:05d}": node for i in range(args.reconnect_pods)}
    await admin.apply_batched([bench_pod(p, node) for p in pods])
    await _wait_rows({node: db}, pods, args.deliver_timeout)
    connected = "edgebridge_cloud_connected_edges"
    before = await _metric(admin, connected)
    _stop_stock_edges(peer, [node], [])
    for _ in range(600):  # the cloud notices the link is gone
        if await _metric(admin, connected) < before:
            break
        await asyncio.sleep(0.1)
    changed = [bench_pod(p, node, annotations={"changed": "1"}) for p in list(pods)[:10]]
    await admin.apply_batched(changed)
    out = 'edgebridge_cloud_frames_total{direction="out"}'
    f0 = await _metric(admin, out)
    r0 = await _metric(admin, "edgebridge_cloud_delivery_retries_total")
    token = await admin.create_token(ttl_seconds=600)
    await asyncio.to_thread(
        _start_stock_edge, peer, node, work / "edges" / node, hub, token, port, fresh=False
    )
    f1 = await _settled(admin, out, quiet=2.0, timeout=60.0)
    retries = await _metric(admin, "edgebridge_cloud_delivery_retries_total") - r0
    fig.add(
        f"ours: messages on reconnect, 10 of {len(pods)} pods changed",
        f1 - f0,
        f"frames (of which {retries:.0f} retries after the 5 s ACK timeout)",
        digits=0,
    )


async def ours(args: argparse.Namespace, fig: Figures, work: Path) -> bool:
    peer: Path = args.peer_dir
    nodes = [f"pb-{i:03d}" for i in range(args.edges)]
    async with CloudHub(workdir=work) as hub, Admin.for_hub(hub) as admin:
        started: list[str] = []
        ports: list[int] = []
        try:
            for node in nodes:
                token = await admin.create_token(ttl_seconds=600)
                ports.append(free_port())
                started.append(node)
                await asyncio.to_thread(
                    _start_stock_edge, peer, node, work / "edges" / node, hub, token, ports[-1]
                )
            log.info("%d stock edges connected", len(started))
            dbs = {n: work / "edges" / n / "edgecore.db" for n in nodes}
            pods = {f"p{i:05d}": nodes[i % len(nodes)] for i in range(args.pods)}
            cpu0 = hub.cpu_seconds()
            await admin.apply_batched([bench_pod(p, n) for p, n in pods.items()])
            took = await _wait_rows(dbs, pods, args.deliver_timeout)
            cpu = hub.cpu_seconds() - cpu0
            lat = sorted(took.values())
            fig.add("ours: pods delivered", len(took), f"of {len(pods)}", digits=0)
            if lat:
                fig.add("ours: apply -> edge row p50", percentile(lat, 50) * 1000, "ms")
                fig.add("ours: apply -> edge row p99", percentile(lat, 99) * 1000, "ms")
            fig.add("ours: cloud CPU per update", cpu / max(1, len(took)) * 1e6, "us")
            fig.add("ours: cloud RSS per edge", hub.rss_kib() / len(nodes), "KiB")
            if args.reconnect_pods:
                await reconnect(args, fig, work, hub, admin, ports[0])
            return len(took) == len(pods)
        finally:
            _stop_stock_edges(peer, started, ports)


async def main(args: argparse.Namespace, fig: Figures) -> bool:
    why = _peer_ready(args.peer_dir)
    if why is not None:
        fig.add("peer", f"stock KubeEdge binaries not found ({why}); nothing measured")
        return True
    with tempfile.TemporaryDirectory(prefix="peer-kubeedge-") as tmp:
        ok = await ours(args, fig, Path(tmp))
    if args.kubeconfig is None:
        fig.add("peer side", "skipped: needs --kubeconfig (stock cloudcore); no ratios")
    else:
        fig.add("peer side", "not implemented in this script yet; no ratios")
    return ok


def cli() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--peer-dir", type=Path, default=DEFAULT_PEER, help="stock KubeEdge build")
    p.add_argument("--edges", type=int, default=20, help="stock edgecores (default 20)")
    p.add_argument("--pods", type=int, default=200, help="pods applied (default 200)")
    p.add_argument("--deliver-timeout", type=float, default=120.0)
    p.add_argument(
        "--reconnect-pods", type=int, default=1000, help="pods on the edge that reconnects"
    )
    p.add_argument("--kubeconfig", type=Path, help="cluster for the peer side (stock cloudcore)")
    p.add_argument("--timeout", type=float, default=900.0, help="hard overall timeout (s)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    fig = Figures("stock KubeEdge peer")
    return run_benchmark(fig, main(args, fig), timeout=args.timeout)


if __name__ == "__main__":
    sys.exit(cli())
