"""The embedded source of truth: one SQLite file (``store.db``) behind :class:`ObjectStore`.

Why SQLite and not a dict plus a JSON file: the cloud must not lose an applied object on a
crash (``synchronous=FULL`` makes every commit durable), and applying a manifest of many
objects must be all or nothing (one transaction). WAL keeps readers cheap.

What this store promises, Kubernetes-style, so the edgecontroller can treat it like a cluster:

- **One global resourceVersion counter.** Every write (create, change, status change, delete)
  takes the next integer; it is persisted with the write and never reused, even after a delete
  or a restart. Callers treat it as an opaque string.
- **An event log** (one row per resourceVersion) kept for the last ``history`` writes, so a
  watcher can resume with ``watch(type, since)`` after a reconnect instead of re-listing. Asking
  for history that was trimmed away raises :class:`~wire.errors.Gone`, as a 410 would.
- **Applying what is already stored is a no-op**: no new resourceVersion, no event. Controllers
  re-apply the same manifests all the time; waking every edge for nothing would be wasteful.
- **Live events are fanned out in-process** after each commit (never before: a watcher must
  not see a write that might still roll back). Each watcher has a bounded buffer. A watcher that
  falls ``watch_buffer`` events behind is dropped rather than allowed to grow without bound or
  to block writers: its next read raises :class:`~wire.errors.Gone`, and it must re-list and
  watch again from the list's resourceVersion, exactly as after a 410 from Kubernetes.
  (:mod:`cloudhub.store.watching` holds the buffers and the fan-out.)

One connection is shared by everything and guarded by one lock, reads included: on a single
SQLite connection a read issued during another task's open transaction would see that
transaction's uncommitted rows.

**Round trips, not rows, are what a write costs.** aiosqlite runs every statement in its own
thread and each statement is a hand-off there and back (a future, a thread wake-up, a
self-pipe write). So a transaction issues a fixed handful of statements whatever its size:
``BEGIN``, one ``SELECT`` of all the objects it touches (per 500), one multi-row ``INSERT``
for the rows and one for the events (per 500), ``COMMIT``. Each of those is also a single
SQLite step, and that matters as much: Python's sqlite3 lets go of the GIL around every step
and must take it back from the busy event loop after each, so ``executemany`` (a step per row)
and a plain ``SELECT`` (a step per row fetched) turned a 500-object write into hundreds of GIL
hand-offs. The read comes back as one row (see
:func:`~cloudhub.store.sqlite_schema.find_many_sql`).

Nothing else is written per commit: the resourceVersion counter is the newest event's rv (every
rv has exactly one event and the newest is never trimmed), and the compaction point is the
oldest kept event's rv minus one (rvs are contiguous), so both are read back from the log at
start-up. The log is trimmed in steps of ``history // 100`` events, so it holds between
``history`` and 1% more; Gone is decided from what was actually trimmed. The ``meta`` table
older versions wrote on every commit is still read, and written at close.

Where the parts live: this module is the store itself (reads, the write transactions, the
event log's replay and trimming); :mod:`cloudhub.store.sqlite_schema` has the file, the schema,
the SQL statements and the start-up counters; :mod:`cloudhub.store.watching` has the ``since``
check and the live fan-out to watchers.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from cloudhub.store.admission import check_desired, has_devices
from cloudhub.store.base import (
    Action,
    Applied,
    EventType,
    ObjectRef,
    StatusCompute,
    StatusUpdate,
    WatchEvent,
)
from cloudhub.store.settings import StoreSettings
from cloudhub.store.sqlite_schema import (
    DELETE_OBJECT,
    FOUND_SEPARATOR,
    INDEX_SEPARATOR,
    REPLAY_EVENTS,
    TRIM_EVENTS,
    chunked_rows,
    find_many_sql,
    insert_events_sql,
    open_store,
    upsert_sql,
    write_counters,
)
from cloudhub.store.watching import Events, Watcher, WatchHub, check_since
from hive.metrics import Buckets
from wire.codec import STDLIB_ENCODER, dump_plain_json, parse_json
from wire.errors import (
    Gone,
    InvalidObject,
    InvalidResource,
    NotFound,
    StoreError,
    WireError,
)
from wire.manifests import validate, validate_all
from wire.resources import CLUSTER_SCOPED_TYPES, TYPE_TO_KIND, key_of

log = logging.getLogger(__name__)

_T = TypeVar("_T")
# Aliases at module level: inside the class, ``list`` names the ObjectStore method.
_Objects = list[dict[str, Any]]
_Events = Events  # (type, rv, event type, JSON body)
_Rows = list[Any]
_Updates = Sequence[StatusUpdate]
_Results = list[dict[str, Any] | None]
#: (type, namespace column, name): the objects table's primary key
_Key = tuple[str, str, str]
#: objects :class:`EmbeddedStore` keeps decoded after applying them (see ``_recent``)
_RECENT_OBJECTS = 4096
_Keys = list[_Key]
_AppliedList = list[Applied]

#: The log is trimmed when it is this share of ``history`` over it: one DELETE per ~1% of
#: ``history`` writes instead of one per commit.
_TRIM_FRACTION = 100

_ACTION_OF: dict[EventType, Action] = {"ADDED": "created", "MODIFIED": "configured"}


def _now() -> str:
    """RFC 3339 UTC with second precision, as Kubernetes writes creationTimestamp."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _encode(obj: dict[str, Any]) -> str:
    # Without the check for circular references (a quarter of the encoding time): a cycle ends
    # in RecursionError instead of ValueError, which _encode_object reports the same way.
    return STDLIB_ENCODER.encode(obj)


def _encode_object(obj: dict[str, Any], *, plain: bool = False) -> str:
    """:func:`_encode`, failing with the object's key (nothing is written then).

    ``plain``: ``obj`` holds only what a JSON parser returns; then the faster encoder
    (:func:`wire.codec.dump_plain_json`) writes it, accepting and refusing the same.

    Raises:
        InvalidObject: a value JSON cannot carry (NaN, a set...), or nesting too deep.
    """
    try:
        return dump_plain_json(obj) if plain else _encode(obj)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidObject(f"{key_of(obj)}: not representable as JSON: {exc}") from exc


class EmbeddedStore:
    """:class:`~cloudhub.store.base.ObjectStore` on a local SQLite file."""

    def __init__(
        self,
        path: Path,
        settings: StoreSettings | None = None,
    ) -> None:
        """Configure the store; nothing is opened until :meth:`start`.

        Args:
            path: the database file; created (mode 0600, parents too) if missing.
            settings: history kept, watcher buffers and batch sizes (validated there).
        """
        self._path = path
        self._settings = settings = settings or StoreSettings()
        self._history = settings.history
        self._trim_step = max(1, settings.history // _TRIM_FRACTION)
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._rv = 0
        self._compacted = 0
        self._hub = WatchHub(settings.watch_buffer)
        self._inflight: set[asyncio.Task[Any]] = set()
        #: how long writes took, waiting for the lock included, and the changes they
        #: committed (one per resourceVersion): metrics
        self.write_seconds = Buckets()
        self.changes_written = 0
        #: the last objects applied: key -> (stored text, the dict it was encoded from). The
        #: next apply of a key compares against the dict while the stored text is still that
        #: text, instead of decoding it again (a tenth of an update's cost here). Read-only:
        #: the same dicts went to the first watcher (see ``_publish``).
        self._recent: dict[_Key, tuple[str, dict[str, Any]]] = {}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open (or create) the database and load the counters.

        Raises:
            StoreError: the file cannot be opened as a store.
        """
        db, self._rv, self._compacted = await open_store(self._path)
        self._db = db
        log.info("store %s opened at resourceVersion %d", self._path, self._rv)

    async def close(self) -> None:
        """Close the database and end every watch (their iterators stop). Safe to call twice."""
        async with self._lock:
            self._closed = True
            self._hub.close()
            if self._db is not None:
                db, self._db = self._db, None
                try:
                    # For readers of the file that predate deriving both from the log.
                    await write_counters(db, self._rv, self._compacted)
                except sqlite3.Error as exc:
                    log.warning("could not record the counters in %s: %s", self._path, exc)
                await db.close()

    async def run_locked(self, work: Callable[[aiosqlite.Connection], Awaitable[_T]]) -> _T:
        """Run ``work`` on the store's connection under its lock.

        For tables other parts of cloudhub keep in ``store.db`` beside the objects (recorded
        Events): they have no resourceVersion and no watch, but share the file, its
        durability and this connection (a second connection would contend for SQLite's
        write lock).

        Raises:
            StoreError: the store is not open.
        """
        async with self._lock:
            return await work(self._conn())

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("store is closed" if self._closed else "store is not started")
        return self._db

    # ------------------------------------------------------------------ reads

    async def list(self, type: str) -> tuple[_Objects, str]:
        """All objects of ``type`` sorted by namespace and name, and the current resourceVersion.

        Raises:
            InvalidResource: ``type`` is not one edgebridge stores.
        """
        _check_type(type)
        async with self._lock:
            rows = await self._query(
                "SELECT body FROM objects WHERE type = ? ORDER BY namespace, name", (type,)
            )
            return [parse_json(body) for (body,) in rows], str(self._rv)

    async def get(self, type: str, namespace: str | None, name: str) -> dict[str, Any]:
        """One object (``namespace`` is ignored for nodes, ``None`` means ``default`` otherwise).

        Raises:
            NotFound: no such object.
            InvalidResource: ``type`` is not one edgebridge stores.
        """
        _check_type(type)
        namespace_ = _namespace(type, namespace)
        async with self._lock:
            rows = await self._query(
                "SELECT body FROM objects WHERE type = ? AND namespace = ? AND name = ?",
                (type, namespace_, name),
            )
        if not rows:
            raise NotFound(_describe(type, namespace_, name))
        obj: dict[str, Any] = parse_json(rows[0][0])
        return obj

    async def existing(self, refs: Sequence[ObjectRef]) -> set[ObjectRef]:
        """Which of ``refs`` are stored, read in one round trip per chunk."""
        # grouped by (type, namespace column): an apply batch's pods mostly name nodes, so
        # this is usually one query for names only (no bodies read)
        groups: dict[tuple[str, str], dict[str, list[ObjectRef]]] = {}
        for ref in refs:
            _check_type(ref[0])
            group = groups.setdefault((ref[0], _namespace(ref[0], ref[1])), {})
            group.setdefault(ref[2], []).append(ref)
        found: set[ObjectRef] = set()
        async with self._lock:
            for (type, namespace), names in groups.items():
                wanted = list(names)
                size = self._settings.read_chunk
                for start in range(0, len(wanted), size):
                    chunk = wanted[start : start + size]
                    rows = await self._query(
                        "SELECT name FROM objects WHERE type = ? AND namespace = ? AND name IN "
                        f"({', '.join('?' * len(chunk))})",
                        [type, namespace, *chunk],
                    )
                    for (name,) in rows:
                        found.update(names[name])
        return found

    def watch(self, type: str, since: str) -> AsyncIterator[WatchEvent]:
        """Events of ``type`` with a resourceVersion above ``since``: logged ones, then live.

        ``since`` is normally the resourceVersion of a :meth:`list` or of the last event seen;
        ``""`` means "from now on". The watch is registered by this call, before the first
        read, so nothing written after the call is missed. Iterate it or drop it: an
        abandoned watch is unregistered once it overflows its buffer. The iterator ends when
        the store is closed.

        Raises:
            Gone: ``since`` is older than the kept history, or is not a resourceVersion this
                store issued (raised by this call); or, while iterating, the watcher fell more
                than ``watch_buffer`` events behind or the history it was replaying was
                trimmed. Either way: re-list.
            InvalidResource: ``type`` is not one edgebridge stores.
            StoreError: the store is not open.
        """
        _check_type(type)
        self._conn()
        start = check_since(since, self._rv, self._compacted)
        # Registered synchronously, before the log is read: every event is in the log up to
        # `head`, or reaches this buffer, or both (a write that was mid-transaction now);
        # _stream drops the duplicates by resourceVersion.
        watcher = self._hub.register(type)
        return self._stream(type, watcher, start, self._rv)

    async def _stream(
        self, type: str, watcher: Watcher, start: int, head: int
    ) -> AsyncIterator[WatchEvent]:
        page = self._settings.replay_page
        try:
            last = start
            while last < head:
                async with self._lock:
                    if self._closed:
                        return
                    if last < self._compacted:
                        raise Gone(f"history trimmed past {last} during replay; re-list")
                    rows = await self._query(REPLAY_EVENTS, (type, last, head, page))
                final = len(rows) - 1
                for index, (rv, event_type, body) in enumerate(rows):
                    last = int(rv)
                    yield WatchEvent(event_type, parse_json(body), body, more=index < final)
                if len(rows) < page:
                    break
            # Live: the buffer may repeat what the replay already yielded; skip by rv.
            while (item := await watcher.next()) is not None:
                rv, event_type, body, obj = item
                if rv > last:
                    last = rv
                    yield WatchEvent(
                        event_type,
                        parse_json(body) if obj is None else obj,
                        body,
                        more=bool(watcher.pending),
                    )
        finally:
            self._hub.unregister(watcher)

    # ------------------------------------------------------------------ writes

    async def apply(self, objects: _Objects, *, owned: bool = False) -> _AppliedList:
        """Validate, then create or replace each object in one transaction, all or nothing
        (the contract: :meth:`cloudhub.store.base.ObjectStore.apply`).

        Objects handed over (``owned``) are validated one by one inside the transaction,
        right before each is compared and encoded, while it is still in the CPU's caches
        (validating them all first walked each object from cold memory twice), and a spec
        equal to the stored one is not checked again: it passed when it was stored. Nothing
        is written unless every object is valid, and the error is the first invalid object's,
        as :func:`~wire.manifests.validate_all` says it. A batch with Devices, or one that is
        malformed, is validated whole first (the Device check reads their models).

        Raises:
            InvalidObject: an object is not valid; nothing was written.
        """
        check = False
        if owned and not has_devices(objects):
            try:
                keys = _keys_of(objects)
                check = True
            except (WireError, AttributeError):
                pass  # malformed: validating all first (below) raises the right error
        if not check:
            objects = validate_all(objects, owned=owned)
            await check_desired(objects, self.get)
            keys = _keys_of(objects)
        return await self._shielded(self._apply(objects, keys, plain=owned, check=check))

    async def _apply(
        self, objects: _Objects, keys: _Keys, *, plain: bool, check: bool
    ) -> _AppliedList:
        """The apply transaction; ``check``: validate each object (in place) on the way."""
        async with self._lock:
            db = self._conn()
            results: _AppliedList = []
            rows: list[tuple[str, str, str, str, int, str]] = []
            events: _Events = []
            #: per event, the dict it was encoded from (for a watcher), see _publish
            written: list[dict[str, Any] | None] = []
            start_rv = self._rv
            try:
                await db.execute("BEGIN IMMEDIATE")
                # Read inside the transaction, all at once; `current` then follows the batch's
                # own writes, so an object given twice is applied twice, in order.
                current = await self._find_many(keys)
                recent = self._recent
                for obj, k in zip(objects, keys, strict=True):
                    text = current.get(k)
                    stored: dict[str, Any] | None = None
                    if text is not None:
                        hit = recent.get(k)
                        stored = hit[1] if hit is not None and hit[0] == text else parse_json(text)
                    # whether the spec differs from the stored one (None: not compared yet)
                    new_spec: bool | None = None
                    if check:
                        # A spec equal to the stored one passed this check when it was stored.
                        # (Validating leaves a spec as it is, so comparing first is the same.)
                        if stored is not None and "spec" in obj:
                            new_spec = obj["spec"] != stored.get("spec")
                        obj = validate(obj, owned=True, spec_valid=new_spec is False)
                    meta: dict[str, Any] = obj["metadata"]
                    event_type: EventType
                    if stored is None:
                        meta["uid"] = str(uuid.uuid4())
                        meta["creationTimestamp"] = _now()
                        if "spec" in obj:
                            meta["generation"] = 1
                        event_type = "ADDED"
                    else:
                        stored_meta: dict[str, Any] = stored["metadata"]
                        meta["uid"] = stored_meta["uid"]
                        meta["creationTimestamp"] = stored_meta.get("creationTimestamp") or _now()
                        meta["resourceVersion"] = stored_meta.get("resourceVersion")
                        if "spec" in obj or "generation" in stored_meta:
                            # Kubernetes semantics: generation counts spec changes only. The
                            # edge uses it to order desired twin values.
                            gen = int(stored_meta.get("generation") or 1)
                            if new_spec is None:
                                new_spec = obj.get("spec") != stored.get("spec")
                            meta["generation"] = gen + new_spec
                        if "status" not in obj and "status" in stored:
                            obj["status"] = stored["status"]
                        if obj == stored:
                            assert text is not None
                            results.append(Applied("unchanged", text))
                            continue
                        event_type = "MODIFIED"
                    meta["resourceVersion"] = str(self._next_rv())
                    # Still plain if it was: what the store adds is strings, an int and the
                    # stored status (parsed from JSON).
                    body = _encode_object(obj, plain=plain)
                    rows.append((k[0], k[1], k[2], meta["uid"], self._rv, body))
                    events.append((k[0], self._rv, event_type, body))
                    # Not touched after this (a dict given twice is found unchanged the second
                    # time, and left as it is), so a watcher may have it, and _recent keeps it.
                    written.append(obj)
                    current[k] = body
                    results.append(Applied(_ACTION_OF[event_type], body))
                await self._write_rows(db, upsert_sql, rows)
                await self._commit(db, events)
            except BaseException as exc:
                await self._rollback(db, start_rv)
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"apply failed: {exc}") from exc
                raise
            self._remember(rows, written)
            self._publish(events, written)
        if log.isEnabledFor(logging.DEBUG):
            for applied in results:
                obj = applied.object
                log.debug(
                    "%s %s at resourceVersion %s",
                    applied.action,
                    key_of(obj),
                    obj["metadata"]["resourceVersion"],
                )
        return results

    async def delete(self, type: str, namespace: str | None, name: str) -> dict[str, Any]:
        """Delete one object; returns its last state carrying the deletion's resourceVersion.

        Raises:
            NotFound: no such object.
            InvalidResource: ``type`` is not one edgebridge stores.
        """
        _check_type(type)
        return await self._shielded(self._delete(type, _namespace(type, namespace), name))

    async def _delete(self, type: str, namespace_: str, name: str) -> dict[str, Any]:
        key = (type, namespace_, name)
        async with self._lock:
            db = self._conn()
            start_rv = self._rv
            try:
                await db.execute("BEGIN IMMEDIATE")
                text = (await self._find_many([key])).get(key)
                if text is None:
                    raise NotFound(_describe(type, namespace_, name))
                obj: dict[str, Any] = parse_json(text)
                obj["metadata"]["resourceVersion"] = str(self._next_rv())
                body = _encode(obj)
                await db.execute(DELETE_OBJECT, key)
                events: _Events = [(type, self._rv, "DELETED", body)]
                await self._commit(db, events)
            except BaseException as exc:
                await self._rollback(db, start_rv)
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"delete failed: {exc}") from exc
                raise
            self._publish(events)
        log.debug("deleted %s", _describe(type, namespace_, name))
        return obj

    async def update_status(
        self, type: str, namespace: str | None, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge ``status`` into the object's status (top-level keys replace).

        A merge that changes nothing writes nothing (no new resourceVersion, no event), so edges
        re-reporting the same status do not churn watchers.

        Raises:
            NotFound: no such object.
            InvalidObject: ``status`` is not a JSON object.
        """
        (result,) = await self.update_statuses([StatusUpdate(type, namespace, name, status)])
        if result is None:
            raise NotFound(_describe(type, _namespace(type, namespace), name))
        return result

    async def update_statuses(self, updates: _Updates) -> _Results:
        """Apply many status merges in one transaction; ``None`` for objects that do not exist.

        Raises:
            InvalidObject: a ``status`` is not a JSON object; nothing was written.
        """
        keys: _Keys = []
        patches: list[dict[str, Any]] = []
        for u in updates:
            _check_type(u.type)
            if not isinstance(u.status, dict):
                raise InvalidObject(f"status must be an object, got {_type_name(u.status)}")
            try:
                # A private copy (the caller keeps its dict) that is also the JSON check.
                patches.append(parse_json(_encode(u.status)))
            except (TypeError, ValueError, RecursionError) as exc:
                raise InvalidObject(f"status is not representable as JSON: {exc}") from exc
            keys.append((u.type, _namespace(u.type, u.namespace), u.name))
        return await self._shielded(self._write_statuses(keys, lambda i, _: patches[i]))

    async def merge_statuses(
        self, type: str, keys: Sequence[tuple[str | None, str]], compute: StatusCompute
    ) -> _Results:
        """Read, merge and write many statuses in one transaction (no read before it).

        For each ``(namespace, name)`` in ``keys``, in order, ``compute(index, obj)`` is called
        inside the transaction with a private copy of the stored object as it is at that point
        (``None`` if it does not exist); a dict it returns is merged into the status as by
        :meth:`update_status` (and must not be touched by the caller afterwards), ``None``
        changes nothing. ``compute`` must not block; if it raises, nothing is written.

        Returns:
            The objects after the merge, ``None`` for objects that do not exist.

        Raises:
            InvalidObject: a computed status is not representable as JSON; nothing was written.
            InvalidResource: ``type`` is not one edgebridge stores.
        """
        _check_type(type)
        rows = [(type, _namespace(type, ns), name) for ns, name in keys]
        return await self._shielded(self._write_statuses(rows, compute))

    async def _write_statuses(self, keys: _Keys, compute: StatusCompute) -> _Results:
        async with self._lock:
            db = self._conn()
            start_rv = self._rv
            events: _Events = []
            rows: list[tuple[str, str, str, str, int, str]] = []
            results: _Results = []
            try:
                await db.execute("BEGIN IMMEDIATE")
                current = await self._find_many(keys)
                for index, k in enumerate(keys):
                    text = current.get(k)
                    obj: dict[str, Any] | None = None if text is None else parse_json(text)
                    patch = compute(index, obj)
                    results.append(obj)
                    if obj is None or patch is None:
                        continue
                    if not isinstance(patch, dict):
                        raise InvalidObject(f"status must be an object, got {_type_name(patch)}")
                    old = obj.get("status")
                    merged = dict(old) if isinstance(old, dict) else {}
                    merged.update(patch)
                    if merged == old:
                        continue
                    obj["status"] = merged
                    obj["metadata"]["resourceVersion"] = str(self._next_rv())
                    body = _encode_object(obj)
                    # As an upsert of the row just read: one statement for all rows (see
                    # _write_rows), and a key given twice ends with its last write.
                    rows.append((*k, obj["metadata"]["uid"], self._rv, body))
                    events.append((k[0], self._rv, "MODIFIED", body))
                    current[k] = body
                await self._write_rows(db, upsert_sql, rows)
                await self._commit(db, events)
            except BaseException as exc:
                await self._rollback(db, start_rv)
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"status update failed: {exc}") from exc
                raise
            self._publish(events)
        return results

    # ------------------------------------------------------------------ internals

    async def _shielded(self, write: Coroutine[Any, Any, _T]) -> _T:
        """Run a write to completion even if the caller is cancelled.

        A write cancelled between COMMIT and publishing would leave watchers without events
        that are in the database; so the write runs as its own task and only the caller's
        wait is cancelled.
        """
        started = time.perf_counter()
        task = asyncio.create_task(write)
        self._inflight.add(task)
        task.add_done_callback(self._write_done)
        try:
            return await asyncio.shield(task)
        finally:
            self.write_seconds.observe(time.perf_counter() - started)

    def _write_done(self, task: asyncio.Task[Any]) -> None:
        self._inflight.discard(task)
        if not task.cancelled():
            # Retrieve the exception so a write whose caller went away does not log
            # "exception was never retrieved"; the caller (if still waiting) gets it anyway.
            task.exception()

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    async def _query(self, sql: str, params: Sequence[Any]) -> _Rows:
        try:
            return list(await self._conn().execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise StoreError(f"store read failed: {exc}") from exc

    async def _find_many(self, keys: Iterable[_Key]) -> dict[_Key, str]:
        """The stored JSON of each of ``keys`` that exists, one round trip per chunk."""
        unique = list(dict.fromkeys(keys))
        found: dict[_Key, str] = {}
        size = self._settings.read_chunk
        for start in range(0, len(unique), size):
            chunk = unique[start : start + size]
            rows = await self._query(
                find_many_sql(len(chunk)),
                [part for index, key in enumerate(chunk) for part in (*key, index)],
            )
            joined = rows[0][0] if rows else None
            for item in joined.split(FOUND_SEPARATOR) if joined else ():
                index, _, body = item.partition(INDEX_SEPARATOR)
                found[chunk[int(index)]] = body
        return found

    async def _commit(self, db: aiosqlite.Connection, events: _Events) -> None:
        """Log ``events``, trim the log when it is a step over ``history``, commit."""
        self.changes_written += len(events)
        trim_to = 0
        if events:
            await self._write_rows(
                db,
                insert_events_sql,
                [(rv, type, event_type, body) for type, rv, event_type, body in events],
            )
            # Every rv has exactly one event, so keeping rv > current - history keeps (at
            # least) the last `history` events.
            threshold = self._rv - self._history
            if threshold - self._compacted >= self._trim_step:
                await db.execute(TRIM_EVENTS, (threshold,))
                trim_to = threshold
        await db.execute("COMMIT")
        if trim_to:
            self._compacted = trim_to

    async def _write_rows(
        self,
        db: aiosqlite.Connection,
        sql_for: Callable[[int], str],
        rows: Sequence[Sequence[Any]],
    ) -> None:
        """Write ``rows`` with multi-row statements (see
        :func:`~cloudhub.store.sqlite_schema.chunked_rows` for why not ``executemany``)."""
        for sql, params in chunked_rows(sql_for, rows, self._settings.rows_per_statement):
            await db.execute(sql, params)

    async def _rollback(self, db: aiosqlite.Connection, start_rv: int) -> None:
        self._rv = start_rv
        try:
            if db.in_transaction:
                await db.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("rollback failed")

    def _remember(
        self,
        rows: Sequence[tuple[str, str, str, str, int, str]],
        written: Sequence[dict[str, Any] | None],
    ) -> None:
        """Keep the committed objects of an apply for the next apply's comparison."""
        recent = self._recent
        for (typ, ns, name, _, _, body), obj in zip(rows, written, strict=True):
            if obj is None:
                continue
            key = (typ, ns, name)
            recent.pop(key, None)  # re-inserted last: the oldest go first
            recent[key] = (body, obj)
        while len(recent) > _RECENT_OBJECTS:
            del recent[next(iter(recent))]

    def _publish(
        self, events: _Events, written: Sequence[dict[str, Any] | None] | None = None
    ) -> None:
        """Hand committed events to the watchers of their type (never blocks).

        ``written``: per event, the dict its body was encoded from, which nobody else holds
        any more (or ``None``); one watcher gets it instead of decoding the body.
        """
        self._hub.publish(events, written)


def _keys_of(objects: _Objects) -> _Keys:
    """Each object's primary key (type, namespace column, name), as validating leaves it.

    Raises:
        InvalidResource: an object of a kind edgebridge does not store, or without a name.
        AttributeError: an object is not a mapping.
    """
    keys: _Keys = []
    for obj in objects:
        key = key_of(obj)
        keys.append((key.type, key.namespace or "", key.name))
    return keys


def _check_type(type: str) -> None:
    if type not in TYPE_TO_KIND:
        raise InvalidResource(
            f"type {type!r} is not stored here (expected one of {', '.join(TYPE_TO_KIND)})"
        )


def _namespace(type: str, namespace: str | None) -> str:
    """The ``namespace`` column: ``''`` for cluster-scoped types, ``default`` when not given."""
    if type in CLUSTER_SCOPED_TYPES:
        return ""
    return namespace or "default"


def _describe(type: str, namespace: str, name: str) -> str:
    kind = TYPE_TO_KIND.get(type, type)
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__
