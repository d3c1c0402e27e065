"""The ``fleet`` module: follows the fleet for the page and the metrics, and records Events.

It lists and watches nodes, pods and devices (:func:`cloudhub.store.follow.follow`) into a
:class:`~cloudhub.fleet.view.FleetView`, and turns what changed into Kubernetes Events with
the pure rules of :mod:`cloudhub.fleet.derive`: pod started/failed from the status edges
report, device online/offline. Its inbox brings the rest: the hub's node connect/disconnect
reports (it is in :data:`~cloudhub.routes.LIFECYCLE_GROUP`) and events other modules ask it to
record (:class:`~cloudhub.routes.TwinRefused`: refused twin reports). On a cluster it also
measures how late watch events arrive (:attr:`FleetModule.watch_lag`).

Events are recorded in batches (every :data:`FLUSH_INTERVAL` or :data:`FLUSH_MAX` events,
repeats folded first), so 10,000 edges reconnecting after a cloud restart cost a few
transactions, not 10,000. A store that fails to record is logged and the batch dropped:
events are information, never a reason to hold up the fleet.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from cloudhub import routes
from cloudhub.fleet.derive import device_events, node_event, pod_events, twin_refused_event
from cloudhub.fleet.eventstore import EventStore
from cloudhub.fleet.view import FleetView
from cloudhub.store.base import ObjectStore, WatchEvent
from cloudhub.store.follow import follow
from hive.bus import Bus
from hive.metrics import Buckets
from wire.errors import BridgeError
from wire.events import Event, fold_all, parse_time

log = logging.getLogger(__name__)

#: types followed into the view
FOLLOWED = ("node", "pod", "device")
#: seconds an event waits at most for its write (with the others of that time)
FLUSH_INTERVAL = 0.5
#: events that make a write happen at once
FLUSH_MAX = 500


class FleetModule:
    """Keeps :attr:`view` current and records the fleet's Events."""

    name = routes.FLEET
    group: str = routes.LIFECYCLE_GROUP
    enabled = True

    def __init__(self, *, bus: Bus, store: ObjectStore, events: EventStore) -> None:
        self._bus = bus
        self._store = store
        self.events = events
        self.view = FleetView()
        #: set once every followed type has been listed
        self.synced = asyncio.Event()
        self._listed: set[str] = set()
        self._pending: list[Event] = []
        #: set while events wait for their write: the writer sleeps on it, with no timer running
        #: while nothing happens (an idle fleet costs no wake-ups)
        self._queued = asyncio.Event()
        self._due = asyncio.Event()
        #: events recorded, and batches the store refused (for tests and metrics)
        self.recorded = 0
        self.record_failures = 0
        #: seconds from a change's write (as the API server stamps it) to its watch event
        self.watch_lag = Buckets()
        #: the last write stamp read, and its seconds (stamps are to the second: most events
        #: of a busy second carry the same one, parsed once)
        self._stamp = ""
        self._written: float | None = None

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for typ in FOLLOWED:
                tg.create_task(self._follow(typ), name=f"fleet:follow:{typ}")
            tg.create_task(self._serve_inbox(), name="fleet:inbox")
            tg.create_task(self._write_events(), name="fleet:events")

    def record(self, events: list[Event]) -> None:
        """Queue events for the next write (within :data:`FLUSH_INTERVAL`)."""
        if not events:
            return
        self._pending.extend(events)
        self._queued.set()
        if len(self._pending) >= FLUSH_MAX:
            self._due.set()

    # -- following -----------------------------------------------------------------------------

    async def _follow(self, typ: str) -> None:
        async def listed(objects: list[dict[str, Any]]) -> None:
            self._relist(typ, objects)

        async def changed(event: WatchEvent) -> None:
            self._change(typ, event)

        await follow(self._store, typ, listed=listed, changed=changed)

    def _relist(self, typ: str, objects: list[dict[str, Any]]) -> None:
        first = typ not in self._listed
        view = self.view
        if first:
            for obj in objects:
                view.upsert(typ, obj)
        else:
            seen = {view.key_of(typ, o) for o in objects}
            stale = [o for o in self._all(typ) if view.key_of(typ, o) not in seen]
            for obj in objects:
                self._apply(typ, obj)
            for obj in stale:
                view.delete(typ, obj)
        self._listed.add(typ)
        if self._listed.issuperset(FOLLOWED):
            self.synced.set()

    def _all(self, typ: str) -> list[dict[str, Any]]:
        view = self.view
        if typ == "node":
            return list(view.nodes.values())
        if typ == "pod":
            return list(view.pods.values())
        return view.devices()

    def _change(self, typ: str, event: WatchEvent) -> None:
        obj = event.object
        stamp = newest_stamp(obj)
        if stamp is not None:
            if stamp != self._stamp:
                self._stamp, self._written = stamp, _seconds(stamp)
            written = self._written
            if written is not None:
                lag = time.time() - written
                self.watch_lag.observe(lag if lag > 0.0 else 0.0)
        if event.type == "DELETED":
            self.view.delete(typ, obj)
        elif typ != "pod" or not self.view.replace_pod(obj):
            # (the usual pod update, status and node as before, was stored and is done)
            self._apply(typ, obj)

    def _apply(self, typ: str, obj: dict[str, Any]) -> None:
        old = self.view.get(typ, obj)
        now = time.time()
        if typ == "pod":
            self.record(pod_events(old, obj, at=now))
        elif typ == "device":
            self.record(device_events(old, obj, at=now))
        self.view.upsert(typ, obj)

    # -- inbox and writing ---------------------------------------------------------------------

    async def _serve_inbox(self) -> None:
        while True:
            msg = await self._bus.receive(self.name)
            content = msg.content
            if isinstance(content, routes.NodeStatusReport):
                node = msg.resource.rsplit("/", 1)[-1]
                self.record([node_event(node, online=content.online, at=content.at)])
            elif isinstance(content, routes.TwinRefused):
                self.record(
                    [
                        twin_refused_event(
                            content.namespace, content.name, content.reason, at=content.at
                        )
                    ]
                )
            else:
                log.debug("fleet ignored %s %s", msg.operation, msg.resource)

    async def _write_events(self) -> None:
        while True:
            await self._queued.wait()
            if not self._due.is_set():
                try:
                    async with asyncio.timeout(FLUSH_INTERVAL):
                        await self._due.wait()
                except TimeoutError:
                    pass
            self._queued.clear()
            self._due.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write what is queued (folded) now."""
        if not self._pending:
            return
        batch, self._pending = fold_all(self._pending), []
        try:
            await self.events.record(batch)
        except BridgeError as exc:
            self.record_failures += 1
            log.warning("could not record %d event(s): %s", len(batch), exc)
            return
        self.recorded += len(batch)


def last_write(obj: dict[str, Any]) -> float | None:
    """When the object was last written, from ``metadata.managedFields`` (Kubernetes stamps
    each manager's last write, to the second); None where there is none (embedded store)."""
    stamp = newest_stamp(obj)
    return None if stamp is None else _seconds(stamp)


def newest_stamp(obj: dict[str, Any]) -> str | None:
    """The newest ``time`` of ``metadata.managedFields``, as written; None if there is none.

    RFC 3339 in UTC to the second, as the API server writes them: the newest is the greatest
    string, so only that one need be parsed.
    """
    meta = obj.get("metadata")
    fields = meta.get("managedFields") if isinstance(meta, dict) else None
    if not isinstance(fields, list):
        return None
    newest: str | None = None
    for entry in fields:
        if isinstance(entry, dict):
            stamp = entry.get("time")
            if isinstance(stamp, str) and (newest is None or stamp > newest):
                newest = stamp
    return newest


def _seconds(stamp: str) -> float | None:
    seconds = parse_time(stamp)
    return seconds if seconds > 0 else None
