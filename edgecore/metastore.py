"""The edge's cache: every object the cloud bound to this node, in SQLite.

Why SQLite and this shape: the edge must keep serving pods, configmaps, secrets and devices
after a power cut with no link to the cloud, so what is ACKed to the cloud must be on disk
(``synchronous=FULL``). The table keeps KubeEdge's name and key format (``meta``, keyed by the
edge resource string ``{ns|null}/{type}/{name}``) so the file stays recognisable to anyone who
knows KubeEdge's ``edgecore.db``; it adds ``namespace``, ``name`` and ``resource_version``
columns so listing a type in a namespace and stating the inventory (key -> resourceVersion, see
:mod:`wire.delivery`) never parse JSON.

Writes come in batches (:meth:`MetaStore.apply`): one transaction, one fsync, for however many
cloud messages arrived together. A fsync costs milliseconds on an SD card; per-message commits
would cap the edge at a few hundred objects per second.

Two connections: one writes, one reads. In WAL mode the reader sees only committed data, so
the local API never serves a write that might still roll back, and reads do not queue behind a
large batch.

Watchers (:meth:`MetaStore.subscribe`) get events after the commit, never before: an event
always describes data that is on disk. Each watcher has a bounded queue; one that falls behind
is cut off (``overflowed``) rather than slowing the writer or growing without limit, as the
Kubernetes API server does with slow watchers. It re-lists and watches again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import aiosqlite

from edgecore import db
from wire.errors import InvalidResource, StoreError
from wire.resources import ResourceKey

log = logging.getLogger(__name__)

EventType = Literal["ADDED", "MODIFIED", "DELETED"]

#: Events a watcher may have queued before it is cut off. A batch commits up to
#: ``MetaSettings.batch_max`` (512) changes at once, so this holds several batches.
DEFAULT_WATCH_QUEUE = 4096

#: Keys per ``IN (...)`` query. SQLite allows 32766 host parameters since 3.32; older builds
#: allow 999, so stay below that.
_CHUNK = 900


@dataclass(frozen=True, slots=True)
class Change:
    """One write: store ``obj`` at ``resource_version`` under ``key``, or delete the key.

    ``obj`` or ``resource_version`` being ``None`` means delete.
    """

    key: str
    resource_version: str | None
    obj: dict[str, Any] | None

    @property
    def is_delete(self) -> bool:
        return self.obj is None or self.resource_version is None


@dataclass(frozen=True, slots=True)
class StoreEvent:
    """One committed change, as a watcher sees it."""

    type: EventType
    key: str
    #: the object after the change; for ``DELETED`` its last stored state
    obj: dict[str, Any]
    #: the stored resourceVersion (for ``DELETED``: the last one stored)
    resource_version: str = ""


#: ``(key, resourceVersion, object)`` rows; an alias because ``MetaStore.list`` shadows ``list``
Items = list[tuple[str, str, dict[str, Any]]]

_END: Any = object()


class Subscription:
    """A watcher's stream of :class:`StoreEvent`; iterate with ``async for``.

    Ends when closed (:meth:`close`, :meth:`aclose`, leaving ``async with``), when the store
    closes, or after the queued events when it fell behind (then :attr:`overflowed` is true).
    """

    def __init__(
        self,
        store: MetaStore,
        *,
        type: str | None,
        namespace: str | None,
        maxsize: int,
    ) -> None:
        self.type = type
        self.namespace = namespace
        self.overflowed = False
        self._store = store
        self._queue: asyncio.Queue[StoreEvent] = asyncio.Queue(maxsize)
        self._closed = False

    def matches(self, key: ResourceKey) -> bool:
        return (self.type is None or key.type == self.type) and (
            self.namespace is None or key.namespace == self.namespace
        )

    def _publish(self, event: StoreEvent) -> None:
        if self._closed:
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            log.warning(
                "watcher of %s fell %d events behind; cutting it off",
                self.type or "everything",
                self._queue.maxsize,
            )
            self.overflowed = True
            self._end()

    def _end(self) -> None:
        """Stop after what is queued. The sentinel wakes a reader blocked on an empty queue;
        when the queue is full nobody is blocked and ``_closed`` ends the iteration."""
        if self._closed:
            return
        self._closed = True
        self._store._unsubscribe(self)
        try:
            self._queue.put_nowait(_END)
        except asyncio.QueueFull:
            pass

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Unsubscribe; the iteration ends once queued events are consumed."""
        self._end()

    async def aclose(self) -> None:
        self._end()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> StoreEvent:
        if self._closed and self._queue.empty():
            raise StopAsyncIteration
        event = await self._queue.get()
        if event is _END:
            raise StopAsyncIteration
        return event

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._end()


def _decode(key: str, value: str) -> dict[str, Any] | None:
    """A stored value, or ``None`` (logged) when it is not a JSON object.

    A damaged row must not take the local API or the watchers down. It is also left out of the
    inventory, so the cloud sends the object again.
    """
    try:
        obj = json.loads(value)
    except ValueError:
        log.warning("cached %s is not valid JSON; ignoring it", key)
        return None
    if not isinstance(obj, dict):
        log.warning("cached %s is a JSON %s, not an object; ignoring it", key, type(obj).__name__)
        return None
    return obj


def _retrieve(task: asyncio.Future[None]) -> None:
    """Mark a shielded write's outcome as seen when its caller was cancelled meanwhile."""
    if not task.cancelled():
        task.exception()


class MetaStore:
    """The SQLite cache. Create with :meth:`open`; one instance per database file."""

    def __init__(
        self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection
    ) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()
        self._subscribers: set[Subscription] = set()
        self._closed = False
        #: transactions committed by :meth:`apply` (for metrics and tests of batching)
        self.commits = 0

    # -- lifecycle ----------------------------------------------------------------------------

    @classmethod
    async def open(cls, path: Path) -> MetaStore:
        """Open (creating if needed) the cache at ``path`` and bring its schema up to date.

        Raises:
            ConfigError: the file is not a usable database, or its schema is newer than this
                program knows.
        """
        writer = await db.connect(path, what="the edge cache")
        try:
            reader = await db.connect(path, what="the edge cache", read_only=True)
        except BaseException:
            await writer.close()
            raise
        log.debug("edge cache %s open", path)
        return cls(path, writer, reader)

    async def close(self) -> None:
        """End every subscription and close the database. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for sub in list(self._subscribers):
            sub.close()
        async with self._write_lock:
            await self._reader.close()
            await self._writer.close()

    # -- writes -------------------------------------------------------------------------------

    async def apply(self, changes: Sequence[Change]) -> None:
        """Write every change in one transaction, then tell the watchers.

        Changes apply in order; a key may appear more than once. Deleting a missing key is not
        an error (the cloud may resend a delete).

        Raises:
            InvalidResource: a key is not ``{ns|null}/{type}/{name}``; nothing was written.
            StoreError: SQLite refused; nothing was written.
        """
        if not changes:
            return
        parsed = [ResourceKey.parse(c.key) for c in changes]
        # the canonical spelling, so "null/node/x" and its parse round-trip are one row
        keys = [str(k) for k in parsed]
        # Shielded: a caller cancelled mid-commit must not leave the transaction half done, nor
        # a commit on disk whose events the watchers never see.
        task = asyncio.ensure_future(self._apply(changes, parsed, keys))
        task.add_done_callback(_retrieve)
        await asyncio.shield(task)

    async def _apply(
        self, changes: Sequence[Change], parsed: list[ResourceKey], keys: list[str]
    ) -> None:
        async with self._write_lock:
            if self._closed:
                raise StoreError("the edge cache is closed")
            try:
                events, rows, deletes = await self._write(changes, parsed, keys)
            except sqlite3.Error as exc:
                raise StoreError(f"edge cache write failed: {exc}") from exc
            self.commits += 1
            log.debug("committed %d changes (%d rows, %d deletes)", len(changes), rows, deletes)
            self._publish(events, parsed)

    async def _write(
        self, changes: Sequence[Change], parsed: list[ResourceKey], keys: list[str]
    ) -> tuple[list[tuple[int, StoreEvent]], int, int]:
        async with db.transaction(self._writer) as conn:
            current = await self._current(conn, set(keys))
            events: list[tuple[int, StoreEvent]] = []
            final: dict[str, tuple[int, Change]] = {}
            for i, (change, key) in enumerate(zip(changes, keys, strict=True)):
                final[key] = (i, change)
                before = current.get(key)
                if change.is_delete:
                    if before is not None:
                        rv, last = before
                        if last is not None:
                            events.append((i, StoreEvent("DELETED", key, last, rv)))
                        current[key] = None
                    continue
                assert change.obj is not None and change.resource_version is not None
                kind: EventType = "ADDED" if before is None else "MODIFIED"
                events.append((i, StoreEvent(kind, key, change.obj, change.resource_version)))
                current[key] = (change.resource_version, change.obj)
            upserts = []
            deletes = []
            for key, (i, change) in final.items():
                if change.is_delete:
                    deletes.append((key,))
                else:
                    rk = parsed[i]
                    upserts.append(
                        (
                            key,
                            rk.type,
                            rk.namespace,
                            rk.name,
                            change.resource_version,
                            json.dumps(change.obj, separators=(",", ":")),
                        )
                    )
            if upserts:
                await conn.executemany(
                    "INSERT INTO meta (key, type, namespace, name, resource_version, value)"
                    " VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET resource_version = excluded.resource_version,"
                    " value = excluded.value",
                    upserts,
                )
            if deletes:
                await conn.executemany("DELETE FROM meta WHERE key = ?", deletes)
        return events, len(upserts), len(deletes)

    @staticmethod
    async def _current(
        db: aiosqlite.Connection, keys: set[str]
    ) -> dict[str, tuple[str, dict[str, Any] | None] | None]:
        """What is stored now under ``keys``: key -> (resourceVersion, object)."""
        found: dict[str, tuple[str, dict[str, Any] | None] | None] = {}
        ordered = sorted(keys)
        for start in range(0, len(ordered), _CHUNK):
            chunk = ordered[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            async with db.execute(
                f"SELECT key, resource_version, value FROM meta WHERE key IN ({marks})", chunk
            ) as cur:
                for key, rv, value in await cur.fetchall():
                    found[key] = (rv, _decode(key, value))
        return found

    def _publish(self, events: list[tuple[int, StoreEvent]], parsed: list[ResourceKey]) -> None:
        for sub in list(self._subscribers):
            for i, event in events:
                if sub.matches(parsed[i]):
                    sub._publish(event)

    # -- reads --------------------------------------------------------------------------------

    async def get(self, key: str) -> dict[str, Any] | None:
        """The object under ``key``, or ``None`` (also for a malformed key or damaged row)."""
        try:
            key = str(ResourceKey.parse(key))
        except InvalidResource:
            return None
        async with self._reader.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        return None if row is None else _decode(key, row[0])

    async def list(self, type: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every object of ``type`` (in ``namespace``, or in all namespaces), ordered by key."""
        return [obj for _key, _rv, obj in await self.items(type, namespace)]

    async def items(self, type: str, namespace: str | None = None) -> Items:
        """Like :meth:`list` but as ``(key, resourceVersion, object)``; damaged rows skipped."""
        if namespace is None:
            sql = "SELECT key, resource_version, value FROM meta WHERE type = ? ORDER BY key"
            args: tuple[str, ...] = (type,)
        else:
            sql = (
                "SELECT key, resource_version, value FROM meta"
                " WHERE type = ? AND namespace = ? ORDER BY key"
            )
            args = (type, namespace)
        async with self._reader.execute(sql, args) as cur:
            rows = await cur.fetchall()
        out: Items = []
        for key, rv, value in rows:
            obj = _decode(key, value)
            if obj is not None:
                out.append((key, rv, obj))
        return out

    async def inventory(self) -> dict[str, str]:
        """key -> resourceVersion of every cached object: what the edge tells the cloud it has.

        A damaged row is left out so the cloud sends that object again.
        """
        found: dict[str, str] = {}
        # A page at a time: the values are the whole cache, needed here only to be checked.
        async with self._reader.execute("SELECT key, resource_version, value FROM meta") as cur:
            while rows := await cur.fetchmany(_CHUNK):
                for key, rv, value in rows:
                    if _decode(key, value) is not None:
                        found[key] = rv
        return found

    async def count(self) -> int:
        """How many objects are cached (damaged rows included)."""
        async with self._reader.execute("SELECT count(*) FROM meta") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    # -- watchers -----------------------------------------------------------------------------

    def subscribe(
        self,
        type: str | None = None,
        *,
        namespace: str | None = None,
        maxsize: int = DEFAULT_WATCH_QUEUE,
    ) -> Subscription:
        """Events committed from now on, for ``type`` (all types if ``None``) and ``namespace``.

        Raises:
            StoreError: the store is closed.
        """
        if self._closed:
            raise StoreError("the edge cache is closed")
        sub = Subscription(self, type=type, namespace=namespace, maxsize=maxsize)
        self._subscribers.add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)
