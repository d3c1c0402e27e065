"""The runner starts modules as named tasks, restarts crashed ones, and stops them all."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import pytest

from hive.module import Module, RestartPolicy, Runner

#: restarts without waiting: the backoff is capped at 10 ms
FAST = RestartPolicy(cap=0.01)


class FakeModule:
    """Crashes ``crashes`` times, then either returns or runs until cancelled."""

    def __init__(
        self, name: str, *, crashes: int = 0, finish: bool = False, enabled: bool = True
    ) -> None:
        self.name = name
        self.group = "test"
        self.enabled = enabled
        self.crashes = crashes
        self.finish = finish
        self.runs = 0
        self.cancelled = False

    async def run(self) -> None:
        self.runs += 1
        if self.runs <= self.crashes:
            raise RuntimeError(f"{self.name} crash {self.runs}")
        if self.finish:
            return
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def wait_for(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Poll ``condition`` until it holds, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def _waiter(event: asyncio.Event) -> Callable[[], Awaitable[None]]:
    async def wait() -> None:
        await event.wait()

    return wait


def _task(name: str) -> asyncio.Task[object] | None:
    return next((t for t in asyncio.all_tasks() if t.get_name() == name), None)


def test_fake_module_satisfies_the_protocol() -> None:
    """The test double has the shape the runner expects."""
    module: Module = FakeModule("m")
    assert module.name == "m"


def test_restart_policy_defaults() -> None:
    """By default a crashed module is restarted forever with delays capped at 30 s."""
    policy = RestartPolicy()
    assert policy.restart is True
    assert policy.max_restarts is None
    assert policy.cap == 30.0


async def test_spawn_starts_a_named_task() -> None:
    """spawn() runs the coroutine in a task carrying the given name."""
    runner = Runner()
    ran = asyncio.Event()

    async def job() -> None:
        ran.set()

    task = runner.spawn("job", job)
    assert task.get_name() == "job"
    await asyncio.wait_for(ran.wait(), 1.0)
    await task
    await runner.stop()


async def test_spawn_refuses_a_name_still_running() -> None:
    """Two live tasks cannot share a name; once the first is done the name is free."""
    runner = Runner()
    gate = asyncio.Event()
    first = runner.spawn("job", _waiter(gate))
    with pytest.raises(ValueError, match="already running"):
        runner.spawn("job", _waiter(gate))
    gate.set()
    await first
    second = runner.spawn("job", _waiter(gate))
    await second
    await runner.stop()


async def test_module_runs_in_a_task_named_after_it() -> None:
    """start_module runs an enabled module in a task named like the module."""
    runner = Runner()
    module = FakeModule("metaManager")
    runner.start_module(module)
    await wait_for(lambda: module.runs == 1)
    assert _task("metaManager") is not None
    await runner.stop()


async def test_disabled_module_is_not_started(caplog: pytest.LogCaptureFixture) -> None:
    """A module with enabled=False never runs and gets no task; the skip is logged."""
    runner = Runner()
    module = FakeModule("edged", enabled=False)
    with caplog.at_level(logging.INFO, logger="hive.module"):
        runner.start_module(module)
    for _ in range(5):
        await asyncio.sleep(0)
    assert module.runs == 0
    assert _task("edged") is None
    assert "edged is disabled" in caplog.text
    await runner.stop()


async def test_crashed_module_is_restarted() -> None:
    """A module that raises is run again, and keeps running once it stops crashing."""
    runner = Runner()
    module = FakeModule("twin", crashes=3)
    runner.start_module(module, FAST)
    await wait_for(lambda: module.runs == 4)
    task = _task("twin")
    assert task is not None and not task.done()
    await runner.stop()
    assert module.cancelled


async def test_crash_is_logged_with_its_count(caplog: pytest.LogCaptureFixture) -> None:
    """Each crash is logged with the module name and how many crashes so far."""
    runner = Runner()
    module = FakeModule("twin", crashes=2)
    with caplog.at_level(logging.ERROR, logger="hive.module"):
        runner.start_module(module, FAST)
        await wait_for(lambda: module.runs == 3)
    assert "module twin crashed (1)" in caplog.text
    assert "module twin crashed (2)" in caplog.text
    await runner.stop()


async def test_gives_up_after_max_restarts() -> None:
    """With max_restarts=2 a module that always crashes runs 3 times, then its task fails."""
    runner = Runner()
    module = FakeModule("eventbus", crashes=1000)
    runner.start_module(module, RestartPolicy(max_restarts=2, cap=0.01))
    task = _task("eventbus")
    assert task is not None
    with pytest.raises(RuntimeError, match="crash 3"):
        await asyncio.wait_for(task, 2.0)
    assert module.runs == 3
    await runner.stop()


async def test_no_restart_policy_fails_on_first_crash() -> None:
    """With restart=False the first crash ends the module's task with the error."""
    runner = Runner()
    module = FakeModule("edgehub", crashes=1)
    runner.start_module(module, RestartPolicy(restart=False))
    task = _task("edgehub")
    assert task is not None
    with pytest.raises(RuntimeError, match="crash 1"):
        await asyncio.wait_for(task, 2.0)
    assert module.runs == 1
    await runner.stop()


async def test_module_that_returns_is_not_restarted() -> None:
    """A run() that returns normally ends the module; it is not run again."""
    runner = Runner()
    module = FakeModule("oneshot", finish=True)
    runner.start_module(module, FAST)
    task = _task("oneshot")
    assert task is not None
    await asyncio.wait_for(task, 2.0)
    assert module.runs == 1
    await runner.stop()


async def test_stop_cancels_every_task() -> None:
    """stop() cancels modules and spawned tasks alike and waits for them."""
    runner = Runner()
    modules = [FakeModule("a"), FakeModule("b")]
    for m in modules:
        runner.start_module(m)
    extra = runner.spawn("extra", _waiter(asyncio.Event()))
    await wait_for(lambda: all(m.runs == 1 for m in modules))
    await runner.stop()
    assert all(m.cancelled for m in modules)
    assert extra.cancelled()
    assert _task("a") is None and _task("b") is None


async def test_stop_interrupts_a_restart_delay() -> None:
    """A module waiting to be restarted is stopped at once, not after its backoff."""
    runner = Runner(stop_timeout=1.0)
    module = FakeModule("slow", crashes=1000)
    runner.start_module(module, RestartPolicy(cap=30.0))
    await wait_for(lambda: module.runs == 1)
    started = time.monotonic()
    await runner.stop()
    assert time.monotonic() - started < 0.2
    assert _task("slow") is None


async def test_stop_reports_tasks_that_do_not_finish(caplog: pytest.LogCaptureFixture) -> None:
    """A task that ignores cancellation is logged by name after stop_timeout."""
    runner = Runner(stop_timeout=0.1)
    release = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()

    task = runner.spawn("stubborn", stubborn)
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="hive.module"):
        await runner.stop()
    assert "task stubborn did not stop within 0.1s" in caplog.text
    release.set()
    await asyncio.wait_for(task, 1.0)


async def test_stop_with_nothing_running_returns() -> None:
    """stop() on an idle runner, or twice, is harmless."""
    runner = Runner()
    await runner.stop()
    await runner.stop()
