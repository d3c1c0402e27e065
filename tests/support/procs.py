"""Real cloudhub / edgecore / edgectl processes for integration tests.

Processes are started with ``python -m ...`` exactly as a user would run the commands, on
127.0.0.1 with free ports, logging to files under the test's ``tmp_path`` (printed when a
test fails, via the ``logs`` attribute).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

PY = sys.executable
CRDS = Path(__file__).resolve().parents[2] / "deploy" / "crds"


#: ports free_port() picks from start here (above the defaults 10000-11883 a demo may hold)
_PORTS_FROM = 20000
#: ports this process handed out already (a child may not have bound its port yet)
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    """The lowest port the kernel gives outgoing connections (Linux's default: 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port free on 127.0.0.1 now, for a process that binds it a moment later.

    Picked below the kernel's ephemeral range: a port from that range (what binding port 0
    gives) is also what outgoing connections take as their local port, so any connection made
    between this call and the child's bind (an edgectl call, a poll) could take it, and the
    child would fail with "address already in use". Outside the range only an explicit bind
    can collide, and ports handed out here are not handed out twice.
    """
    high = _ephemeral_low()
    rng = random.Random()
    for _ in range(500) if high - _PORTS_FROM > 1000 else ():
        port = rng.randrange(_PORTS_FROM, high)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as s:  # an unusual ephemeral range: the kernel's pick
        s.bind(("127.0.0.1", 0))
        chosen: int = s.getsockname()[1]
        return chosen


async def wait_until(
    predicate: Callable[[], Any | Awaitable[Any]], *, timeout: float = 10.0, interval: float = 0.02
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            result = predicate()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
        except Exception as exc:  # the condition may raise until the system is up
            last_exc = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last error: {last_exc!r})")
        await asyncio.sleep(interval)


async def start_edgectl(*argv: str, stdin: bool = False) -> asyncio.subprocess.Process:
    """``python -m edgectl ARGV`` with stdout and stderr piped; the caller reads and ends it."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edgectl",
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def read_row(proc: asyncio.subprocess.Process, timeout: float) -> list[str]:
    """The next line ``proc`` prints, split in cells; fails when it ends or takes longer."""
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    assert line, "edgectl ended"
    return line.decode().split()


class Proc:
    """One child process with its log file."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        f = self.log.open("ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.popen = subprocess.Popen(self.argv, stdout=f, stderr=subprocess.STDOUT, env=env)
        f.close()

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill9(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(5)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.kill9()

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def port_open(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port`` right now."""
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp* writes them) with a LISTEN socket on ``port``:
    ``{"0100007F"}`` is 127.0.0.1 alone."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            addr, hex_port = fields[1].split(":")
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A = LISTEN
                found.add(addr)
    return found


class Cloud:
    """A cloudhub process on free ports, with an edgectl bound to it."""

    def __init__(
        self,
        tmp: Path,
        *,
        ws_port: int | None = None,
        https_port: int | None = None,
        name: str = "cloud",
        extra: list[str] | None = None,
    ):
        self.dir = tmp / name
        self.ws_port = ws_port or free_port()
        self.https_port = https_port or free_port()
        self.proc = Proc(
            "cloudhub",
            [
                PY, "-m", "cloudhub", "serve",
                "--data-dir", str(self.dir),
                "--bind", "127.0.0.1",
                "--ws-port", str(self.ws_port),
                "--https-port", str(self.https_port),
                *(extra or []),
            ],
            tmp / f"cloudhub-{name}.log",
        )  # fmt: skip

    async def start(self) -> None:
        self.proc.start()
        await wait_until(lambda: port_open(self.https_port) and port_open(self.ws_port))

    def edgectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        argv = [PY, "-m", "edgectl", "--server", f"https://127.0.0.1:{self.https_port}"]
        argv += ["--data-dir", str(self.dir), *args]
        res = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
        if check and res.returncode != 0:
            raise AssertionError(f"edgectl {' '.join(args)} failed: {res.stderr.strip()}")
        return res.stdout if check else res.stdout + res.stderr

    def run_edgectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = [PY, "-m", "edgectl", "--server", f"https://127.0.0.1:{self.https_port}"]
        argv += ["--data-dir", str(self.dir), *args]
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)

    def apply(self, manifest: str) -> str:
        return self.edgectl("apply", "-f", "-", stdin=manifest)

    def get_json(self, *args: str) -> Any:
        return json.loads(self.edgectl("get", *args, "-o", "json"))

    def token(self, ttl: str = "1h") -> str:
        return self.edgectl("token", "create", "--ttl", ttl).strip()

    def node_ready(self, node: str) -> bool:
        obj = self.get_json("nodes", node)
        conds = (obj.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


class Edge:
    """An edgecore process: joined once, run and re-run as needed."""

    def __init__(
        self,
        tmp: Path,
        name: str = "edge-1",
        *,
        heartbeat: float = 0.5,
        cloud_ws_port: int | None = None,
        runtime_endpoint: str | None = None,
    ) -> None:
        """``runtime_endpoint``: run pods through that CRI runtime (``--runtime cri``, logs
        under the edge's directory); without it ``--runtime none``, whatever the machine has."""
        self.name = name
        self.runtime_endpoint = runtime_endpoint
        self.dir = tmp / name
        self.api_port = free_port()
        self.mqtt_port = free_port()
        self.heartbeat = heartbeat
        self.cloud_ws_port = cloud_ws_port
        self.proc = Proc(
            name,
            [
                PY, "-m", "edgecore", "run",
                "--data-dir", str(self.dir),
                "--local-api", f"127.0.0.1:{self.api_port}",
                "--heartbeat", str(heartbeat),
                "--mqtt-port", str(self.mqtt_port),
                "--dmi-socket", str(self.dir / "dmi.sock"),
                *(
                    [
                        "--runtime", "cri",
                        "--runtime-endpoint", runtime_endpoint,
                        "--pod-log-dir", str(self.dir / "pod-logs"),
                    ]
                    if runtime_endpoint
                    else ["--runtime", "none"]
                ),
            ],
            tmp / f"{name}.log",
        )  # fmt: skip

    def join(self, cloud: Cloud, token: str | None = None, *, ws_port: int | None = None) -> None:
        target = ws_port or self.cloud_ws_port or cloud.ws_port
        res = subprocess.run(
            [
                PY, "-m", "edgecore", "join",
                "--cloud", f"127.0.0.1:{target}",
                "--token", token or cloud.token(),
                "--node-name", self.name,
                "--cert-port", str(cloud.https_port),
                "--data-dir", str(self.dir),
            ],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        if res.returncode != 0:
            raise AssertionError(f"edgecore join failed: {res.stderr.strip()}")

    async def start(self) -> None:
        self.proc.start()
        await wait_until(lambda: port_open(self.api_port))

    def get(self, path: str) -> tuple[int, Any]:
        """GET on the local API: (status, decoded JSON or text)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}{path}", timeout=2) as r:
                body = r.read().decode()
                status = r.status
        except urllib.error.HTTPError as exc:
            body = exc.read().decode()
            status = exc.code
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body

    def has(self, path: str, rv: str | None = None) -> bool:
        status, obj = self.get(path)
        if status != 200:
            return False
        return rv is None or obj["metadata"]["resourceVersion"] == rv

    def gone(self, path: str) -> bool:
        return self.get(path)[0] == 404


def insecure_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class MakeEdge(Protocol):
    """The ``make_edge`` fixture: starts an :class:`Edge` (keyword arguments as its own)."""

    def __call__(self, name: str = "edge-1", **kw: Any) -> Edge: ...


class Mapper:
    """``python -m devices`` against an edge's broker and local API (all its devices, or one)."""

    def __init__(self, tmp: Path, edge: Edge, device: str | None = None) -> None:
        self.device = device
        only = ["--device", device] if device else []
        self.proc = Proc(
            f"mapper-{device or edge.name}",
            [
                PY, "-m", "devices",
                "--broker", f"mqtt://127.0.0.1:{edge.mqtt_port}",
                "--local-api", f"127.0.0.1:{edge.api_port}",
                *only,
            ],
            tmp / f"mapper-{device or edge.name}.log",
        )  # fmt: skip

    def start(self) -> None:
        self.proc.start()


def twin(device: dict[str, Any], prop: str) -> dict[str, Any]:
    """``status.twins[]`` entry of ``prop`` (empty when absent)."""
    for t in (device.get("status") or {}).get("twins") or []:
        if t.get("propertyName") == prop:
            return t  # type: ignore[no-any-return]
    return {}


class KubeApi:
    """The Kubernetes API emulator as its own process, and kubectl pointed at it."""

    def __init__(self, tmp: Path, *, extra: list[str] | None = None) -> None:
        self.kubeconfig = tmp / "kubeconfig"
        self.proc = Proc(
            "kubeapi",
            [
                PY,
                "-m",
                "tests.support.kubeapi",
                "--kubeconfig",
                str(self.kubeconfig),
                *(extra or []),
            ],
            tmp / "kubeapi.log",
        )

    async def start(self, *, crds: bool = True) -> None:
        self.proc.start()
        await wait_until(lambda: self.kubeconfig.exists() and self.kubeconfig.stat().st_size > 0)
        await wait_until(lambda: self.kubectl("get", "nodes", check=False).returncode == 0)
        # as the README's "From outside the cluster": the CRDs; cloudhub creates the namespace
        if crds:
            self.kubectl("apply", "--validate=false", "-f", str(CRDS))

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {res.stderr.strip()}")
        return res

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)
