"""Shared plumbing for the cloud-edge benchmarks in ``bench/``.

Why the benchmarks drive a *real* cloudhub process but *simulated* edges: what we want to know
is what one cloudhub costs (memory per link, messages per second, what a reconnect or a burst
costs on the wire). A real edgecore per node would measure SQLite on the edge and cap the fleet
at a few dozen processes. :class:`SimEdge` speaks exactly the edge's side of the protocol
(mutual TLS, ``inventory`` first, an ACK for every downstream message, keepalives) and nothing
else, so thousands fit in a few client processes.

Everything runs on 127.0.0.1 with free ports in a temporary directory, and every process a
benchmark starts is stopped by it (:class:`CloudHub` is a context manager).

Conventions shared by every script: progress goes to stderr through :mod:`logging`; the final
figures go to stdout as ``name: value unit`` lines (:class:`Figures`), so a run can be diffed
or grepped.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import logging
import math
import os
import random
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
#: node certificates carry this CN prefix and organisation (see cloudhub.pki)
NODE_CN_PREFIX = "system:node:"
NODE_ORGANIZATION = "system:nodes"
#: the header our edgecore announces its heartbeat in (cloudhub.hub.handshake)
HEARTBEAT_HEADER = "edgebridge-heartbeat"
#: operations that carry an object to the edge and must be ACKed
OBJECT_OPS = frozenset({"insert", "update", "patch", "delete"})
#: KubeEdge's edge heartbeat; what the brief's simulated edges announce
DEFAULT_HEARTBEAT = 15.0


# -- small utilities --------------------------------------------------------------------------


def setup_logging(*, verbose: bool = False, prefix: str = "") -> None:
    """Progress lines on stderr, with a wall-clock stamp (stdout is kept for the figures)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=f"%(asctime)s {prefix}%(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    # websockets logs every frame at debug level; only our own progress is wanted here.
    for noisy in ("websockets", "asyncio", "aiohttp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the usual small race is acceptable here)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def raise_nofile() -> int:
    """Raise this process's open-file soft limit to the hard limit; returns the new limit.

    Children inherit it, which is how a cloudhub started by a benchmark gets enough
    descriptors for thousands of links without cloudhub changing its own limits.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def proc_status(pid: int) -> dict[str, int]:
    """The ``Vm*`` lines of ``/proc/PID/status`` in KiB (``VmRSS``, ``VmHWM``...), or ``{}``."""
    out: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if name.startswith("Vm") and len(parts) == 2 and parts[1] == "kB":
            out[name] = int(parts[0])
    return out


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (0 if the process is gone)."""
    return proc_status(pid).get("VmRSS", 0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far (0.0 if the process is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    # fields[0] is the state (field 3 of stat); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / ticks


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; ``nan`` for no values."""
    if not values:
        return math.nan
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


class Figures:
    """The final block: ``name: value unit`` lines on stdout, in the order they were added."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._rows: list[tuple[str, str, str]] = []

    def add(self, name: str, value: float | int | str, unit: str = "", *, digits: int = 1) -> None:
        if isinstance(value, float):
            text = "nan" if math.isnan(value) else f"{value:.{digits}f}"
        else:
            text = str(value)
        self._rows.append((name, text, unit))

    def ratio(self, name: str, num: float, den: float, *, digits: int = 3) -> None:
        """``num / den`` (``nan`` when the denominator is 0)."""
        self.add(name, num / den if den else math.nan, "", digits=digits)

    def value(self, name: str) -> float:
        """A figure added earlier, as a number (``nan`` if absent or not numeric)."""
        for row, text, _unit in self._rows:
            if row == name:
                try:
                    return float(text)
                except ValueError:
                    return math.nan
        return math.nan

    def print(self) -> None:
        print(f"== {self.title} ==")
        for name, text, unit in self._rows:
            print(f"{name}: {text} {unit}".rstrip())
        sys.stdout.flush()


def add_host_figures(fig: Figures, load_at_start: float) -> None:
    """CPU count and load average, so a run on a busy or small machine reads as such."""
    fig.add("host_cpus", os.cpu_count() or 0, "CPUs")
    fig.add("host_load_1m_start", load_at_start, "(load average when the run began)", digits=2)
    fig.add("host_load_1m_end", os.getloadavg()[0], "(load average at the end)", digits=2)


async def wait_for_condition(
    predicate: Callable[[], bool], *, timeout: float, interval: float = 0.05, what: str = ""
) -> bool:
    """Poll ``predicate`` until true or ``timeout``; returns whether it became true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            if what:
                log.warning("gave up waiting for %s after %.0fs", what, timeout)
            return False
        await asyncio.sleep(interval)
    return True


# -- the cloudhub process ---------------------------------------------------------------------


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class CloudHub:
    """``python -m cloudhub serve`` on free ports, logging to ``workdir/cloudhub.log``.

    Use as ``async with CloudHub(workdir=...) as hub:``; leaving the block stops it (SIGTERM,
    then SIGKILL after ``stop_grace`` seconds).
    """

    def __init__(self, *, workdir: Path, stop_grace: float = 5.0, verbose: bool = False) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "cloud"
        self.log_path = workdir / "cloudhub.log"
        self.ws_port = free_port()
        self.https_port = free_port()
        self.stop_grace = stop_grace
        self.verbose = verbose
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise RuntimeError("cloudhub is not started")
        return self._popen.pid

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def ca_path(self) -> Path:
        return self.data_dir / "ca.crt"

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def ws_url(self, node: str, project: str = "bench") -> str:
        return f"wss://127.0.0.1:{self.ws_port}/{project}/{node}/events"

    async def start(self, *, timeout: float = 30.0) -> None:
        """Start it and wait until both ports accept connections and the CA files exist.

        Raises:
            RuntimeError: it exited or did not come up within ``timeout``.
        """
        argv = [sys.executable, "-m", "cloudhub"]
        if self.verbose:
            argv.append("-v")
        argv += [
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--bind",
            "127.0.0.1",
            "--ws-port",
            str(self.ws_port),
            "--https-port",
            str(self.https_port),
        ]
        self._launch(argv)
        log.info("cloudhub pid %d: wss %d, https %d", self.pid, self.ws_port, self.https_port)

        def up() -> bool:
            if not self.running:
                raise RuntimeError(f"cloudhub exited; see {self.log_path}:\n{self.log_tail()}")
            return (
                (self.data_dir / "admin.token").exists()
                and self.ca_path.exists()
                and _port_open(self.https_port)
                and _port_open(self.ws_port)
            )

        if not await wait_for_condition(up, timeout=timeout):
            raise RuntimeError(f"cloudhub did not come up in {timeout}s:\n{self.log_tail()}")

    def _launch(self, argv: list[str]) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            self._popen = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT
            )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited after ``stop_grace`` seconds."""
        p = self._popen
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(self.stop_grace)
        except subprocess.TimeoutExpired:
            log.info("cloudhub did not stop in %.0fs; killing it", self.stop_grace)
            p.kill()
            p.wait(5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def count_log(self, needle: str) -> int:
        """How many lines of the cloudhub log contain ``needle``."""
        try:
            with self.log_path.open(errors="replace") as f:
                return sum(1 for line in f if needle in line)
        except OSError:
            return 0

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def peak_rss_kib(self) -> int:
        return proc_status(self.pid).get("VmHWM", 0)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    async def __aenter__(self) -> CloudHub:
        try:
            await self.start()
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()


# -- profiling ----------------------------------------------------------------------------------


class PySpy:
    """Samples a process with ``py-spy record --format raw`` (collapsed stacks) while active.

    py-spy is not a dependency of edgebridge; when it is not on PATH this does nothing but say
    so. ``--nonblocking`` keeps the sampled process running between samples, so the profile
    perturbs the figures only slightly.
    """

    def __init__(self, *, pid: int, out: Path, rate: int = 100) -> None:
        self.pid = pid
        self.out = out
        self.rate = rate
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("py-spy")
        if exe is None:
            log.warning("py-spy is not installed (pip install py-spy); not profiling")
            return
        self._popen = subprocess.Popen(
            [exe, "record", "--pid", str(self.pid), "--output", str(self.out), "--format",
             "raw", "--rate", str(self.rate), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        log.info("profiling pid %d into %s", self.pid, self.out)

    def stop(self) -> None:
        """Stop sampling (SIGINT makes py-spy write its output) and log a summary."""
        p, self._popen = self._popen, None
        if p is None:
            return
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        if self.out.exists():
            for line in summarize_collapsed(self.out):
                log.info("%s", line)


def summarize_collapsed(path: Path, *, top: int = 25) -> list[str]:
    """Top functions by self and by inclusive samples from a collapsed-stack file."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            incl[frame] = incl.get(frame, 0) + count
    if not total:
        return ["profile: no samples"]
    out = [f"profile of {path.name}: {total} samples; top by self time:"]
    for frame, c in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"  self {100 * c / total:5.1f}%  {frame}")
    out.append("top by inclusive time:")
    for frame, c in sorted(incl.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"  incl {100 * c / total:5.1f}%  {frame}")
    return out


# -- the admin API ----------------------------------------------------------------------------

PLURALS = {
    "Node": "nodes",
    "Pod": "pods",
    "ConfigMap": "configmaps",
    "Secret": "secrets",
}


class Admin:
    """A minimal client of cloudhub's admin API (``/admin/v1/``), over verified TLS."""

    def __init__(self, *, base_url: str, token: str, ca_path: Path, limit: int = 16) -> None:
        ctx = ssl.create_default_context(cafile=str(ca_path))
        self._session = aiohttp.ClientSession(
            base_url=base_url,
            connector=aiohttp.TCPConnector(ssl=ctx, limit=limit),
            headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=120),
        )

    @classmethod
    def for_hub(cls, hub: CloudHub, *, limit: int = 16) -> Admin:
        return cls(base_url=hub.https_url, token=hub.admin_token, ca_path=hub.ca_path, limit=limit)

    async def apply(self, objects: list[dict[str, Any]]) -> dict[str, Any]:
        """POST /admin/v1/apply; the response body (``objects`` and ``actions``).

        Raises:
            RuntimeError: the server answered with an error status.
        """
        async with self._session.post("/admin/v1/apply", json={"objects": objects}) as resp:
            body: dict[str, Any] = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"apply failed ({resp.status}): {body.get('error')}")
            return body

    async def create_token(self, *, ttl_seconds: float = 3600.0, node: str | None = None) -> str:
        """POST /admin/v1/tokens: a join token (for a real ``edgecore join``).

        Raises:
            RuntimeError: the server answered with an error status.
        """
        req: dict[str, Any] = {"ttl_seconds": ttl_seconds}
        if node is not None:
            req["node"] = node
        async with self._session.post("/admin/v1/tokens", json=req) as resp:
            body: dict[str, Any] = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"token failed ({resp.status}): {body.get('error')}")
            return str(body["token"])

    async def apply_batched(self, objects: list[dict[str, Any]], *, batch: int = 500) -> None:
        for i in range(0, len(objects), batch):
            await self.apply(objects[i : i + batch])

    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        async with self._session.get(f"/admin/v1/{plural}/{namespace}/{name}") as resp:
            body: dict[str, Any] = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"get failed ({resp.status}): {body.get('error')}")
            return body

    async def delete(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        async with self._session.delete(f"/admin/v1/{plural}/{namespace}/{name}") as resp:
            body: dict[str, Any] = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"delete failed ({resp.status}): {body.get('error')}")
            return body

    async def close(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> Admin:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def node_object(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}


# -- certificates -----------------------------------------------------------------------------


class CertMinter:
    """Signs bench certificates directly with the cloud CA's key (``ca.key`` in the data dir).

    Node certificates look like the ones cloudhub issues at join time (``CN=system:node:NAME,
    O=system:nodes``, clientAuth). One EC key is shared by every node: generating 10,000 keys
    would dominate the set-up time and says nothing about cloudhub.
    """

    def __init__(self, *, data_dir: Path, out_dir: Path) -> None:
        self.ca_path = data_dir / "ca.crt"
        self._ca_cert = x509.load_pem_x509_certificate(self.ca_path.read_bytes())
        ca_key = serialization.load_pem_private_key(
            (data_dir / "ca.key").read_bytes(), password=None
        )
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise RuntimeError("ca.key is not an ECDSA key")
        self._ca_key = ca_key
        self._ca_pem = self.ca_path.read_bytes()
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.key_path = out_dir / f"shared-{os.getpid()}.key"
        self.key_path.write_bytes(
            self._key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self._aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())

    def _cert(
        self, subject: x509.Name, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]
    ) -> bytes:
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._ca_cert.subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(self._aki, critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM)

    def node_cert_path(self, node: str) -> Path:
        """Mint (once) the node's certificate file; returns its path."""
        path = self.out_dir / f"{node}.crt"
        if not path.exists():
            subject = x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, NODE_ORGANIZATION),
                    x509.NameAttribute(NameOID.COMMON_NAME, NODE_CN_PREFIX + node),
                ]
            )
            path.write_bytes(self._cert(subject, ExtendedKeyUsageOID.CLIENT_AUTH, []))
        return path

    def client_context(self, node: str) -> ssl.SSLContext:
        """A TLS client context presenting ``node``'s certificate and trusting only the CA."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=self._ca_pem.decode())
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.node_cert_path(node)), str(self.key_path))
        return ctx

    def server_context(self, *, require_client_cert: bool = True) -> ssl.SSLContext:
        """A TLS server context like cloudhub's wss port: ECDSA P-256, client certs required."""
        path = self.out_dir / "echo-server.crt"
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench-echo")])
        sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        path.write_bytes(self._cert(subject, ExtendedKeyUsageOID.SERVER_AUTH, sans))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(path), str(self.key_path))
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cadata=self._ca_pem.decode())
        return ctx


# -- a simulated edge -------------------------------------------------------------------------

#: ``on_object(edge, operation, key, resourceVersion, content, receive_time)``, called after the
#: edge updated its inventory and before it ACKs (as a real edge persists, then ACKs).
ObjectHook = Callable[["SimEdge", str, str, str, Any, float], None]
#: ``on_acked(edge, operation, key, content, ack_time)``, called once the ACK is written.
AckHook = Callable[["SimEdge", str, str, Any, float], None]


def _frame(operation: str, resource: str, content: Any, *, parent: str = "") -> str:
    # Hand-built rather than via wire.messages: thousands of simulated edges share the machine
    # with cloudhub, and a pydantic round trip per ACK would measure the client, not the hub.
    # The field names and shape are exactly wire.messages.Message's.
    return json.dumps(
        {
            "header": {
                "msg_id": str(uuid.uuid4()),
                "parent_msg_id": parent,
                "timestamp": int(time.time() * 1000),
                "resourceversion": "",
                "sync": False,
                "type": "",
            },
            "route": {
                "source": "edgehub",
                "destination": "",
                "group": "resource",
                "operation": operation,
                "resource": resource,
            },
            "content": content,
        },
        separators=(",", ":"),
    )


class SimEdge:
    """One simulated edge node: the edge's half of the protocol, and counters.

    ``inventory`` is what a real edge would have persisted (key -> resourceVersion); it
    survives :meth:`close` so a later :meth:`connect` can state it, as a restarted edgecore
    states what is in its SQLite cache.
    """

    def __init__(
        self,
        *,
        node: str,
        url: str,
        ssl_context: ssl.SSLContext,
        heartbeat: float = DEFAULT_HEARTBEAT,
        on_object: ObjectHook | None = None,
        on_acked: AckHook | None = None,
        keep_objects: bool = False,
        ack_delay: float = 0.0,
    ) -> None:
        """
        Args:
            ack_delay: seconds to wait before each ACK, standing in for a WAN round trip and
                the edge's own persisting (on loopback an ACK takes well under 1 ms, which a
                real fleet never sees). Messages are handled one at a time, as an edge does.
        """
        self.node = node
        self.ack_delay = ack_delay
        self.url = url
        self.ssl = ssl_context
        self.heartbeat = heartbeat
        self.on_object = on_object
        self.on_acked = on_acked
        self.keep_objects = keep_objects
        self.inventory: dict[str, str] = {}
        self.objects: dict[str, Any] = {}
        self.ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        #: object messages received / ACKed, per operation; reset with :meth:`reset_counts`
        self.received: dict[str, int] = {}
        self.acked = 0
        self.bytes_received = 0
        self.errors: list[str] = []
        self.last_rx = 0.0
        self.connected_at = 0.0
        self.synced_at = 0.0
        self.next_keepalive = 0.0
        self.close_reason = ""

    @property
    def node_key(self) -> str:
        return f"null/node/{self.node}"

    @property
    def open(self) -> bool:
        return self._reader is not None and not self._reader.done()

    def reset_counts(self) -> None:
        self.received = {}
        self.acked = 0
        self.bytes_received = 0

    def messages(self) -> int:
        return sum(self.received.values())

    async def connect(self, *, send_inventory: bool = True, open_timeout: float = 60.0) -> None:
        """Open the link and state the inventory (unless ``send_inventory`` is false, as a
        stock KubeEdge edgecore would). Starts the reader task.

        Raises:
            OSError, TimeoutError, websockets.exceptions.InvalidHandshake: could not connect.
        """
        ws = await connect(
            self.url,
            ssl=self.ssl,
            additional_headers={
                "node_id": self.node,
                "project_id": "bench",
                HEARTBEAT_HEADER: str(self.heartbeat),
            },
            compression=None,
            ping_interval=None,
            max_size=8 * 1024 * 1024,
            open_timeout=open_timeout,
            close_timeout=1.0,
        )
        self.ws = ws
        self.close_reason = ""
        now = time.time()
        self.connected_at = now
        self.last_rx = now
        self.next_keepalive = time.monotonic() + self.heartbeat * random.uniform(0.5, 1.0)
        if send_inventory:
            await ws.send(_frame("inventory", self.node_key, dict(self.inventory)))
        self._reader = asyncio.get_running_loop().create_task(
            self._read(ws), name=f"edge:{self.node}"
        )

    async def keepalive(self) -> None:
        """Send one keepalive (the cloud answers with a ``response``)."""
        if self.ws is not None and self.open:
            self.next_keepalive = time.monotonic() + self.heartbeat
            with contextlib.suppress(ConnectionClosed, OSError):
                await self.ws.send(_frame("keepalive", "node", "ping"))

    async def close(self) -> None:
        """Drop the link (abort, like an edge losing power; nothing to flush)."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
        if self.ws is not None:
            self.ws.transport.abort()
            self.ws = None
        self.close_reason = self.close_reason or "closed by bench"

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for frame in ws:
                now = time.time()
                self.last_rx = now
                msg = json.loads(frame)
                route = msg["route"]
                op = route["operation"]
                if op not in OBJECT_OPS:
                    if op == "error":
                        self.errors.append(str(msg.get("content")))
                    continue  # keepalive answers and other responses need nothing
                self.bytes_received += len(frame)
                header = msg["header"]
                key = route["resource"]
                rv = header.get("resourceversion", "")
                content = msg.get("content")
                if op == "delete":
                    self.inventory.pop(key, None)
                    self.objects.pop(key, None)
                else:
                    self.inventory[key] = rv
                    if self.keep_objects:
                        self.objects[key] = content
                if key == self.node_key and not self.synced_at:
                    self.synced_at = now
                self.received[op] = self.received.get(op, 0) + 1
                if self.on_object is not None:
                    self.on_object(self, op, key, rv, content, now)
                if self.ack_delay:
                    await asyncio.sleep(self.ack_delay)
                await ws.send(_frame("response", key, "OK", parent=header["msg_id"]))
                self.acked += 1
                if self.on_acked is not None:
                    self.on_acked(self, op, key, content, time.time())
        except ConnectionClosed as exc:
            self.close_reason = f"connection closed: {exc}"
        except OSError as exc:
            self.close_reason = f"{type(exc).__name__}: {exc}"


async def keepalive_loop(edges: Callable[[], Iterable[SimEdge]], *, tick: float = 1.0) -> None:
    """Send each open edge's keepalive when due; one task for all of them (cheaper than one
    sleeping task per edge). Runs until cancelled."""
    while True:
        now = time.monotonic()
        for edge in list(edges()):
            if edge.open and edge.next_keepalive <= now:
                await edge.keepalive()
        await asyncio.sleep(tick)


async def connect_all(
    edges: Sequence[SimEdge],
    *,
    concurrency: int,
    attempts: int = 5,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[int, int, list[str]]:
    """Connect every edge with at most ``concurrency`` handshakes in flight, retrying each up
    to ``attempts`` times. Returns ``(connected, failed, sample of error texts)``."""
    sem = asyncio.Semaphore(max(1, concurrency))
    ok = 0
    failed = 0
    errors: list[str] = []

    async def one(edge: SimEdge) -> None:
        nonlocal ok, failed
        delay = 0.5
        for attempt in range(attempts):
            async with sem:
                try:
                    await edge.connect()
                except Exception as exc:
                    if len(errors) < 20:
                        errors.append(
                            f"{edge.node} attempt {attempt + 1}: {type(exc).__name__}: {exc}"
                        )
                else:
                    ok += 1
                    if on_progress is not None:
                        on_progress(ok, failed)
                    return
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 8.0)
        failed += 1

    await asyncio.gather(*(one(e) for e in edges))
    return ok, failed, errors


# -- objects the benchmarks apply -------------------------------------------------------------


def bench_pod(
    name: str,
    node: str,
    *,
    namespace: str = "bench",
    annotations: dict[str, str] | None = None,
    configmap: str | None = None,
    env_vars: int = 10,
) -> dict[str, Any]:
    """A pod bound to ``node``, about 1 KB once stored, optionally using a ConfigMap (envFrom)."""
    container: dict[str, Any] = {
        "name": "app",
        "image": "registry.example.com/bench/app:1.0.0",
        "env": [
            {"name": f"SETTING_{i}", "value": f"value-{i:04d}-abcdef"} for i in range(env_vars)
        ],
        "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}},
    }
    if configmap:
        container["envFrom"] = [{"configMapRef": {"name": configmap}}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": "bench", "bench/node": node},
            "annotations": dict(annotations or {}),
        },
        "spec": {"nodeName": node, "containers": [container], "restartPolicy": "Always"},
    }
