"""The Kubernetes API emulator side of ``bench/k8s_mirror.py``.

The emulator runs in its own process (``bench/k8s_mirror.py --serve-emulator``,
:func:`serve_emulator`), counting every request and every byte it writes per client (the
bench's own requests carry :data:`BENCH_UA`; anything else is cloudhub's) and serving the counts
at :data:`STATS_PATH`. :class:`EmulatorProcess` starts and stops it from the driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from bench.common import launch, stop_process, wait_for_condition

log = logging.getLogger(__name__)

#: the benchmark script; the emulator process is that script with ``--serve-emulator``
SCRIPT = Path(__file__).resolve().with_name("k8s_mirror.py")
#: the User-Agent of every request the bench makes; anything else is cloudhub's
BENCH_UA = "edgebridge-bench"
STATS_PATH = "/_bench/stats"


# -- the emulator process -----------------------------------------------------------------------


def _transport_counter(transport: Any, counter: Counter[str], client: str) -> bool:
    """Count every byte written to ``transport`` into ``counter[client]``.

    Wrapping the transport's own write methods counts headers, chunk framing and the
    streamed watch events alike, which no response object sees whole. Returns False when the
    transport does not allow it (then bytes out are not measured).
    """
    if getattr(transport, "_bench_counted", False):
        return True
    write = transport.write
    writelines = transport.writelines

    def counted_write(data: Any) -> None:
        counter[client] += memoryview(data).nbytes
        write(data)

    def counted_writelines(chunks: Any) -> None:
        chunks = list(chunks)
        counter[client] += sum(memoryview(c).nbytes for c in chunks)
        writelines(chunks)

    try:
        transport.write = counted_write
        transport.writelines = counted_writelines
        transport._bench_counted = True
    except AttributeError:
        return False
    return True


async def serve_emulator(kubeconfig: Path, bookmark_interval: float) -> None:
    """Run the emulator with request and byte accounting until SIGTERM/SIGINT."""
    # Imported here: only the emulator process needs the test support package.
    from tests.support.kubeapi import KubeApiEmulator
    from tests.support.kubeapi_state import ApiError

    class BenchEmulator(KubeApiEmulator):
        """The emulator, plus per-client counters and ``GET /_bench/stats``."""

        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            #: (client, verb, path) -> [requests, request bytes]
            self.bench_requests: dict[tuple[str, str, str], list[int]] = {}
            self.bytes_out: Counter[str] = Counter()
            self.bytes_out_measured = True

        async def _dispatch(self, request: web.Request) -> web.StreamResponse:
            if request.path == STATS_PATH:
                return web.json_response(self._stats())
            client = "bench" if request.headers.get("User-Agent", "") == BENCH_UA else "cloudhub"
            if request.transport is not None and not _transport_counter(
                request.transport, self.bytes_out, client
            ):
                self.bytes_out_measured = False
            path = request.path.rstrip("/") or "/"
            key = (client, self._bench_verb(request, path), path)
            size = len(request.method) + len(request.raw_path) + len(" HTTP/1.1\r\n") + 1
            size += sum(len(k) + len(v) + 4 for k, v in request.raw_headers) + 2
            size += request.content_length or 0
            entry = self.bench_requests.setdefault(key, [0, 0])
            entry[0] += 1
            entry[1] += size
            return await super()._dispatch(request)

        def _bench_verb(self, request: web.Request, path: str) -> str:
            # The emulator's own verb rule (tests.support.kubeapi._verb), restated so the
            # count is taken before a watch starts streaming.
            if request.method != "GET":
                verbs = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
                return verbs.get(request.method, request.method.lower())
            try:
                target = self._parse(path)
            except ApiError:
                return "get"
            if target is not None and target[2] is None:
                return "watch" if request.query.get("watch") in ("1", "true") else "list"
            return "get"

        def _stats(self) -> dict[str, Any]:
            return {
                "time": time.time(),
                "requests": [[*k, n, b] for k, (n, b) in self.bench_requests.items()],
                "bytes_out": dict(self.bytes_out),
                "bytes_out_measured": self.bytes_out_measured,
                "bookmarks": self.bookmarks_sent,
                "open_watches": self.open_watches,
            }

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with BenchEmulator(bookmark_interval=bookmark_interval) as api:
        api.install_edgebridge()
        tmp = kubeconfig.with_suffix(".tmp")
        api.write_kubeconfig(tmp)
        os.replace(tmp, kubeconfig)  # whole or absent: the parent polls for it
        print(api.url, flush=True)
        await stop.wait()


class EmulatorProcess:
    """``bench/k8s_mirror.py --serve-emulator``, logging to ``workdir/kubeapi.log``."""

    def __init__(self, *, workdir: Path, bookmark_interval: float) -> None:
        self.kubeconfig = workdir / "kubeconfig"
        self.log_path = workdir / "kubeapi.log"
        self.bookmark_interval = bookmark_interval
        self._popen: subprocess.Popen[bytes] | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        return self._popen.pid if self._popen is not None else 0

    def _launch(self) -> None:
        argv = [sys.executable, str(SCRIPT), "--serve-emulator",
                "--kubeconfig", str(self.kubeconfig),
                "--bookmark-interval", str(self.bookmark_interval)]  # fmt: skip
        self._popen = launch(argv, self.log_path)

    async def start(self, *, timeout: float = 20.0) -> None:
        """Start it and wait for its kubeconfig.

        Raises:
            RuntimeError: it exited or did not come up in time.
        """
        self._launch()
        popen = self._popen
        assert popen is not None

        def up() -> bool:
            if popen.poll() is not None:
                raise RuntimeError(f"the emulator exited; see {self.log_path}")
            return self.kubeconfig.exists()

        if not await wait_for_condition(up, timeout=timeout):
            raise RuntimeError(f"the emulator did not come up in {timeout}s")
        config = yaml.safe_load(self.kubeconfig.read_text())
        self.url = str(config["clusters"][0]["cluster"]["server"])
        log.info("kubernetes API emulator pid %d at %s", self.pid, self.url)

    def stop(self) -> None:
        stop_process(self._popen)
