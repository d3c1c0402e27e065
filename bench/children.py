"""The driver's side of a bench's child processes: JSON lines in (commands), JSON lines out
(events). A child is the bench script itself started with its worker flag."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class Child:
    """A bench child process talking JSON lines (stdin commands, stdout events).

    ``progress`` events only update :attr:`progress` (the latest); the rest queue for
    :meth:`expect`.
    """

    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name = name
        self.proc = proc
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.progress: dict[str, Any] = {}
        self._reader = asyncio.create_task(self._read(), name=f"read:{name}")

    @classmethod
    async def spawn(cls, name: str, script: Path, argv: list[str]) -> Child:
        """Start ``python script *argv`` with pipes to and from it."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,
        )
        return cls(name, proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                await self.events.put({"ev": "eof"})
                return
            event = json.loads(line)
            if event.get("ev") == "progress":
                self.progress = event
            else:
                await self.events.put(event)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, cmd: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())

    async def expect(self, ev: str, timeout: float, *, phase: str | None = None) -> dict[str, Any]:
        """The next event named ``ev`` (for ``phase``, if given); others are skipped.

        Raises:
            TimeoutError: none within ``timeout``.
            RuntimeError: the child exited.
        """
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no {ev!r} within {timeout:.0f}s")
            event = await asyncio.wait_for(self.events.get(), left)
            if event.get("ev") == ev and (phase is None or event.get("phase") == phase):
                return event
            if event.get("ev") == "eof":
                raise RuntimeError(f"{self.name} exited (code {await self.proc.wait()})")
            log.debug("%s: skipping %s while waiting for %s", self.name, event.get("ev"), ev)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, BrokenPipeError, ConnectionResetError):
                self.send({"cmd": "exit"})
                if self.proc.stdin is not None:
                    self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        self._reader.cancel()


async def gather_events(children: list[Child], ev: str, timeout: float) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(c.expect(ev, timeout) for c in children)))
