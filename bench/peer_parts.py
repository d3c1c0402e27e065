"""The parts of ``peer_kubeedge.py``: stock edgecores, the two clouds, the API driver, edge rows.

- :class:`StockFleet` starts and stops stock edgecores with the build's ``edgecore-up.sh``
  (each with its own mosquitto port) and reads what they logged and stored;
- :class:`PeerCloud` is stock cloudcore (``cloudcore-up.sh``), :class:`OurCloud` is
  ``cloudhub serve`` (embedded store, or ``--kubeconfig``): the same small interface, so the
  script runs one workload through either;
- :class:`Driver` writes pods through the Kubernetes API (or our admin API in embedded mode);
- :class:`RowWatch` polls the edges' SQLite (stock metamanager's ``meta`` table) for the
  annotation ``pb/seq`` each pod carries, and times every version's arrival.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from bench.cloud import Admin, CloudHub, bench_pod
from bench.common import free_port
from bench.measure import cpu_seconds, rss_kib, tree_cpu_seconds, tree_rss_kib
from cloudhub.k8s.api import PODS, KubeApi, Resource
from wire.errors import NotFound, StoreError

log = logging.getLogger("peer_kubeedge")

NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
SEQ = "pb/seq"
#: a stock metamanager logs every message it takes (klog v2) with its route; those from the
#: cloud name a cloud module as source (edgehub's own connect/disconnect events name edgehub)
MESSAGE_LINE = re.compile(r"get a message \{.*Router:\{Source:(?P<source>\S*) ")
LOCAL_SOURCES = frozenset({"", "edgehub"})
CONNECTED_LINE = "Websocket connect to cloud access successful"


def pid_from(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    return pid


# -- stock edgecores --------------------------------------------------------------------------


class StockFleet:
    """``nodes`` stock edgecores, each with its own dir under ``work`` and mosquitto port."""

    def __init__(self, peer: Path, work: Path, nodes: list[str], *, log_v: int = 2) -> None:
        self.peer = peer
        self.work = work
        self.nodes = nodes
        self.log_v = log_v
        self.ports = {node: free_port() for node in nodes}

    def dir(self, node: str) -> Path:
        return self.work / "edges" / node

    def db(self, node: str) -> Path:
        return self.dir(node) / "edgecore.db"

    def log_path(self, node: str) -> Path:
        return self.peer / "run" / f"edgecore-{node}.log"

    def start(self, node: str, env: dict[str, str], *, fresh: bool) -> None:
        """Start ``node``'s edgecore against the cloud ``env`` names (``KE_WS``, ...); returns
        once it is connected.

        Raises:
            RuntimeError: it did not connect (the script's reason).
        """
        full = dict(
            os.environ,
            KE_NODE=node,
            KE_EDGE_DIR=str(self.dir(node)),
            KE_MQTT_PORT=str(self.ports[node]),
            KE_FRESH="1" if fresh else "0",
            KE_LOG_V=str(self.log_v),
            **env,
        )
        out = subprocess.run(
            ["bash", str(self.peer / "edgecore-up.sh")], env=full, capture_output=True, text=True
        )
        if out.returncode != 0:
            raise RuntimeError(f"stock edge {node} did not connect: {out.stderr.strip()[-300:]}")

    async def start_all(self, envs: dict[str, dict[str, str]], *, fresh: bool) -> None:
        gate = asyncio.Semaphore(4)

        async def one(node: str) -> None:
            async with gate:
                await asyncio.to_thread(self.start, node, envs[node], fresh=fresh)

        async with asyncio.TaskGroup() as tg:
            for node in self.nodes:
                tg.create_task(one(node))

    def stop(self, nodes: Iterable[str], *, mosquitto: bool = False) -> None:
        """SIGTERM the edgecores (and their mosquittos); returns once they are gone."""
        pids = [pid_from(self.peer / "run" / f"edgecore-{n}.pid") for n in nodes]
        if mosquitto:
            pids += [pid_from(self.peer / "run" / f"mosquitto-{self.ports[n]}.pid") for n in nodes]
        live = [p for p in pids if p is not None]
        for pid in live:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while live and time.monotonic() < deadline:
            live = [p for p in live if _alive(p)]
            time.sleep(0.05)
        for pid in live:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def log_sizes(self) -> dict[str, int]:
        return {n: _size(self.log_path(n)) for n in self.nodes}

    def messages_since(self, offsets: dict[str, int]) -> int:
        """Messages from the cloud the edges' metamanagers logged after ``offsets``."""
        total = 0
        for node, offset in offsets.items():
            with contextlib.suppress(OSError), self.log_path(node).open("rb") as f:
                f.seek(offset)
                for line in f:
                    match = MESSAGE_LINE.search(line.decode(errors="replace"))
                    total += match is not None and match["source"] not in LOCAL_SOURCES
        return total

    def connected_since(self, node: str, offset: int) -> bool:
        with contextlib.suppress(OSError), self.log_path(node).open("rb") as f:
            f.seek(offset)
            return CONNECTED_LINE.encode() in f.read()
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


# -- edge rows --------------------------------------------------------------------------------


def read_seqs(db: Path, namespace: str) -> dict[str, int]:
    """pod name -> its ``pb/seq`` annotation as the edge stored it (a read-only query)."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2)
    except sqlite3.Error:
        return {}
    try:
        rows = conn.execute(
            "SELECT key, json_extract(value, '$.metadata.annotations.\"pb/seq\"') FROM meta "
            "WHERE key LIKE ?",
            (f"{namespace}/pod/%",),
        ).fetchall()
    except sqlite3.Error:
        return {}
    finally:
        conn.close()
    out: dict[str, int] = {}
    for key, seq in rows:
        with contextlib.suppress(TypeError, ValueError):
            out[str(key).rsplit("/", 1)[1]] = int(seq)
    return out


class RowWatch:
    """Times pod versions from their write to the row on their edge."""

    def __init__(self, fleet: StockFleet, namespace: str, pods: dict[str, str]) -> None:
        self.fleet = fleet
        self.namespace = namespace
        #: pod -> node
        self.pods = pods
        #: pod -> [(seq, when written)] not yet seen at the edge
        self._pending: dict[str, list[tuple[int, float]]] = {}
        self.latencies: list[float] = []
        self.seen: dict[str, int] = {}

    def sent(self, pod: str, seq: int, at: float) -> None:
        self._pending.setdefault(pod, []).append((seq, at))

    def poll(self) -> None:
        now = time.monotonic()
        nodes = {self.pods[p] for p in self._pending}
        for node in nodes:
            for pod, seq in read_seqs(self.fleet.db(node), self.namespace).items():
                self.seen[pod] = seq
                waiting = self._pending.get(pod)
                if not waiting:
                    continue
                keep = []
                for want, at in waiting:
                    if seq >= want:
                        self.latencies.append(now - at)
                    else:
                        keep.append((want, at))
                if keep:
                    self._pending[pod] = keep
                else:
                    del self._pending[pod]

    @property
    def outstanding(self) -> int:
        return sum(len(v) for v in self._pending.values())

    async def drain(self, timeout: float, interval: float = 0.02) -> bool:
        """Poll until every version sent was seen; whether it was within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if not self._pending:
                return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(interval)


# -- the clouds -------------------------------------------------------------------------------


class Cloud(Protocol):
    label: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def edge_env(self, node: str) -> dict[str, str]: ...

    def cpu_seconds(self) -> float: ...

    def rss_kib(self) -> int: ...


class PeerCloud:
    """Stock cloudcore v1.15 on the cluster of ``kubeconfig`` (``cloudcore-up.sh``)."""

    label = "peer"

    def __init__(self, peer: Path, work: Path, kubeconfig: Path, name: str = "pb-bench") -> None:
        self.peer = peer
        self.kubeconfig = kubeconfig
        self.name = name
        self.dir = work / "cloudcore"
        self.ws_port, self.https_port, self.monitor_port = free_port(), free_port(), free_port()
        self.token = ""

    @property
    def pid(self) -> int | None:
        return pid_from(self.peer / "run" / f"cloudcore-{self.name}.pid")

    async def start(self) -> None:
        env = dict(
            os.environ,
            CC_KUBECONFIG=str(self.kubeconfig),
            CC_NAME=self.name,
            CC_DIR=str(self.dir),
            CC_WS_PORT=str(self.ws_port),
            CC_HTTPS_PORT=str(self.https_port),
            CC_MONITOR_PORT=str(self.monitor_port),
        )
        out = await asyncio.to_thread(
            subprocess.run,
            ["bash", str(self.peer / "cloudcore-up.sh")],
            env=env,
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise RuntimeError(f"cloudcore did not start: {out.stderr.strip()[-400:]}")
        match = re.search(r"CC_TOKEN=(\S+)", out.stdout)
        if match is None:
            raise RuntimeError(f"cloudcore-up.sh printed no token: {out.stdout[-300:]}")
        self.token = match[1]
        log.info("stock cloudcore pid %s: wss %d", self.pid, self.ws_port)

    async def stop(self) -> None:
        await asyncio.to_thread(self._stop)

    def _stop(self) -> None:
        pid = self.pid
        if pid is None:
            return
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    async def edge_env(self, node: str) -> dict[str, str]:
        return {
            "KE_WS": f"127.0.0.1:{self.ws_port}",
            "KE_HTTPS": f"127.0.0.1:{self.https_port}",
            "KE_TOKEN": self.token,
            "KE_CREATE_NODE": "1",
            "KE_KUBECONFIG": str(self.kubeconfig),
        }

    def cpu_seconds(self) -> float:
        pid = self.pid
        return cpu_seconds(pid) if pid is not None else 0.0

    def rss_kib(self) -> int:
        pid = self.pid
        return rss_kib(pid) if pid is not None else 0


class OurCloud:
    """``cloudhub serve``: on the cluster of ``kubeconfig``, or on its embedded store."""

    label = "ours"

    def __init__(self, work: Path, kubeconfig: Path | None) -> None:
        extra = [] if kubeconfig is None else ["--kubeconfig", str(kubeconfig)]
        extra += ["--replica-name", "pb-bench"] if kubeconfig is not None else []
        self.hub = CloudHub(workdir=work / "cloudhub", extra_args=extra)
        self.admin: Admin | None = None

    async def start(self) -> None:
        await self.hub.start(timeout=60)
        self.admin = Admin.for_hub(self.hub)

    async def stop(self) -> None:
        await asyncio.to_thread(self.hub.stop)
        if self.admin is not None:
            admin, self.admin = self.admin, None
            await admin.close()

    async def edge_env(self, node: str) -> dict[str, str]:
        assert self.admin is not None
        token = await self.admin.create_token(ttl_seconds=900)
        return {
            "KE_WS": f"127.0.0.1:{self.hub.ws_port}",
            "KE_HTTPS": f"127.0.0.1:{self.hub.https_port}",
            "KE_TOKEN": token,
            "KE_CREATE_NODE": "0",
        }

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.hub.pid) if self.hub.running else 0.0

    def rss_kib(self) -> int:
        return tree_rss_kib(self.hub.pid) if self.hub.running else 0


# -- writing pods -----------------------------------------------------------------------------


class Driver:
    """Creates and patches the bench's pods through the Kubernetes API, or through our admin
    API when there is no cluster (embedded mode)."""

    def __init__(
        self, namespace: str, *, api: KubeApi | None = None, admin: Admin | None = None
    ) -> None:
        self.namespace = namespace
        self.api = api
        self.admin = admin

    def pod(self, name: str, node: str, seq: int) -> dict[str, Any]:
        obj = bench_pod(name, node, namespace=self.namespace, annotations={SEQ: str(seq)})
        # no token volume: a fresh namespace's service account has no token for a while
        obj["spec"]["automountServiceAccountToken"] = False
        return obj

    async def ensure_namespace(self) -> None:
        if self.api is None:
            return
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}}
        try:
            await self.api.get(NAMESPACES, None, self.namespace)
        except NotFound:
            await self.api.create(NAMESPACES, None, body)

    async def create(self, pods: dict[str, str], watch: RowWatch, concurrency: int = 16) -> None:
        """Create every pod (seq 0), each timed from its request to its edge row."""
        if self.admin is not None:
            now = time.monotonic()
            for name in pods:
                watch.sent(name, 0, now)
            await self.admin.apply_batched([self.pod(n, node, 0) for n, node in pods.items()])
            return
        assert self.api is not None
        api = self.api
        gate = asyncio.Semaphore(concurrency)

        async def one(name: str, node: str) -> None:
            async with gate:
                watch.sent(name, 0, time.monotonic())
                await api.create(PODS, self.namespace, self.pod(name, node, 0))

        async with asyncio.TaskGroup() as tg:
            for name, node in pods.items():
                tg.create_task(one(name, node))

    async def patch(self, name: str, node: str, seq: int) -> None:
        if self.admin is not None:
            await self.admin.apply([self.pod(name, node, seq)])
            return
        assert self.api is not None
        await self.api.patch(
            PODS, self.namespace, name, {"metadata": {"annotations": {SEQ: str(seq)}}}
        )

    async def delete_all(self, names: Iterable[str]) -> None:
        """Remove the pods at once (grace 0: no kubelet would confirm a graceful delete)."""
        if self.api is None:
            return
        api = self.api
        gate = asyncio.Semaphore(16)

        async def one(name: str) -> None:
            async with gate:
                with contextlib.suppress(NotFound, StoreError):
                    await api.delete(PODS, self.namespace, name, grace_period_seconds=0)

        async with asyncio.TaskGroup() as tg:
            for name in names:
                tg.create_task(one(name))


def apiserver_pid(kubeconfig: Path) -> int | None:
    """The local apiserver's pid, when the kubeconfig is the realk8s harness's (``run/``)."""
    return pid_from(kubeconfig.parent / "run" / "kube-apiserver.pid")


__all__ = [
    "Cloud",
    "Driver",
    "OurCloud",
    "PeerCloud",
    "RowWatch",
    "StockFleet",
    "apiserver_pid",
    "read_seqs",
]
