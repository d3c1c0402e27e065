"""Modules and the runner that owns their tasks.

A module has a name, a group, an ``enabled`` flag and an ``async run()`` that lives as long as
the process. :class:`Runner` starts each enabled module as a named task, restarts it with
backoff if it crashes (its restart policy), and on :meth:`Runner.stop` cancels every task it
owns and reports the ones that did not finish in time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from hive.backoff import backoff

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestartPolicy:
    """What to do when a module's ``run`` raises."""

    #: restart at all (beehive's default for core modules)
    restart: bool = True
    #: give up after this many consecutive crashes; ``None`` means never
    max_restarts: int | None = None
    #: cap of the delay between restarts, seconds
    cap: float = 30.0


class Module(Protocol):
    """What the runner needs from a module."""

    name: str
    group: str
    enabled: bool

    async def run(self) -> None: ...


class Runner:
    """Owns every background task of one process."""

    def __init__(self, *, stop_timeout: float = 5.0) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stop_timeout = stop_timeout
        self.failed: asyncio.Future[BaseException] | None = None

    def start_module(self, module: Module, policy: RestartPolicy = RestartPolicy()) -> None:
        if not module.enabled:
            log.info("module %s is disabled", module.name)
            return
        self.spawn(module.name, lambda: self._supervise(module, policy))
        log.info("module %s (group %s) started", module.name, module.group)

    def spawn(self, name: str, factory: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Start a named task owned by this runner."""
        if name in self._tasks and not self._tasks[name].done():
            raise ValueError(f"task {name!r} already running")

        async def _wrap() -> None:
            await factory()

        task = asyncio.get_running_loop().create_task(_wrap(), name=name)
        self._tasks[name] = task
        return task

    async def _supervise(self, module: Module, policy: RestartPolicy) -> None:
        delays = backoff(cap=policy.cap)
        crashes = 0
        while True:
            try:
                await module.run()
                log.info("module %s finished", module.name)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                crashes += 1
                log.exception("module %s crashed (%d)", module.name, crashes)
                if not policy.restart or (
                    policy.max_restarts is not None and crashes > policy.max_restarts
                ):
                    raise
                await asyncio.sleep(next(delays))

    async def stop(self) -> None:
        """Cancel every owned task, wait for them, log the ones that hung."""
        tasks = [t for t in self._tasks.values() if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self._stop_timeout)
            for t in pending:
                log.warning("task %s did not stop within %.1fs", t.get_name(), self._stop_timeout)
        self._tasks.clear()
