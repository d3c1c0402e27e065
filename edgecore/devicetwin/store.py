"""The twin's SQLite tables: device, device_twin and the edge→cloud outbox.

Why the outbox lives in the same transaction as the twin: a mapper's report is answered
(``.../update/result``) only after it is on disk, and the cloud must eventually see every
answered report. Writing the twin row and the outbox row in one transaction makes "stored" and
"will be sent" the same fact: after a power cut either both are there or neither is (and then
the mapper got no result and republishes, QoS 1). KubeEdge instead drops edge→cloud twin
updates while offline, so its cloud can stay stale or revert.

Why group commit: every commit is one fsync (``synchronous=FULL``: an acknowledged report must
survive power loss). :meth:`TwinStore.commit` takes a :class:`WriteSet` holding a whole batch of
messages (twin upserts, outbox inserts, outbox deletes for the cloud's ACKs), so a burst of
reports costs one fsync per batch instead of one per report.

The tables keep KubeEdge's names and columns (``device``, ``device_twin`` with ``expected``,
``expected_meta``, ``expected_version``, ``actual``..., ``attr_type``), values as strings and
metadata and versions as small JSON objects, so the file stays recognisable to anyone who knows
KubeEdge's ``edgecore.db``. A tombstone is ``"deleted": true`` in the value's metadata.

The file is shared with metamanager (its ``meta`` table); its schema, the twin's tables
included, is :mod:`edgecore.db`'s. Two connections, as metamanager does: the writer, and a
reader that in WAL mode sees only committed rows (the outbox sender must never send a row that
might still roll back).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from edgecore import db
from wire.errors import StoreError
from wire.twin import Twin, TwinValue

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: SQLite's greatest rowid
_MAX_SEQ = 2**63 - 1


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A row of ``device``: membership and the state the mapper last reported."""

    id: str
    name: str
    namespace: str
    description: str = ""
    state: str = "unknown"
    last_online: str = ""


@dataclass(frozen=True, slots=True)
class TwinRecord:
    """A row of ``device_twin``."""

    device_id: str
    name: str
    twin: Twin
    optional: bool | None = None
    #: the property's type as written in twin ``metadata.type`` (``float``...)
    attr_type: str = ""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One upstream message waiting for the cloud's ACK."""

    seq: int
    msg_id: str
    resource: str
    content: dict[str, Any]
    created: int


@dataclass(frozen=True, slots=True)
class NewOutboxRow:
    msg_id: str
    resource: str
    content: dict[str, Any]
    created: int


#: rows of one resource, oldest first -> ``(msg_id, content)`` of the one row that replaces them
MergeRows = Callable[[list[NewOutboxRow]], tuple[str, dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Compaction:
    """What :meth:`TwinStore.compact_outbox` did."""

    rows_before: int
    rows_after: int
    #: the greatest seq in the outbox afterwards (0 when empty)
    last_seq: int


@dataclass
class WriteSet:
    """Everything one transaction writes."""

    devices: dict[str, DeviceRecord] = field(default_factory=dict)
    #: device ids whose device and device_twin rows go
    removed_devices: set[str] = field(default_factory=set)
    twins: dict[tuple[str, str], TwinRecord] = field(default_factory=dict)
    outbox: list[NewOutboxRow] = field(default_factory=list)
    #: outbox msg ids the cloud answered
    acked: set[str] = field(default_factory=set)
    #: kept DeviceModels by ``{ns}/{name}``: the object to keep, or None to forget it
    kept_models: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(
            self.devices
            or self.removed_devices
            or self.twins
            or self.outbox
            or self.acked
            or self.kept_models
        )


#: compact JSON, one encoder for all (``json.dumps`` with options builds one per call)
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _value_columns(v: TwinValue | None) -> tuple[str | None, str | None, str | None]:
    """``(value, meta, version)`` columns; meta and version as ``_dumps`` would write them
    (formatted directly: the fields are ints and a flag, and this runs per stored value)."""
    if v is None:
        return None, None, None
    ts, cloud, edge = int(v.timestamp), int(v.cloud), int(v.edge)
    meta = f'{{"timestamp":{ts},"deleted":true}}' if v.deleted else f'{{"timestamp":{ts}}}'
    return v.value, meta, f'{{"cloud":{cloud},"edge":{edge}}}'


def _value_from(value: str | None, meta: str | None, version: str | None) -> TwinValue | None:
    if version is None:
        return None
    ver = json.loads(version)
    m = json.loads(meta) if meta else {}
    return TwinValue(
        value,
        int(ver.get("cloud", 0)),
        int(ver.get("edge", 0)),
        int(m.get("timestamp", 0)),
        bool(m.get("deleted", False)),
    )


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a shielded write's outcome as seen when its caller was cancelled meanwhile."""
    if not task.cancelled():
        task.exception()


class TwinStore:
    """The twin's tables. Create with :meth:`open`; one instance per database file.

    Two aiosqlite connections: a writer and a read-only reader (reads see committed data
    only). A commit batches its rows per statement (``executemany``), so a transaction costs a
    handful of hand-offs to the writer's thread whatever the number of reports in it.
    """

    def __init__(
        self,
        path: Path,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
    ) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        self._lock = asyncio.Lock()
        self._closed = False
        #: transactions committed (for metrics and tests of batching)
        self.commits = 0

    @classmethod
    async def open(cls, path: Path) -> TwinStore:
        """Open (creating if needed) the database at ``path`` and bring the twin tables up.

        Raises:
            ConfigError: not a usable database, or a schema newer than this program.
        """
        writer = await db.connect(path, what="the twin tables in")
        try:
            reader = await db.connect(path, what="the twin tables in", read_only=True)
        except BaseException:
            await writer.close()
            raise
        return cls(path, writer, reader)

    async def close(self) -> None:
        """Close both connections. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        async with self._lock:
            await self._reader.close()
            await self._writer.close()

    # -- writes -------------------------------------------------------------------------------

    async def commit(self, writes: WriteSet) -> int:
        """Write everything in ``writes`` in one transaction (one fsync).

        Returns:
            the ``seq`` of the last outbox row this transaction inserted (0 if it inserted
            none): every row committed later has a greater one (AUTOINCREMENT).

        Raises:
            StoreError: SQLite refused; nothing was written.
        """
        if not writes:
            return 0
        # Shielded: a cancelled caller must not lose track of a transaction that goes on.
        task = asyncio.ensure_future(self._commit(writes))
        task.add_done_callback(_retrieve)
        return await asyncio.shield(task)

    async def _commit(self, w: WriteSet) -> int:
        last = await self._locked(functools.partial(_write, w=w), "twin store write failed")
        self.commits += 1
        return last

    async def _locked(self, work: Callable[[aiosqlite.Connection], Awaitable[_T]], what: str) -> _T:
        """``work`` in one write transaction, one writer at a time.

        Raises:
            StoreError: closed, or SQLite refused (``what: reason``); nothing was written.
        """
        async with self._lock:
            if self._closed:
                raise StoreError("the twin store is closed")
            try:
                async with db.transaction(self._writer) as conn:
                    return await work(conn)
            except sqlite3.Error as exc:
                raise StoreError(f"{what}: {exc}") from exc

    # -- reads (committed data only) ----------------------------------------------------------

    async def load(self) -> tuple[dict[str, DeviceRecord], list[TwinRecord]]:
        """Every device row, and every twin row."""
        async with self._reader.execute(
            "SELECT id, name, namespace, description, state, last_online FROM device"
        ) as cur:
            devices = {r[0]: DeviceRecord(*r) for r in await cur.fetchall()}
        twins: list[TwinRecord] = []
        async with self._reader.execute(
            "SELECT deviceid, name, expected, expected_meta, expected_version, actual,"
            " actual_meta, actual_version, optional, attr_type FROM device_twin"
            " ORDER BY deviceid, name"
        ) as cur:
            for row in await cur.fetchall():
                dev, name, ev, em, ever, av, am, aver, opt, typ = row
                try:
                    twin = Twin(_value_from(ev, em, ever), _value_from(av, am, aver))
                except (ValueError, TypeError, AttributeError):
                    log.warning("twin row %s/%s is damaged; ignoring it", dev, name)
                    continue
                twins.append(
                    TwinRecord(dev, name, twin, None if opt is None else bool(opt), typ or "")
                )
        return devices, twins

    async def kept_models(self) -> dict[str, dict[str, Any]]:
        """DeviceModels kept after the cloud deleted them, by ``{ns}/{name}``."""
        async with self._reader.execute("SELECT id, body FROM kept_model") as cur:
            rows = await cur.fetchall()
        kept: dict[str, dict[str, Any]] = {}
        for model_id, body in rows:
            try:
                kept[model_id] = json.loads(body)
            except ValueError:
                log.warning("kept device model %s is damaged; ignoring it", model_id)
        return kept

    async def pending(self, *, after: int = 0, limit: int = 256) -> list[OutboxRow]:
        """Outbox rows with ``seq > after``, oldest first."""
        rows, _ = await self.pending_page(after=after, upto=None, limit=limit)
        return rows

    async def pending_page(
        self, *, after: int, upto: int | None, limit: int
    ) -> tuple[list[OutboxRow], int | None]:
        """Outbox rows with ``after < seq <= upto`` (no upper bound if ``None``), oldest first.

        Returns:
            the rows (damaged ones skipped) and where the next page starts: the last seq read
            when the page was full, ``None`` when no row is left in the range.
        """
        async with self._reader.execute(
            "SELECT seq, msg_id, resource, content, created FROM outbox"
            " WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
            (after, _MAX_SEQ if upto is None else upto, limit),
        ) as cur:
            rows = list(await cur.fetchall())
        out: list[OutboxRow] = []
        for seq, msg_id, resource, content, created in rows:
            try:
                obj = json.loads(content)
            except ValueError:
                log.warning("outbox row %s is not valid JSON; skipping it", msg_id)
                continue
            out.append(OutboxRow(seq, msg_id, resource, obj, created))
        return out, (int(rows[-1][0]) if len(rows) >= limit else None)

    async def last_seq(self) -> int:
        """The greatest outbox seq committed so far (0 for an empty outbox)."""
        async with self._reader.execute("SELECT max(seq) FROM outbox") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    async def compact_outbox(self, merge: MergeRows) -> Compaction:
        """Fold the outbox rows of each resource into one row, in one transaction.

        For the link-down stretch only (the module's caller makes sure): no row may belong to
        a message in flight. Each resource with several rows gets one new row (a new id and
        seq, ``merge``'s content, the newest row's ``created``) and loses the others; rows that
        are not valid JSON are left alone. Lossless as long as ``merge`` is: the cloud keeps
        the greatest version per property, so one row with the newest of each says it all.

        Raises:
            StoreError: SQLite refused; nothing was changed.
        """
        result = await self._locked(
            functools.partial(_compact, merge=merge), "twin outbox compaction failed"
        )
        if result.rows_before != result.rows_after:
            self.commits += 1
        return result

    async def outbox_figures(self) -> tuple[int, int | None]:
        """Rows in the outbox, and when the oldest was written (unix ms; None when empty)."""
        async with self._reader.execute("SELECT count(*), min(created) FROM outbox") as cur:
            row = await cur.fetchone()
        if not row:
            return 0, None
        return int(row[0]), (int(row[1]) if row[1] is not None else None)

    async def outbox_size(self) -> int:
        async with self._reader.execute("SELECT count(*) FROM outbox") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0


async def _write(db: aiosqlite.Connection, w: WriteSet) -> int:
    if w.removed_devices:
        gone = [(d,) for d in w.removed_devices]
        await db.executemany("DELETE FROM device_twin WHERE deviceid = ?", gone)
        await db.executemany("DELETE FROM device WHERE id = ?", gone)
    if w.devices:
        await db.executemany(
            "INSERT INTO device (id, name, namespace, description, state, last_online)"
            " VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET description = excluded.description,"
            " state = excluded.state, last_online = excluded.last_online",
            [
                (d.id, d.name, d.namespace, d.description, d.state, d.last_online)
                for d in w.devices.values()
            ],
        )
    if w.twins:
        rows = []
        for t in w.twins.values():
            e = _value_columns(t.twin.expected)
            a = _value_columns(t.twin.actual)
            opt = None if t.optional is None else int(t.optional)
            rows.append((t.device_id, t.name, *e, *a, opt, t.attr_type))
        await db.executemany(
            "INSERT INTO device_twin (deviceid, name, expected, expected_meta,"
            " expected_version, actual, actual_meta, actual_version, optional, attr_type)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (deviceid, name) DO UPDATE SET expected = excluded.expected,"
            " expected_meta = excluded.expected_meta,"
            " expected_version = excluded.expected_version, actual = excluded.actual,"
            " actual_meta = excluded.actual_meta, actual_version = excluded.actual_version,"
            " optional = excluded.optional, attr_type = excluded.attr_type",
            rows,
        )
    last = 0
    if w.outbox:
        await db.executemany(
            "INSERT INTO outbox (msg_id, resource, content, created) VALUES (?, ?, ?, ?)",
            [(r.msg_id, r.resource, _dumps(r.content), r.created) for r in w.outbox],
        )
        async with db.execute("SELECT last_insert_rowid()") as cur:
            row = await cur.fetchone()
        last = int(row[0]) if row else 0
    if w.acked:
        await db.executemany("DELETE FROM outbox WHERE msg_id = ?", [(m,) for m in sorted(w.acked)])
    for model_id, body in w.kept_models.items():
        if body is None:
            await db.execute("DELETE FROM kept_model WHERE id = ?", (model_id,))
        else:
            await db.execute(
                "INSERT INTO kept_model (id, body) VALUES (?, ?)"
                " ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                (model_id, _dumps(body)),
            )
    return last


async def _compact(db: aiosqlite.Connection, merge: MergeRows) -> Compaction:
    """The work of :meth:`TwinStore.compact_outbox`, inside its transaction."""
    async with db.execute("SELECT count(*) FROM outbox") as cur:
        row = await cur.fetchone()
    before = int(row[0]) if row else 0
    many = "SELECT resource FROM outbox GROUP BY resource HAVING count(*) > 1"
    async with db.execute(many) as cur:
        resources = [r[0] for r in await cur.fetchall()]
    removed = 0
    for resource in resources:
        async with db.execute(
            "SELECT seq, msg_id, content, created FROM outbox WHERE resource = ? ORDER BY seq",
            (resource,),
        ) as cur:
            found = list(await cur.fetchall())
        seqs: list[tuple[int]] = []
        rows: list[NewOutboxRow] = []
        for seq, msg_id, content, created in found:
            try:
                obj = json.loads(content)
            except ValueError:
                continue  # left for the sender, which skips and logs it
            if isinstance(obj, dict):
                seqs.append((seq,))
                rows.append(NewOutboxRow(msg_id, resource, obj, created))
        if len(rows) < 2:
            continue
        msg_id, content_obj = merge(rows)
        await db.executemany("DELETE FROM outbox WHERE seq = ?", seqs)
        await db.execute(
            "INSERT INTO outbox (msg_id, resource, content, created) VALUES (?, ?, ?, ?)",
            (msg_id, resource, _dumps(content_obj), rows[-1].created),
        )
        removed += len(rows) - 1
    async with db.execute("SELECT max(seq) FROM outbox") as cur:
        row = await cur.fetchone()
    last = int(row[0]) if row and row[0] is not None else 0
    return Compaction(before, before - removed, last)
