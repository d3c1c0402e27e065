"""Kubernetes mode against the emulated API: pod mirroring latency, and what idle edges cost
the API server.

Why these two figures: in Kubernetes mode the cluster is the source of truth, so the questions
a cluster operator asks are (1) how long after ``kubectl create`` a pod is on its edge, and
(2) what a connected but idle edge costs the API server, since cloudhub writes on behalf of
every edge it serves (the node's heartbeat Lease, its status) and holds its own ownership
Lease per node. A kubelet renews its node Lease about 6 times a minute; KubeEdge's own figure
for an idle edge is about 0.25 kbit/s uplink. The emulator *is* the cluster here, so what it
counts is exactly what cloudhub sends.

The run, all on 127.0.0.1 in a temporary directory:

1. The Kubernetes API emulator (``tests.support.kubeapi``) in its own process, started by this
   file with ``--serve-emulator``: the same server plus a read-only ``GET /_bench/stats``
   (requests per client, verb and path; bytes each way). Requests are attributed by
   ``User-Agent``: this script sends ``edgebridge-bench``, everything else is cloudhub's.
   Bookmarks every ``--bookmark-interval`` (60) s of silence, as the API server does (the
   emulator's own default of 1 s suits tests, not a cost measurement).
2. ``--nodes`` (100) Node objects created through the API with the edge role label (as a join
   would leave them), then one ``cloudhub serve --kubeconfig K --replica-name bench``.
3. ``--nodes`` simulated edges (:class:`bench.simedge.SimEdge`, certificates minted from
   cloudhub's CA key) connect; like edgecore each reports its node status on connect and then
   every ``--node-status-interval`` (300) s, staggered over the fleet.
4. Phase 1: ``--pods`` (1,000) pods spread round-robin over the nodes, created through the
   API ``--create-concurrency`` (32) at a time. Per pod: API response -> its edge ACKed it.
   A real edgecore ACKs only after its SQLite commit, so the ACK is the "persisted" moment
   of the protocol; the simulated edge has no SQLite, so a real edge adds its commit. Then
   ``--trickle`` (100) pods one at a time at ``--trickle-rate`` (20/s): the same path
   without a queue in front.
5. Phase 2: ``--idle-minutes`` (1) of nothing but keepalives and the periodic status
   reports; the API requests cloudhub made in that window, by category, per connected node
   per minute, and bytes.

Run ``python bench/k8s_mirror.py --help``; ``--quick`` finishes in under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from bench.cloud import CloudHub, bench_pod
from bench.common import finish_workdir, port_open, raise_nofile, setup_logging, wait_for_condition
from bench.k8s_parts import BENCH_UA, STATS_PATH, EmulatorProcess, serve_emulator
from bench.measure import Figures, cpu_seconds, percentile, run_benchmark
from bench.simedge import CertMinter, SimEdge, connect_all, encode_frame, keepalive_loop
from cloudhub.k8s.labels import EDGE_ROLE_LABEL

log = logging.getLogger(__name__)

NAMESPACE = "bench"
#: cloudhub's lease namespaces (cloudhub.k8s.leases / cloudhub.k8s.nodelease)
OWNERSHIP_NAMESPACE = "edgebridge"
NODE_LEASE_NAMESPACE = "kube-node-lease"
#: KubeEdge's published idle cost of an edge node, uplink
KUBEEDGE_KBIT_S = 0.25
#: a kubelet renews its node Lease every 10 s (a quarter of its 40 s duration)
KUBELET_LEASE_PER_MIN = 6.0
#: per-frame overhead on the wire beyond the websocket payload: TLS record (5 header + 1 type
#: + 16 tag, TLS 1.3 AES-GCM) + masked client websocket header (8 bytes for 126+ bytes of
#: payload) + TCP/IP with timestamps (52). Pure TCP ACK segments are not counted.
FRAME_OVERHEAD = 22 + 8 + 52


def node_name(i: int) -> str:
    return f"k8s-edge-{i:03d}"


def node_manifest(name: str) -> dict[str, Any]:
    """A Node as a join leaves it: the edge role label and the hostname label."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {EDGE_ROLE_LABEL: "", "kubernetes.io/hostname": name},
        },
    }


def node_facts(name: str) -> dict[str, Any]:
    """What ``edgecore.nodestatus`` reports about its node (a plausible gateway box)."""
    capacity = {"cpu": "4", "memory": "3884932Ki", "pods": "110"}
    return {
        "status": {
            "capacity": capacity,
            "allocatable": dict(capacity),
            "addresses": [
                {"type": "InternalIP", "address": "10.20.0.17"},
                {"type": "Hostname", "address": name},
            ],
            "nodeInfo": {
                "architecture": "arm64",
                "operatingSystem": "linux",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "kernelVersion": "6.1.0-18-arm64",
                "kubeletVersion": "edgebridge-edgecore/0.1.0",
                "containerRuntimeVersion": "",
                "machineID": "",
                "systemUUID": "",
            },
        },
        "labels": {"kubernetes.io/os": "linux", "kubernetes.io/arch": "arm64"},
    }


# -- cloudhub in Kubernetes mode ----------------------------------------------------------------


class KubeCloudHub(CloudHub):
    """``cloudhub serve --kubeconfig K --replica-name NAME`` on free ports."""

    def __init__(
        self,
        *,
        workdir: Path,
        kubeconfig: Path,
        replica: str = "bench",
        extra_args: list[str] | None = None,
    ) -> None:
        super().__init__(workdir=workdir, extra_args=extra_args)
        self.kubeconfig = kubeconfig
        self.replica = replica

    async def start(self, *, timeout: float = 60.0) -> None:
        """Start it and wait for both ports and its CA.

        Raises:
            RuntimeError: it exited or did not come up within ``timeout``.
        """
        argv = [sys.executable, "-m", "cloudhub", "serve", "--data-dir", str(self.data_dir),
                "--bind", "127.0.0.1", "--ws-port", str(self.ws_port), "--https-port",
                str(self.https_port), "--kubeconfig", str(self.kubeconfig), "--replica-name",
                self.replica, *self.extra_args]  # fmt: skip
        self._launch(argv)
        log.info("cloudhub pid %d (Kubernetes mode): wss %d", self.pid, self.ws_port)

        def up() -> bool:
            if not self.running:
                raise RuntimeError(f"cloudhub exited; see {self.log_path}:\n{self.log_tail()}")
            return self.ca_path.exists() and port_open(self.ws_port)

        if not await wait_for_condition(up, timeout=timeout):
            raise RuntimeError(f"cloudhub did not come up in {timeout}s:\n{self.log_tail()}")


# -- the bench's API client and the accounting -------------------------------------------------


class ClusterClient:
    """Plain HTTP to the emulator, as ``edgebridge-bench`` (so it is not counted as cloudhub)."""

    def __init__(self, url: str, *, limit: int) -> None:
        self._session = aiohttp.ClientSession(
            base_url=url,
            connector=aiohttp.TCPConnector(limit=limit),
            headers={"User-Agent": BENCH_UA, "Authorization": "Bearer emulator"},
            timeout=aiohttp.ClientTimeout(total=60),
        )

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to the collection ``path``.

        Raises:
            RuntimeError: the API answered with an error.
        """
        async with self._session.post(path, json=body) as resp:
            out: dict[str, Any] = await resp.json()
            if resp.status != 201:
                raise RuntimeError(f"create {path} failed ({resp.status}): {out.get('message')}")
            return out

    async def stats(self) -> Stats:
        async with self._session.get(STATS_PATH) as resp:
            return Stats.of(await resp.json())

    async def close(self) -> None:
        await self._session.close()


@dataclass
class Stats:
    """One snapshot of the emulator's counters (cloudhub's requests only)."""

    at: float
    #: (verb, path) -> requests
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    bytes_in: int = 0
    bytes_out: int = 0
    bytes_out_measured: bool = True
    bookmarks: int = 0
    open_watches: int = 0

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Stats:
        out = cls(
            at=float(raw["time"]),
            bytes_out=int(raw["bytes_out"].get("cloudhub", 0)),
            bytes_out_measured=bool(raw["bytes_out_measured"]),
            bookmarks=int(raw["bookmarks"]),
            open_watches=int(raw["open_watches"]),
        )
        for client, verb, path, n, size in raw["requests"]:
            if client == "cloudhub":
                out.requests[(verb, path)] += int(n)
                out.bytes_in += int(size)
        return out

    def since(self, before: Stats) -> Stats:
        return Stats(
            at=self.at,
            requests=self.requests - before.requests,
            bytes_in=self.bytes_in - before.bytes_in,
            bytes_out=self.bytes_out - before.bytes_out,
            bytes_out_measured=self.bytes_out_measured,
            bookmarks=self.bookmarks - before.bookmarks,
            open_watches=self.open_watches,
        )

    def total(self) -> int:
        return sum(self.requests.values())

    def by_category(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for (verb, path), n in self.requests.items():
            out[f"{category(verb, path)}.{verb}"] += n
        return out


_LEASE = re.compile(r"^/apis/coordination\.k8s\.io/v1/namespaces/([^/]+)/leases(/[^/]+)?$")
_NODE = re.compile(r"^/api/v1/nodes/[^/]+(/status)?$")


def category(verb: str, path: str) -> str:
    """What a request is for: ``ownership_lease``, ``node_lease``, ``node_status``..."""
    lease = _LEASE.match(path)
    if lease is not None:
        ns = lease.group(1)
        if ns == OWNERSHIP_NAMESPACE:
            return "ownership_lease"
        if ns == NODE_LEASE_NAMESPACE:
            return "node_lease"
        return f"lease[{ns}]"
    node = _NODE.match(path)
    if node is not None:
        return "node_status" if node.group(1) else "node"
    if verb in ("watch", "list"):
        return path.rsplit("/", 1)[-1]  # the resource's plural
    parts = path.strip("/").split("/")
    if parts[-1] == "status" and len(parts) > 2:
        return f"{parts[-3]}_status"
    return parts[-2] if len(parts) > 1 else "other"  # an item's resource plural


# -- simulated edges ----------------------------------------------------------------------------


class K8sEdge(SimEdge):
    """A SimEdge that also reports its node status, as edgecore does, and counts its uplink."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.keepalives = 0
        self.status_reports = 0
        self.uplink_payload = 0
        self.uplink_frames = 0
        self._keepalive_size = len(encode_frame("keepalive", "node", "ping"))
        self._ack_size = len(
            encode_frame("response", f"{NAMESPACE}/pod/p-0000", "OK", parent="x" * 36)
        )
        self._acks_counted = 0

    async def keepalive(self) -> None:
        if self.open:
            self.keepalives += 1
            self.uplink_payload += self._keepalive_size
            self.uplink_frames += 1
        await super().keepalive()

    async def report_status(self) -> None:
        """``update null/nodestatus/{node}`` with the node's facts (edgecore's nodestatus)."""
        if self.ws is None or not self.open:
            return
        frame = encode_frame("update", f"null/nodestatus/{self.node}", node_facts(self.node))
        with contextlib.suppress(Exception):
            await self.ws.send(frame)
            self.status_reports += 1
            self.uplink_payload += len(frame)
            self.uplink_frames += 1

    def uplink(self) -> tuple[int, int]:
        """(payload bytes, frames) sent so far, ACKs included (sized like a pod ACK)."""
        acks = self.acked
        return self.uplink_payload + acks * self._ack_size, self.uplink_frames + acks


async def status_loop(edges: list[K8sEdge], *, interval: float) -> None:
    """Every edge reports now (edgecore reports on connect), then every ``interval`` s, edge
    i next at ``now + interval * (i + 1) / n``: the periodic reports of a fleet whose edges
    connected at different times are spread evenly, so any window sees its fair share."""
    n = len(edges)
    start = time.monotonic()
    for edge in edges:
        await edge.report_status()
    due = [start + interval * (i + 1) / n for i in range(n)]
    while True:
        now = time.monotonic()
        for i, edge in enumerate(edges):
            if due[i] <= now:
                due[i] += interval
                await edge.report_status()
        await asyncio.sleep(0.25)


class PodTimes:
    """Per pod: when the API answered its creation, and when its edge ACKed it."""

    def __init__(self) -> None:
        self.sent: dict[str, float] = {}
        self.created: dict[str, float] = {}
        self.acked: dict[str, float] = {}

    def on_acked(self, edge: SimEdge, op: str, key: str, content: Any, now: float) -> None:
        ns, _, rest = key.partition("/pod/")
        if ns == NAMESPACE and rest and op in ("insert", "update") and rest not in self.acked:
            self.acked[rest] = now


# -- the run ------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, fig: Figures) -> bool:
    raise_nofile()
    workdir = Path(tempfile.mkdtemp(prefix="edgebridge-k8s-", dir=args.workdir))
    emulator = EmulatorProcess(workdir=workdir, bookmark_interval=args.bookmark_interval)
    hub: KubeCloudHub | None = None
    client: ClusterClient | None = None
    try:
        await emulator.start()
        client = ClusterClient(emulator.url, limit=max(8, args.create_concurrency))
        nodes = [node_name(i) for i in range(args.nodes)]
        # the emulator, like an API server, refuses objects in a namespace that does not exist
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        await client.create("/api/v1/namespaces", namespace)
        await asyncio.gather(*(client.create("/api/v1/nodes", node_manifest(n)) for n in nodes))
        log.info("%d edge Node objects created", len(nodes))
        hub = KubeCloudHub(workdir=workdir, kubeconfig=emulator.kubeconfig)
        await hub.start()
        return await _run(args, fig, hub, emulator, client, nodes, workdir)
    finally:
        if hub is not None:
            hub.stop()
        if client is not None:
            await client.close()
        emulator.stop()
        finish_workdir(workdir, keep=args.keep)


async def _run(
    args: argparse.Namespace,
    fig: Figures,
    hub: KubeCloudHub,
    emulator: EmulatorProcess,
    client: ClusterClient,
    nodes: list[str],
    workdir: Path,
) -> bool:
    minter = CertMinter(data_dir=hub.data_dir, out_dir=workdir / "certs")
    times = PodTimes()
    edges = [
        K8sEdge(
            node=n,
            url=hub.ws_url(n),
            ssl_context=minter.client_context(n),
            on_acked=times.on_acked,
        )
        for n in nodes
    ]
    background: list[asyncio.Task[None]] = []
    try:
        # -- connect ------------------------------------------------------------------------
        await wait_for_condition(lambda: hub.log_tail(200).count("serving") > 0, timeout=30)
        s_up = await client.stats()
        t_connect = time.monotonic()
        _ok, failed, errors = await connect_all(edges, concurrency=16)
        for e in errors:
            log.warning("connect error: %s", e)
        synced = await wait_for_condition(
            lambda: all(e.synced_at for e in edges),
            timeout=60,
            what="every edge to receive its Node",
        )
        # edgecore reports its node's facts right after connecting, then every interval
        background.append(asyncio.create_task(keepalive_loop(lambda: edges)))
        background.append(
            asyncio.create_task(status_loop(edges, interval=args.node_status_interval))
        )
        connect_s = time.monotonic() - t_connect
        await asyncio.sleep(args.settle)
        s_connected = await client.stats()
        held = sum(1 for e in edges if e.open and e.synced_at)
        log.info(
            "%d/%d edges connected and synced in %.1fs (%d failed)%s",
            held,
            len(edges),
            connect_s,
            failed,
            "" if synced else " (sync INCOMPLETE)",
        )
        connect_cost = s_connected.since(s_up)
        _log_breakdown("cloudhub requests while edges connected (+settle)", connect_cost, held)
        fig.add("nodes", len(nodes), "edge Node objects")
        fig.add("nodes_connected", held, f"of {len(nodes)} ({failed} failed to connect)")
        fig.add("connect_time", connect_s, "s (first connect -> every edge has its Node)")
        fig.add(
            "connect_requests",
            connect_cost.total(),
            f"cloudhub API requests, connect + {args.settle:.0f}s settle",
        )
        if not held:
            return False

        # -- phase 1: pods created in the cluster -> on their edge ------------------------
        ok1 = await _phase_pods(args, fig, client, times, nodes)

        # -- phase 2: idle ------------------------------------------------------------------
        await asyncio.sleep(args.settle)
        ok2 = await _phase_idle(args, fig, hub, emulator, client, edges)
        return ok1 and ok2 and held == len(nodes)
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await asyncio.gather(*(e.close() for e in edges))


async def create_pods(
    client: ClusterClient,
    times: PodTimes,
    pods: list[tuple[str, str]],
    *,
    concurrency: int,
    rate: float = 0.0,
) -> int:
    """Create ``(name, node)`` pods, ``concurrency`` requests in flight, at most ``rate``
    per second (0: as fast as they go); records send and response times. Returns failures."""
    todo = list(reversed(pods))
    failures = 0
    t0 = time.monotonic()
    started = 0

    async def creator() -> None:
        nonlocal failures, started
        while todo:
            name, node = todo.pop()
            if rate > 0:
                started += 1
                delay = t0 + (started - 1) / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            pod = bench_pod(name, node, namespace=NAMESPACE)
            times.sent[name] = time.time()
            try:
                await client.create(f"/api/v1/namespaces/{NAMESPACE}/pods", pod)
            except Exception as exc:
                failures += 1
                log.warning("creating pod %s failed: %s", name, exc)
                continue
            times.created[name] = time.time()

    await asyncio.gather(*(creator() for _ in range(max(1, concurrency))))
    return failures


def latencies(times: PodTimes, names: list[str]) -> tuple[list[float], list[float]]:
    """ms from API response to ACK, and from request sent to ACK, for the ACKed pods."""
    done = [n for n in names if n in times.created and n in times.acked]
    return (
        [(times.acked[n] - times.created[n]) * 1000 for n in done],
        [(times.acked[n] - times.sent[n]) * 1000 for n in done],
    )


async def _phase_pods(
    args: argparse.Namespace,
    fig: Figures,
    client: ClusterClient,
    times: PodTimes,
    nodes: list[str],
) -> bool:
    names = [f"p-{i:04d}" for i in range(args.pods)]
    before = await client.stats()
    t0 = time.time()
    log.info("phase 1: creating %d pods, %d at a time", len(names), args.create_concurrency)
    failures = await create_pods(
        client,
        times,
        [(name, nodes[i % len(nodes)]) for i, name in enumerate(names)],
        concurrency=args.create_concurrency,
    )
    t_created = time.time()
    all_acked = await wait_for_condition(
        lambda: all(n in times.acked for n in names if n in times.created),
        timeout=args.mirror_timeout,
        what="every created pod to be ACKed by its edge",
    )
    t_end = max((times.acked[n] for n in names if n in times.acked), default=t_created)
    cost = (await client.stats()).since(before)
    lat, lat_req = latencies(times, names)
    created = sum(1 for n in names if n in times.created)
    log.info(
        "phase 1: %d pods created in %.2fs, %d ACKed by %.2fs",
        created,
        t_created - t0,
        len(lat),
        t_end - t0,
    )
    _log_breakdown("cloudhub requests during phase 1", cost, len(nodes))
    fig.add("pods", created, f"created ({failures} failed) over {len(nodes)} nodes")
    fig.add("pods_acked", len(lat), "pods on their edge (ACKed)")
    fig.add("create_concurrency", args.create_concurrency, "create requests in flight")
    fig.add("create_time", t_created - t0, "s (first create sent -> last API response)", digits=2)
    fig.add(
        "create_rate",
        created / (t_created - t0) if t_created > t0 else math.nan,
        "pods/s accepted by the API",
    )
    fig.add("mirror_latency_p50", percentile(lat, 50), "ms (API response -> edge ACK)")
    fig.add("mirror_latency_p99", percentile(lat, 99), "ms")
    fig.add("mirror_latency_max", max(lat, default=math.nan), "ms")
    fig.add("mirror_latency_min", min(lat, default=math.nan), "ms (< 0: ACK beat the response)")
    fig.add("mirror_latency_from_send_p50", percentile(lat_req, 50), "ms (request sent -> ACK)")
    fig.add("mirror_latency_from_send_p99", percentile(lat_req, 99), "ms")
    fig.add(
        "mirror_throughput",
        len(lat) / (t_end - t0) if t_end > t0 else math.nan,
        "pods/s (first create sent -> last pod ACKed)",
    )
    fig.add("mirror_drain", (t_end - t_created) * 1000, "ms (last API response -> last ACK)")
    fig.add("phase1_cloudhub_requests", cost.total(), "API requests by cloudhub meanwhile")
    ok = all_acked and not failures

    # The burst measures queueing behind 1,000 creates; a paced trickle shows one pod's path.
    if args.trickle > 0:
        await asyncio.sleep(args.settle)
        trickle = [f"t-{i:04d}" for i in range(args.trickle)]
        log.info("phase 1b: %d pods at %.0f/s, one at a time", len(trickle), args.trickle_rate)
        failures = await create_pods(
            client,
            times,
            [(name, nodes[i % len(nodes)]) for i, name in enumerate(trickle)],
            concurrency=1,
            rate=args.trickle_rate,
        )
        acked = await wait_for_condition(
            lambda: all(n in times.acked for n in trickle if n in times.created),
            timeout=args.mirror_timeout,
            what="every paced pod to be ACKed",
        )
        lat, _ = latencies(times, trickle)
        log.info(
            "paced latencies, slowest 5: %s ms", ", ".join(f"{x:.1f}" for x in sorted(lat)[-5:])
        )
        fig.add("paced_pods", len(lat), f"ACKed of {args.trickle} at {args.trickle_rate:g}/s")
        fig.add("paced_latency_p50", percentile(lat, 50), "ms (API response -> edge ACK)")
        fig.add("paced_latency_p99", percentile(lat, 99), "ms")
        fig.add("paced_latency_max", max(lat, default=math.nan), "ms")
        ok = ok and acked and not failures
    return ok


async def _phase_idle(
    args: argparse.Namespace,
    fig: Figures,
    hub: KubeCloudHub,
    emulator: EmulatorProcess,
    client: ClusterClient,
    edges: list[K8sEdge],
) -> bool:
    idle_s = args.idle_minutes * 60
    before = await client.stats()
    cpu_hub0, cpu_api0 = hub.cpu_seconds(), cpu_seconds(emulator.pid)
    up0 = [e.uplink() for e in edges]
    ka0 = sum(e.keepalives for e in edges)
    st0 = sum(e.status_reports for e in edges)
    rx0 = sum(e.messages() for e in edges)
    log.info("phase 2: idle for %.0fs", idle_s)
    await asyncio.sleep(idle_s)
    after = await client.stats()
    cost = after.since(before)
    window = after.at - before.at
    cpu_hub = hub.cpu_seconds() - cpu_hub0
    cpu_api = cpu_seconds(emulator.pid) - cpu_api0
    connected = [e for e in edges if e.open]
    n = len(connected)
    node_min = n * window / 60 if n else math.nan
    up1 = [e.uplink() for e in edges]
    payload = sum(u[0] - u0[0] for u, u0 in zip(up1, up0, strict=True))
    frames = sum(u[1] - u0[1] for u, u0 in zip(up1, up0, strict=True))
    on_wire = payload + frames * FRAME_OVERHEAD
    keepalives = sum(e.keepalives for e in edges) - ka0
    reports = sum(e.status_reports for e in edges) - st0
    received = sum(e.messages() for e in edges) - rx0
    _log_breakdown("cloudhub requests while idle", cost, n, minutes=window / 60)

    cats = cost.by_category()
    owner = sum(v for k, v in cats.items() if k.startswith("ownership_lease."))
    node_lease = sum(v for k, v in cats.items() if k.startswith("node_lease."))
    status = sum(v for k, v in cats.items() if k.startswith(("node_status.", "node.")))
    watches = sum(v for k, v in cats.items() if k.endswith(".watch"))
    lists = sum(v for k, v in cats.items() if k.endswith(".list"))
    total = cost.total()
    other = total - owner - node_lease - status - watches - lists

    def per(x: float) -> float:
        return x / node_min if node_min else math.nan

    def kbit(nbytes: float) -> float:
        return nbytes * 8 / 1000 / n / window if n and window else math.nan

    fig.add("idle_window", window, "s", digits=1)
    fig.add("idle_nodes_connected", n, f"of {len(edges)}")
    fig.add("idle_requests_total", total, "API requests by cloudhub")
    fig.add(
        "idle_requests_per_node_min", per(total), "requests / connected node / minute", digits=2
    )
    fig.add("idle_ownership_lease_per_node_min", per(owner), "(edgebridge/ leases)", digits=2)
    fig.add("idle_node_lease_per_node_min", per(node_lease), "(kube-node-lease/)", digits=2)
    fig.add("idle_node_status_per_node_min", per(status), "(Node get + status)", digits=2)
    fig.add("idle_watches_opened", watches, "watch requests (any resource)")
    fig.add("idle_lists", lists, "list requests")
    fig.add("idle_other_requests", other, "requests (per replica, e.g. its auth Secret reads)")
    fig.add("idle_ownership_share", 100 * owner / total if total else math.nan, "% of requests")
    fig.add(
        "idle_vs_kubelet",
        per(total) / KUBELET_LEASE_PER_MIN,
        f"x a kubelet's {KUBELET_LEASE_PER_MIN:.0f} lease renewals/min",
        digits=2,
    )
    fig.add("idle_api_uplink_bytes_per_node_min", per(cost.bytes_in), "B (cloudhub -> API)")
    fig.add("idle_api_uplink_per_node", kbit(cost.bytes_in), "kbit/s (HTTP, no TLS/TCP)", digits=3)
    if cost.bytes_out_measured:
        fig.add(
            "idle_api_downlink_per_node", kbit(cost.bytes_out), "kbit/s (API -> cloudhub)", digits=3
        )
    fig.add("idle_bookmarks", cost.bookmarks, f"(every {args.bookmark_interval:.0f}s per watch)")
    fig.add("idle_edge_keepalives", keepalives, "keepalives sent by the edges")
    fig.add("idle_edge_status_reports", reports, "node status reports sent by the edges")
    fig.add("idle_edge_messages_received", received, "object messages pushed to edges")
    fig.add("idle_edge_uplink_per_node", kbit(payload), "kbit/s (websocket payload)", digits=3)
    fig.add(
        "idle_edge_uplink_wire_per_node",
        kbit(on_wire),
        "kbit/s (est. with TLS, ws, TCP/IP)",
        digits=3,
    )
    fig.add("kubeedge_uplink_per_node", KUBEEDGE_KBIT_S, "kbit/s (KubeEdge's figure)", digits=2)
    fig.add("idle_cloudhub_cpu", 100 * cpu_hub / window if window else math.nan, "% of a core")
    fig.add(
        "idle_cloudhub_cpu_per_node_min", per(cpu_hub) * 1000, "ms CPU / node / minute", digits=2
    )
    fig.add("idle_emulator_cpu", 100 * cpu_api / window if window else math.nan, "% of a core")
    for name, count in sorted(cats.items()):
        fig.add(f"idle_requests[{name}]", count, f"({per(count):.2f} / node / min)")
    return n == len(edges)


def _log_breakdown(title: str, cost: Stats, nodes: int, *, minutes: float = 0.0) -> None:
    rows = sorted(cost.by_category().items(), key=lambda kv: -kv[1])
    log.info("%s: %d in total", title, cost.total())
    for name, count in rows:
        if minutes and nodes:
            log.info("  %-28s %6d  (%.2f / node / min)", name, count, count / nodes / minutes)
        else:
            log.info("  %-28s %6d  (%.2f / node)", name, count, count / max(nodes, 1))
    # requests that are not per node are few: name them
    for (verb, path), count in sorted(cost.requests.items()):
        known = ("ownership_lease", "node_lease", "node", "node_status")
        if category(verb, path) not in known:
            log.info("    %s %s x%d", verb, path, count)


# -- command line -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Kubernetes mode on the emulated API: pod create -> edge ACK latency over "
        "1,000 pods on 100 edges, then what idle edges cost the API server per node per minute.",
        epilog="example: python bench/k8s_mirror.py --idle-minutes 5",
    )
    p.add_argument("--nodes", type=int, default=None, help="simulated edges (100; quick 50)")
    p.add_argument("--pods", type=int, default=None, help="pods to create (1000; quick 500)")
    p.add_argument(
        "--idle-minutes", type=float, default=None, help="idle window, minutes (1; quick 1/3)"
    )
    p.add_argument("--create-concurrency", type=int, default=32, help="creates in flight (32)")
    p.add_argument(
        "--trickle",
        type=int,
        default=100,
        help="then this many pods paced, one request at a time, for unloaded latency (100)",
    )
    p.add_argument("--trickle-rate", type=float, default=20.0, help="paced pods/s (20)")
    p.add_argument(
        "--node-status-interval",
        type=float,
        default=300.0,
        help="seconds between an edge's node status reports, as edgecore's nodestatus (300)",
    )
    p.add_argument(
        "--bookmark-interval",
        type=float,
        default=60.0,
        help="seconds of silence before the emulator sends a watch bookmark (60, as the API "
        "server; cloudhub reopens a watch silent for 70)",
    )
    p.add_argument(
        "--mirror-timeout", type=float, default=60.0, help="wait for every pod's ACK, s (60)"
    )
    p.add_argument("--settle", type=float, default=3.0, help="pause between phases, s (3)")
    p.add_argument("--quick", action="store_true", help="50 nodes, 500 pods, 20 s idle (< 1 min)")
    p.add_argument("--timeout", type=float, default=None, help="hard limit, s (240 + idle)")
    p.add_argument("--workdir", type=Path, default=None, help="parent of the temp dir (system)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, kubeconfig)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug progress")
    p.add_argument("--serve-emulator", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--kubeconfig", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    quick = args.quick
    if args.nodes is None:
        args.nodes = 50 if quick else 100
    if args.pods is None:
        args.pods = 500 if quick else 1000
    if args.idle_minutes is None:
        args.idle_minutes = 1 / 3 if quick else 1.0
    if args.timeout is None:
        args.timeout = 240.0 + args.idle_minutes * 60
    if args.nodes < 1 or args.pods < 0 or args.idle_minutes <= 0:
        p.error("--nodes must be >= 1, --pods >= 0, --idle-minutes > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_emulator:
        if args.kubeconfig is None:
            print("--serve-emulator needs --kubeconfig", file=sys.stderr)
            return 2
        asyncio.run(serve_emulator(args.kubeconfig, args.bookmark_interval))
        return 0
    setup_logging(verbose=args.verbose)
    fig = Figures(
        f"k8s_mirror nodes={args.nodes} pods={args.pods} idle={args.idle_minutes * 60:g}s "
        f"(Kubernetes mode, emulated API)"
    )
    return run_benchmark(fig, run(args, fig), timeout=args.timeout)


if __name__ == "__main__":
    sys.exit(main())
