"""Watches on :mod:`cloudhub.store.embedded`: the ``since`` check and the in-process fan-out.

- **Resuming from history.** ``watch(type, since)`` replays the event log above ``since``
  (the store keeps the last ``history`` writes). A ``since`` older than the kept history, or one
  the store never issued, raises :class:`~wire.errors.Gone`, as a 410 would
  (:func:`check_since`).
- **Live events are fanned out in-process** after each commit (never before: a watcher must
  not see a write that might still roll back; the store calls :meth:`WatchHub.publish` only
  once its transaction has committed). Each watcher has a bounded buffer. A watcher that
  falls ``watch_buffer`` events behind is dropped rather than allowed to grow without bound or
  to block writers: its next read raises :class:`~wire.errors.Gone`, and it must re-list and
  watch again from the list's resourceVersion, exactly as after a 410 from Kubernetes.

Watchers must not modify the objects they are handed (as with a Kubernetes informer's
cache). The first watcher of a type is handed the dict an apply encoded the body from (a JSON
decode less per write, the largest single cost of a watch), which the store also keeps, read
only, to compare the next apply of that object against; any other watcher, and every status
write, decodes the JSON text when it reads the event. A lagging first watcher therefore
buffers dicts rather than text: at most ``watch_buffer`` of them, which the binding index it
feeds holds anyway once it catches up.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any

from cloudhub.store.base import EventType
from wire.errors import Gone

# The store's logger: these records keep the name they have always had.
log = logging.getLogger("cloudhub.store.embedded")

#: (type, rv, event type, JSON body): committed events as the store logs and publishes them
Events = list[tuple[str, int, EventType, str]]
#: (rv, event type, JSON body, the dict the body was encoded from or None): one buffered event
Pending = tuple[int, EventType, str, dict[str, Any] | None]


class Watcher:
    """One watch's buffer of committed events not yet read (:data:`Pending`).

    Each event carries its JSON text and, for the first watcher of an applied object, the
    dict it was encoded from (see the module notes).
    """

    __slots__ = ("closed", "limit", "overflowed", "pending", "type", "wakeup")

    def __init__(self, type: str, limit: int) -> None:
        self.type = type
        self.limit = limit
        self.pending: deque[Pending] = deque()
        self.overflowed = False
        self.closed = False
        self.wakeup = asyncio.Event()

    def offer(self, item: Pending) -> bool:
        """Buffer one event; ``False`` (and marked overflowed) when the buffer is full."""
        if len(self.pending) >= self.limit:
            self.overflowed = True
            self.pending.clear()
            self.wakeup.set()
            return False
        self.pending.append(item)
        self.wakeup.set()
        return True

    async def next(self) -> Pending | None:
        """The next buffered event, waiting for one; ``None`` once the store is closed.

        Raises:
            Gone: the watcher fell more than ``limit`` events behind and was dropped.
        """
        while True:
            if self.overflowed:
                raise Gone(
                    f"watch on {self.type} fell more than {self.limit} events behind; re-list"
                )
            if self.pending:
                return self.pending.popleft()
            if self.closed:
                return None
            self.wakeup.clear()
            await self.wakeup.wait()


class WatchHub:
    """The live watchers of each type, and the hand-off of committed events to them."""

    def __init__(self, buffer: int) -> None:
        """``buffer``: events a watcher may lag before it is dropped with Gone."""
        self.buffer = buffer
        self._watchers: dict[str, set[Watcher]] = {}

    def register(self, type: str) -> Watcher:
        """A new watcher of ``type``, receiving every event published from now on."""
        watcher = Watcher(type, self.buffer)
        self._watchers.setdefault(type, set()).add(watcher)
        return watcher

    def unregister(self, watcher: Watcher) -> None:
        """Stop feeding ``watcher`` (no-op if it was dropped or the hub closed)."""
        watchers = self._watchers.get(watcher.type)
        if watchers is not None:
            watchers.discard(watcher)

    def publish(
        self, events: Events, written: Sequence[dict[str, Any] | None] | None = None
    ) -> None:
        """Hand committed events to the watchers of their type (never blocks).

        ``written`` (optional, one per event): the dict the event's body was encoded from,
        which nothing modifies any more. The first watcher of the type takes it instead of
        decoding the body; any other decodes its own.
        """
        for index, (type, rv, event_type, body) in enumerate(events):
            watchers = self._watchers.get(type)
            if not watchers:
                continue
            obj = None if written is None else written[index]
            for watcher in list(watchers):
                offered, obj = obj, None
                if not watcher.offer((rv, event_type, body, offered)):
                    watchers.discard(watcher)
                    log.warning(
                        "a watch on %s fell %d events behind and was dropped (it must re-list)",
                        type,
                        self.buffer,
                    )

    def close(self) -> None:
        """End every watch: each iterator stops once it has read what is buffered."""
        for watchers in self._watchers.values():
            for watcher in watchers:
                watcher.closed = True
                watcher.wakeup.set()
        self._watchers.clear()


def check_since(since: str, rv: int, compacted: int) -> int:
    """The resourceVersion a watch from ``since`` starts after (``""``: the current ``rv``).

    Raises:
        Gone: ``since`` is not a resourceVersion this store issued, or is older than the kept
            history (``compacted``: every event at or below it was trimmed).
    """
    start = rv if since == "" else _parse_rv(since)
    if start is None or start > rv:
        raise Gone(f"resourceVersion {since!r} was not issued by this store; re-list")
    if start < compacted:
        raise Gone(
            f"resourceVersion {since} is older than the kept history (from {compacted}); re-list"
        )
    return start


def _parse_rv(value: str) -> int | None:
    try:
        rv = int(value)
    except ValueError:
        return None
    return rv if rv >= 0 else None
