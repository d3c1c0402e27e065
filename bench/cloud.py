"""The cloudhub process a benchmark drives (:class:`CloudHub`), a client of its admin API
(:class:`Admin`), and the objects the benchmarks apply through it."""

from __future__ import annotations

import json
import logging
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import free_port, launch, port_open, stop_process, wait_for_condition
from bench.measure import proc_status, rss_kib, tree_cpu_seconds, tree_rss_kib

log = logging.getLogger(__name__)


# -- the cloudhub process ---------------------------------------------------------------------


class CloudHub:
    """``python -m cloudhub serve`` on free ports, logging to ``workdir/cloudhub.log``.

    Use as ``async with CloudHub(workdir=...) as hub:``; leaving the block stops it (SIGTERM,
    then SIGKILL after ``stop_grace`` seconds).
    """

    def __init__(
        self,
        *,
        workdir: Path,
        stop_grace: float = 5.0,
        verbose: bool = False,
        extra_args: list[str] | None = None,
    ) -> None:
        self.workdir = workdir
        #: more ``cloudhub serve`` options (e.g. ``--link-workers 0``)
        self.extra_args = list(extra_args or [])
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
            *self.extra_args,
        ]
        self._launch(argv)
        log.info("cloudhub pid %d: wss %d, https %d", self.pid, self.ws_port, self.https_port)

        def up() -> bool:
            if not self.running:
                raise RuntimeError(f"cloudhub exited; see {self.log_path}:\n{self.log_tail()}")
            return (
                (self.data_dir / "admin.token").exists()
                and self.ca_path.exists()
                and port_open(self.https_port)
                and port_open(self.ws_port)
            )

        if not await wait_for_condition(up, timeout=timeout):
            raise RuntimeError(f"cloudhub did not come up in {timeout}s:\n{self.log_tail()}")

    def _launch(self, argv: list[str]) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._popen = launch(argv, self.log_path)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited after ``stop_grace`` seconds."""
        stop_process(self._popen, grace=self.stop_grace, what="cloudhub")

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
        """cloudhub's own process (see :meth:`rss_kib_with_children`)."""
        return rss_kib(self.pid)

    def rss_kib_with_children(self) -> int:
        """cloudhub and its link worker processes, summed (shared pages count repeatedly)."""
        return tree_rss_kib(self.pid)

    def peak_rss_kib(self) -> int:
        return proc_status(self.pid).get("VmHWM", 0)

    def cpu_seconds(self) -> float:
        """CPU of cloudhub and its link worker processes (theirs is cloudhub's work)."""
        return tree_cpu_seconds(self.pid)

    async def __aenter__(self) -> CloudHub:
        try:
            await self.start()
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()


# -- the admin API ----------------------------------------------------------------------------


class Admin:
    """A minimal client of cloudhub's admin API (``/admin/v1/``), over verified TLS."""

    def __init__(self, *, base_url: str, token: str, ca_path: Path, limit: int = 16) -> None:
        ctx = ssl.create_default_context(cafile=str(ca_path))
        self._session = aiohttp.ClientSession(
            base_url=base_url,
            connector=aiohttp.TCPConnector(ssl=ctx, limit=limit),
            headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=120),
            # keeps the fleet page's session cookie, which a default jar refuses from an IP
            cookie_jar=aiohttp.CookieJar(unsafe=True),
        )

    @classmethod
    def for_hub(cls, hub: CloudHub, *, limit: int = 16) -> Admin:
        return cls(base_url=hub.https_url, token=hub.admin_token, ca_path=hub.ca_path, limit=limit)

    async def _call(self, what: str, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """One admin API request with a JSON answer: the answer's body.

        Raises:
            RuntimeError: the server answered with an error status (``what`` names the call).
        """
        async with self._session.request(method, path, json=body) as resp:
            answer: dict[str, Any] = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"{what} failed ({resp.status}): {answer.get('error')}")
            return answer

    async def apply(self, objects: list[dict[str, Any]]) -> dict[str, Any]:
        """POST /admin/v1/apply; the response body (``objects`` and ``actions``).

        Raises:
            RuntimeError: the server answered with an error status.
        """
        return await self._call("apply", "POST", "/admin/v1/apply", {"objects": objects})

    async def apply_body(self, body: bytes) -> None:
        """POST /admin/v1/apply with a ready JSON body (``{"objects": [...]}``); the response
        body is read but only parsed on an error.

        For load generators that share the machine with the server under test: encoding the
        request and decoding the echo of every stored object would cost them CPU the server
        then lacks.

        Raises:
            RuntimeError: the server answered with an error status.
        """
        async with self._session.post(
            "/admin/v1/apply", data=body, headers={"Content-Type": "application/json"}
        ) as resp:
            raw = await resp.read()  # read to the end, so the connection can be reused
            if resp.status != 200:
                try:
                    error = json.loads(raw).get("error")
                except (ValueError, AttributeError):
                    error = raw[:200].decode(errors="replace")
                raise RuntimeError(f"apply failed ({resp.status}): {error}")

    async def create_token(self, *, ttl_seconds: float = 3600.0, node: str | None = None) -> str:
        """POST /admin/v1/tokens: a join token (for a real ``edgecore join``).

        Raises:
            RuntimeError: the server answered with an error status.
        """
        req: dict[str, Any] = {"ttl_seconds": ttl_seconds}
        if node is not None:
            req["node"] = node
        return str((await self._call("token", "POST", "/admin/v1/tokens", req))["token"])

    async def get_text(self, path: str) -> str:
        """GET ``path`` (e.g. ``/metrics``, ``/ui/?token=...``; redirects followed, cookies
        kept) and return the body.

        Raises:
            RuntimeError: the server answered with an error status.
        """
        async with self._session.get(path) as resp:
            text = await resp.text()
            if resp.status != 200:
                raise RuntimeError(f"GET {path} failed ({resp.status}): {text[:200]}")
            return text

    async def apply_batched(self, objects: list[dict[str, Any]], *, batch: int = 500) -> None:
        for i in range(0, len(objects), batch):
            await self.apply(objects[i : i + batch])

    async def list(self, plural: str) -> list[dict[str, Any]]:
        """GET /admin/v1/{plural}: every object of that kind (all namespaces)."""
        items: list[dict[str, Any]] = (await self._call("list", "GET", f"/admin/v1/{plural}")).get(
            "items"
        ) or []
        return items

    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        return await self._call("get", "GET", f"/admin/v1/{plural}/{namespace}/{name}")

    async def delete(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        return await self._call("delete", "DELETE", f"/admin/v1/{plural}/{namespace}/{name}")

    async def close(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> Admin:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def node_object(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}


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
