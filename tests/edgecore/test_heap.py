"""glibc heap tuning of ``edgecore run``: arenas capped, the first sync's garbage returned."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from edgecore import heap

pytestmark = pytest.mark.timeout(10)


def test_limit_and_trim_are_safe_to_call() -> None:
    """Capping arenas and trimming work (or do nothing off glibc) without raising."""
    heap.limit_arenas()
    heap.trim()


async def test_trim_waits_for_the_link_then_for_the_cache_to_go_quiet() -> None:
    """Nothing happens before the link is up; then it returns once commits stop changing."""
    connected = asyncio.Event()
    counter = itertools.count()
    busy = True
    task = asyncio.create_task(
        heap.trim_after_sync(connected, lambda: next(counter) if busy else 0, quiet=0.02)
    )
    await asyncio.sleep(0.05)
    assert not task.done()
    connected.set()
    await asyncio.sleep(0.1)
    assert not task.done()  # still committing
    busy = False
    async with asyncio.timeout(2):
        await task


async def test_trim_gives_up_waiting_for_quiet_after_the_limit() -> None:
    """A cache that never goes quiet is trimmed anyway once ``limit`` has passed."""
    connected = asyncio.Event()
    connected.set()
    counter = itertools.count()
    async with asyncio.timeout(2):
        await heap.trim_after_sync(connected, lambda: next(counter), quiet=0.02, limit=0.1)
