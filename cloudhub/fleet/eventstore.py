"""Where recorded Events live: the embedded store's file, or the cluster.

Both keep the folded events of the last hour in memory (:class:`wire.events.EventLog`): reads
(the admin API, the fleet page) never touch the disk or the cluster, and a repeat is folded
without a read.

- :class:`EmbeddedEvents`: a table ``recorded_events`` in ``store.db``, written through the
  store's own connection (:meth:`~cloudhub.store.embedded.EmbeddedStore.run_locked`), one
  transaction per batch; loaded at start, trimmed by age and count as the log is.
- :class:`KubeEvents`: real ``core/v1`` Events, created, and patched (``count``,
  ``lastTimestamp``) on repeats as Kubernetes' recorder does; reads list them from the cluster
  so ``edgectl get events`` shows what ``kubectl get events`` shows, other recorders included
  (one list every :data:`LIST_CACHE_SECONDS` at most).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any, Protocol

import aiosqlite
from pydantic import ValidationError

from cloudhub.k8s.api import KubeApi, Resource
from cloudhub.store.embedded import EmbeddedStore
from wire.errors import Conflict, NotFound, StoreError
from wire.events import (
    DEFAULT_MAX_EVENTS,
    DEFAULT_RETENTION_SECONDS,
    Event,
    EventLog,
    fold,
    matches,
    rfc3339,
)

log = logging.getLogger(__name__)

EVENTS = Resource("", "v1", "events", "Event", namespaced=True)
#: seconds a list of the cluster's events is reused: pages refreshing every 2 s in several
#: browsers, and edgectl, cost the API server one list per interval, not one per view
LIST_CACHE_SECONDS = 2.0

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS recorded_events ("
    " namespace TEXT NOT NULL, name TEXT NOT NULL, last TEXT NOT NULL, body TEXT NOT NULL,"
    " PRIMARY KEY (namespace, name))"
)
_UPSERT = "INSERT OR REPLACE INTO recorded_events (namespace, name, last, body) VALUES (?, ?, ?, ?)"


class EventStore(Protocol):
    """Records occurrences (folding repeats) and lists what is kept."""

    async def start(self) -> None:
        """Load or connect. Called once before anything else."""

    async def record(self, occurrences: list[Event]) -> None:
        """Store ``occurrences`` (repeats folded into their stored event).

        Raises:
            StoreError: nothing may have been written; the caller logs and goes on.
        """

    async def list(
        self, *, namespace: str | None = None, kind: str | None = None, name: str | None = None
    ) -> list[Event]:
        """Kept events matching the filters, least recently seen first."""


class EmbeddedEvents:
    """Events in ``store.db`` beside the objects (see the module notes)."""

    def __init__(
        self,
        store: EmbeddedStore,
        *,
        retention: float = DEFAULT_RETENTION_SECONDS,
        max_events: int = DEFAULT_MAX_EVENTS,
    ) -> None:
        self._store = store
        self._log = EventLog(retention=retention, max_events=max_events)

    async def start(self) -> None:
        async def load(db: aiosqlite.Connection) -> list[Any]:
            await db.execute(_SCHEMA)
            return list(await db.execute_fetchall("SELECT body FROM recorded_events ORDER BY last"))

        try:
            rows = await self._store.run_locked(load)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read recorded events: {exc}") from exc
        now = time.time()
        for (body,) in rows:
            try:
                self._log.record(Event.model_validate_json(body), now=now)
            except ValidationError:
                continue
        self._log.prune(now=now)

    async def record(self, occurrences: list[Event]) -> None:
        if not occurrences:
            return
        now = time.time()
        stored = [self._log.record(ev, now=now) for ev in occurrences]
        self._log.prune(now=now)
        rows = [
            (
                e.metadata.namespace,
                e.metadata.name,
                e.last_timestamp,
                e.model_dump_json(by_alias=True),
            )
            for e in {(e.metadata.namespace, e.metadata.name): e for e in stored}.values()
        ]
        cutoff = rfc3339(now - self._log.retention)
        cap = self._log.max_events

        async def write(db: aiosqlite.Connection) -> None:
            await db.execute("BEGIN IMMEDIATE")
            try:
                await db.executemany(_UPSERT, rows)
                await db.execute("DELETE FROM recorded_events WHERE last < ?", (cutoff,))
                await db.execute(
                    "DELETE FROM recorded_events WHERE rowid NOT IN"
                    " (SELECT rowid FROM recorded_events ORDER BY last DESC LIMIT ?)",
                    (cap,),
                )
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise

        try:
            await self._store.run_locked(write)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot store {len(rows)} event(s): {exc}") from exc

    async def list(
        self, *, namespace: str | None = None, kind: str | None = None, name: str | None = None
    ) -> list[Event]:
        self._log.prune(now=time.time())
        return self._log.list(namespace=namespace, kind=kind, name=name)


class KubeEvents:
    """Real ``core/v1`` Events in the cluster (see the module notes)."""

    def __init__(self, api: KubeApi, *, max_events: int = DEFAULT_MAX_EVENTS) -> None:
        self._api = api
        #: what this replica wrote, to patch a repeat without reading it first
        self._log = EventLog(max_events=max_events)
        #: the cluster's events as last listed (monotonic time, events)
        self._listed: tuple[float, list[Event]] | None = None

    async def start(self) -> None:
        return None

    async def record(self, occurrences: list[Event]) -> None:
        now = time.time()
        self._listed = None  # what this replica records shows at once
        for ev in occurrences:
            stored = self._log.record(ev, now=now)
            try:
                await self._write(ev, stored)
            except NotFound:
                continue  # its namespace is gone: nothing to tell about
            except Conflict:
                continue  # another replica recorded it a moment ago; the next repeat patches

    async def _write(self, occurrence: Event, stored: Event) -> None:
        ns, name = stored.metadata.namespace, stored.metadata.name
        if stored.count > occurrence.count:
            patch = {"count": stored.count, "lastTimestamp": stored.last_timestamp}
            try:
                await self._api.patch(EVENTS, ns, name, patch)
                return
            except NotFound:
                pass  # expired in the cluster (its TTL): write it again
        try:
            await self._api.create(EVENTS, ns, occurrence.to_object())
        except Conflict:
            # Recorded before (by another replica, or before a restart): count on from there.
            existing = Event.model_validate(await self._api.get(EVENTS, ns, name))
            merged = fold(existing, occurrence)
            patch = {"count": merged.count, "lastTimestamp": merged.last_timestamp}
            await self._api.patch(EVENTS, ns, name, patch)

    async def list(
        self, *, namespace: str | None = None, kind: str | None = None, name: str | None = None
    ) -> list[Event]:
        now = time.monotonic()
        if self._listed is None or now - self._listed[0] > LIST_CACHE_SECONDS:
            data = await self._api.list(EVENTS)
            events: list[Event] = []
            for item in data.get("items") or []:
                try:
                    events.append(Event.model_validate(item))
                except ValidationError:
                    continue
            events.sort(key=lambda ev: ev.last_timestamp)
            self._listed = (now, events)
        return [
            ev for ev in self._listed[1] if matches(ev, namespace=namespace, kind=kind, name=name)
        ]
