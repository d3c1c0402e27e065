"""Follow one type of a store: list, then watch from the list's resourceVersion, forever.

A watch that ends or expires (:class:`~wire.errors.Gone`) is followed by a re-list; a store
that fails is retried after a jittered, capped backoff. (A store's watch resumes by itself
where it can: the Kubernetes store reopens an ended stream from the newest version it saw
and ends the watch only on 410 Gone; see :mod:`cloudhub.k8s.resume`.) The caller sees a
re-list as a fresh ``listed`` call with every object (it diffs against what it holds) and
each watch event as it comes.

**One list and watch per type, however many follow it** (an informer, as client-go shares
them). Several modules follow the same types (the edgecontroller and fleet both follow pods,
nodes and devices); each with its own watch would have the store (the API server, in
Kubernetes mode) send, and cloudhub decode and hold, every change once per follower. So the
followers of one (store, type) share one list+watch: it is run by one of them (the first;
when it stops, another takes over and re-lists for all), and every follower gets the same
``listed`` objects and the same events, in order, one follower after the other. The objects
are shared between followers and must not be modified (as the store's own watchers already
promise). A follower that joins while the watch runs (not while it lists) lists for itself,
buffering the shared events meanwhile and then replaying them: it may see a change it
already has from its list again, never miss one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from cloudhub.store.base import ObjectStore, WatchEvent
from hive.backoff import backoff
from wire.errors import Gone, StoreError, WireError

log = logging.getLogger(__name__)

Listed = Callable[[list[dict[str, Any]]], Awaitable[None]]
Changed = Callable[[WatchEvent], Awaitable[None]]
Failed = Callable[[], Awaitable[None]]

#: what a failing store or follower raises; the list+watch is retried after a backoff
_RETRIED = (StoreError, WireError, OSError)


async def follow(
    store: ObjectStore,
    typ: str,
    *,
    listed: Listed,
    changed: Changed,
    failed: Failed | None = None,
    who: str = "",
) -> None:
    """Call ``listed`` with every object of ``typ``, then ``changed`` per change; never returns.

    ``failed`` runs when the store fails, before the backoff's wait (a caller may hand on
    what it holds rather than keep it through the wait); ``who`` names the follower in logs.
    """
    key = (id(store), typ)
    shared = _SHARED.get(key)
    if shared is None:
        shared = _SHARED[key] = _Shared(store, typ)
    try:
        await shared.run(_Follower(listed, changed, failed, who))
    finally:
        if not shared.followers and _SHARED.get(key) is shared:
            del _SHARED[key]


@dataclass(eq=False)
class _Follower:
    listed: Listed
    changed: Changed
    failed: Failed | None
    who: str
    #: events held while this follower lists for itself (None: live)
    buffer: list[WatchEvent] | None = field(default=None)


class _Shared:
    """The one list+watch of one type of one store, and who follows it."""

    def __init__(self, store: ObjectStore, typ: str) -> None:
        self.store = store
        self.typ = typ
        self.followers: list[_Follower] = []
        self._pumping = False
        #: the running list+watch is listing: who joins now is in the listing it hands out
        self._listing = False
        self._vacated = asyncio.Event()

    async def run(self, me: _Follower) -> None:
        try:
            if self._pumping and not self._listing:
                await self._join_late(me)
            else:
                self.followers.append(me)
            while True:
                if not self._pumping:
                    self._pumping = True
                    try:
                        await self._pump()
                    finally:
                        self._pumping = False
                        vacated, self._vacated = self._vacated, asyncio.Event()
                        vacated.set()  # another follower takes over (and re-lists)
                else:
                    await self._vacated.wait()
        finally:
            if me in self.followers:
                self.followers.remove(me)

    async def _join_late(self, me: _Follower) -> None:
        """List for ``me`` alone while the shared watch's events are buffered for it."""
        me.buffer = []
        self.followers.append(me)
        delays = backoff(cap=10.0)
        while True:
            try:
                objects, _rv = await self.store.list(self.typ)
                await me.listed(objects)
                break
            except _RETRIED as exc:
                delay = next(delays)
                log.warning(
                    "%slisting %s failed: %s; retrying in %.1fs", _p(me), self.typ, exc, delay
                )
                await asyncio.sleep(delay)
        while me.buffer:
            held, me.buffer = me.buffer, []
            for event in held:
                await me.changed(event)
        me.buffer = None

    async def _pump(self) -> None:
        """List and watch for every follower, forever (until the running follower stops)."""
        delays = backoff(cap=10.0)
        prefix = ", ".join(f.who for f in self.followers if f.who)
        prefix = f"{prefix}: " if prefix else ""
        while True:
            try:
                self._listing = True
                try:
                    objects, rv = await self.store.list(self.typ)
                finally:
                    self._listing = False
                for f in list(self.followers):
                    if f.buffer is None:
                        await f.listed(objects)
                delays = backoff(cap=10.0)
                async for event in self.store.watch(self.typ, rv):
                    for f in list(self.followers):
                        if f.buffer is None:
                            await f.changed(event)
                        else:
                            f.buffer.append(event)
                log.warning("%swatch of %s ended; re-listing", prefix, self.typ)
            except Gone:
                log.info("%swatch of %s expired (410 Gone); re-listing", prefix, self.typ)
            except _RETRIED as exc:
                for f in list(self.followers):
                    if f.failed is not None:
                        await f.failed()
                delay = next(delays)
                log.warning(
                    "%swatching %s failed: %s; retrying in %.1fs", prefix, self.typ, exc, delay
                )
                await asyncio.sleep(delay)


def _p(f: _Follower) -> str:
    return f"{f.who}: " if f.who else ""


#: (id of the store, type) -> its shared list+watch, while anyone follows it
_SHARED: dict[tuple[int, str], _Shared] = {}
