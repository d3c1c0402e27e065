"""When each of many leases is next renewed: one pass per period for all of them, not a timer each.

A replica renews a Lease per connected node (its ownership, and the node's heartbeat). With a
task per node, every renewal is its own wake-up of the event loop; with one
:class:`RenewalSchedule` per kind of lease, the renewals due at about the same time go out
together, concurrently, in one pass. Keys due within half a period of the earliest are
renewed early, with it, so after one period the whole fleet is renewed in one pass per
period however the connections were spread.

The schedule is pure: times are the caller's (monotonic) clock. :func:`wait_due` is the one
sleep both passes (ownership, node heartbeats) share.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator


class RenewalSchedule:
    """The time each key is next due for renewal."""

    def __init__(self, *, every: float) -> None:
        """Args:
        every: seconds between two renewals of one key.
        """
        self.every = every
        self._due: dict[str, float] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._due

    def __len__(self) -> int:
        return len(self._due)

    def __iter__(self) -> Iterator[str]:
        return iter(self._due)

    def add(self, key: str, *, at: float) -> None:
        """Renew ``key`` at ``at`` (a key already here is moved)."""
        self._due[key] = at

    def discard(self, key: str) -> None:
        self._due.pop(key, None)

    def renewed(self, key: str, now: float) -> None:
        """``key`` was renewed at ``now``: next due a period later (if still scheduled)."""
        if key in self._due:
            self._due[key] = now + self.every

    def next_at(self) -> float | None:
        """When the earliest key is due; None if there is none."""
        return min(self._due.values(), default=None)

    def take_due(self, now: float) -> list[str]:
        """The keys to renew in a pass at ``now``: none unless one is due; then every key due
        within half a period (renewed early rather than waking the loop again soon)."""
        earliest = self.next_at()
        if earliest is None or earliest > now:
            return []
        horizon = now + self.every / 2
        return [key for key, at in self._due.items() if at <= horizon]


async def wait_due(schedule: RenewalSchedule, wake: asyncio.Event) -> list[str]:
    """Sleep until keys of ``schedule`` are due (or ``wake`` is set and some are); take them."""
    while True:
        now = time.monotonic()
        due = schedule.take_due(now)
        if due:
            return due
        wake.clear()
        next_at = schedule.next_at()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(None if next_at is None else next_at - now):
                await wake.wait()
