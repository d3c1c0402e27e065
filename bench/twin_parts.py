"""Driver-side parts of ``bench/twin_throughput.py``: the edge process and the lag poller.

:class:`EdgeCore` joins and runs a real edgecore with its internal mosquitto; :class:`LagPoller`
samples devices from the admin API to time when the cloud shows a reported value. The names
and payload shared with the worker side (``bench/twin_workers.py``) live here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.cloud import Admin, CloudHub
from bench.common import REPO_ROOT, free_port, launch, port_open, stop_process, wait_for_condition

log = logging.getLogger(__name__)

NAMESPACE = "default"
NODE = "bench-edge"
MODEL = "bench-thermometer"
PROPERTY = "temperature"
RAW_TOPIC = "bench/raw"


def update_payload(event_id: str, value: float, now_ms: int) -> bytes:
    """A mapper's report, as KubeEdge's mappers write it (value as a string, type in metadata).

    Hand-built: the clients share the CPU with what they measure.
    """
    return (
        f'{{"event_id":"{event_id}","timestamp":{now_ms},"twin":{{"{PROPERTY}":'
        f'{{"actual":{{"value":"{value:.6f}","metadata":{{"timestamp":{now_ms}}}}},'
        f'"metadata":{{"type":"float"}}}}}}}}'
    ).encode()


# =============================================================================================
# driver side: the edge process, machine counters
# =============================================================================================


class EdgeCore:
    """``python -m edgecore join`` then ``run`` with the internal mosquitto on a free port."""

    def __init__(
        self,
        *,
        workdir: Path,
        node: str,
        stop_grace: float = 10.0,
        extra_args: list[str] | None = None,
    ) -> None:
        self.node = node
        #: more ``edgecore run`` options (e.g. ``--runtime cri --runtime-endpoint URL``);
        #: without ``--runtime`` pods stay metadata, whatever runtime the machine has
        self.extra_args = list(extra_args or [])
        if "--runtime" not in self.extra_args:
            self.extra_args += ["--runtime", "none"]
        self.data_dir = workdir / "edge"
        self.log_path = workdir / "edgecore.log"
        self.api_port = free_port()
        self.mqtt_port = free_port()
        self.stop_grace = stop_grace
        self._popen: subprocess.Popen[bytes] | None = None
        self._broker_pid: int | None = None

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise RuntimeError("edgecore is not started")
        return self._popen.pid

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def db_path(self) -> Path:
        return self.data_dir / "edgecore.db"

    def join(self, *, hub: CloudHub, token: str, ws_port: int | None = None) -> None:
        """Join ``hub`` (its edge port, or ``ws_port``: a proxy in front of it)."""
        res = subprocess.run(
            [
                sys.executable, "-m", "edgecore", "join",
                "--cloud", f"127.0.0.1:{ws_port or hub.ws_port}",
                "--token", token,
                "--node-name", self.node,
                "--cert-port", str(hub.https_port),
                "--data-dir", str(self.data_dir),
            ],
            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
        )  # fmt: skip
        if res.returncode != 0:
            raise RuntimeError(f"edgecore join failed: {res.stderr.strip()}")

    async def join_with(self, admin: Admin, hub: CloudHub) -> None:
        """Join ``hub`` with a fresh token that ``admin`` issues for this node alone (the join
        runs in a thread: it waits for ``edgecore join`` to finish)."""
        token = await admin.create_token(ttl_seconds=600, node=self.node)
        await asyncio.to_thread(self.join, hub=hub, token=token)

    async def start(self, *, timeout: float = 30.0) -> None:
        argv = [
            sys.executable, "-m", "edgecore", "run",
            "--data-dir", str(self.data_dir),
            "--local-api", f"127.0.0.1:{self.api_port}",
            "--mqtt-port", str(self.mqtt_port),
            *self.extra_args,
        ]  # fmt: skip
        self._launch(argv)
        log.info("edgecore pid %d: local API %d, mqtt %d", self.pid, self.api_port, self.mqtt_port)

        def up() -> bool:
            if not self.running:
                raise RuntimeError(f"edgecore exited:\n{self.log_tail()}")
            return port_open(self.api_port) and port_open(self.mqtt_port)

        if not await wait_for_condition(up, timeout=timeout):
            raise RuntimeError(f"edgecore did not come up in {timeout}s:\n{self.log_tail()}")
        self._broker_pid = self._find_broker()

    def _launch(self, argv: list[str]) -> None:
        self._popen = launch(argv, self.log_path)

    def _find_broker(self) -> int | None:
        """The pid of edgecore's mosquitto (a child process running mosquitto)."""
        text = ""
        for children in Path(f"/proc/{self.pid}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                text += " " + children.read_text()
        for pid in (int(p) for p in text.split()):
            with contextlib.suppress(OSError):
                if b"mosquitto" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
        return None

    @property
    def broker_pid(self) -> int | None:
        return self._broker_pid

    def kill9(self) -> None:
        """SIGKILL edgecore (a crash); its mosquitto is left to the next start to replace."""
        p = self._popen
        if p is not None and p.poll() is None:
            p.kill()
            p.wait(5)

    def find_broker(self) -> int | None:
        """The pid of edgecore's mosquitto now (edgecore restarts it when it dies)."""
        self._broker_pid = self._find_broker()
        return self._broker_pid

    def stop(self) -> None:
        stop_process(self._popen, grace=self.stop_grace, what="edgecore")
        # edgecore stops its mosquitto; should it not have, stop that one process too
        bp = self._broker_pid
        if bp is not None and Path(f"/proc/{bp}").exists():
            with contextlib.suppress(OSError):
                if b"mosquitto" in Path(f"/proc/{bp}/cmdline").read_bytes():
                    os.kill(bp, signal.SIGKILL)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def outbox_rows(self) -> int:
        """Rows in the twin's outbox (committed, not yet ACKed by the cloud); -1 if unreadable."""
        try:
            with contextlib.closing(
                sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=1.0)
            ) as db:
                row = db.execute("SELECT count(*) FROM outbox").fetchone()
                return int(row[0])
        except sqlite3.Error:
            return -1


# =============================================================================================
# driver side: the visibility-lag poller
# =============================================================================================


class LagPoller:
    """GETs sampled devices from the admin API; records (value sent, first seen) pairs."""

    def __init__(self, *, admin: Admin, devices: list[str], epoch: float, interval: float) -> None:
        self.admin = admin
        self.devices = devices
        self.epoch = epoch
        self.interval = interval
        #: (wall time the value was published, wall time the cloud first showed it)
        self.samples: list[tuple[float, float]] = []
        self.requests = 0
        self.errors = 0
        #: device -> wall time the poller last saw a new value
        self._latest: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for i, name in enumerate(self.devices):
            offset = self.interval * i / max(1, len(self.devices))
            self._tasks.append(asyncio.create_task(self._poll(name, offset), name=f"poll:{name}"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def latest(self) -> dict[str, float]:
        return dict(self._latest)

    async def _poll(self, name: str, offset: float) -> None:
        await asyncio.sleep(offset)
        last: str | None = None
        next_at = time.monotonic()
        while True:
            try:
                obj = await self.admin.get("devices", NAMESPACE, name)
            except Exception:
                self.errors += 1
                obj = {}
            seen = time.time()
            self.requests += 1
            value = reported_value(obj)
            if value is not None and value != last:
                if last is not None:  # the first look tells nothing about when it arrived
                    with contextlib.suppress(ValueError):
                        self.samples.append((self.epoch + float(value), seen))
                last = value
                self._latest[name] = seen
            next_at += self.interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if next_at < time.monotonic() - 1.0:
                next_at = time.monotonic()  # fell far behind: do not burst to catch up


def reported_value(obj: dict[str, Any]) -> str | None:
    for t in (obj.get("status") or {}).get("twins") or []:
        if t.get("propertyName") == PROPERTY:
            v = (t.get("reported") or {}).get("value")
            return v if isinstance(v, str) else None
    return None
