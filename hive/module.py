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

#: seconds a module must run before a crash counts as a new failure rather than the same one
STABLE_AFTER = 60.0


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
        #: modules that crashed more often than their policy allows, with the last error
        self.gave_up: dict[str, BaseException] = {}

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
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await module.run()
                log.info("module %s finished", module.name)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if loop.time() - started > STABLE_AFTER:
                    # it ran fine for a while: this is a new failure, not the same one again
                    crashes, delays = 0, backoff(cap=policy.cap)
                crashes += 1
                log.exception("module %s crashed (%d)", module.name, crashes)
                if not policy.restart or (
                    policy.max_restarts is not None and crashes > policy.max_restarts
                ):
                    log.error("module %s: giving up after %d crashes", module.name, crashes)
                    self.gave_up[module.name] = exc
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
        # hung tasks stay owned (and listed) so a second stop() can try again
        self._tasks = {n: t for n, t in self._tasks.items() if not t.done()}
