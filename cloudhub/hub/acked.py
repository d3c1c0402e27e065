"""What each stock edge last ACKed, so a reconnect (or a cloud restart) sends only what changed.

Our edgecore states its inventory on every connect; a stock KubeEdge edgecore states none, so
without a record of its own the cloud would send a reconnecting stock edge everything bound to
it again (1,011 frames for 10 changed pods of 1,000). Stock cloudcore keeps one ObjectSync
object per (node, object) in the API server for this; here it is **one compact record per
node**: the certificate serial of the link and key -> resourceVersion of what the edge holds
(:meth:`wire.delivery.Downstream.known`). On reconnect the record stands in for the inventory,
and :class:`~wire.delivery.Downstream` diffs it as it diffs ours.

- Records are written in batches (:class:`AckedLog`, every ``interval``, only the nodes whose
  delivery moved) and once more when a link ends, by the replica that serves the node (and so
  holds its ownership Lease): every 2 s in a local file, every 10 s on a cluster (each write
  is an API request). A crash loses at most the last interval: the keys it ACKed are
  sent again (a key first sent in that interval and deleted while the cloud was down stays on
  the edge; keys in flight at a flush are recorded with an empty version, so the next start
  sends them again or deletes them).
- A record is used only for the certificate it was written under: a stock edge whose data
  dir was wiped joins again with a token and gets a new certificate, so it gets everything.
  A certificate renewal costs one full resync.
- The record is a hint: a missing, unreadable or failing one means a full resync, as before.

Where records live: :class:`SqliteAcked` (``DATA_DIR/stock-acked.db``, embedded mode) or one
ConfigMap per node (:mod:`cloudhub.k8s.acked`, Kubernetes mode); :class:`MemoryAcked` for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiosqlite
from pydantic import BaseModel, ConfigDict, ValidationError

from cloudhub.hub.handshake import Peer
from wire.delivery import Downstream
from wire.errors import StoreError

log = logging.getLogger(__name__)

ACKED_DB_FILE = "stock-acked.db"
#: seconds between batched writes of the records that changed, in a local file
DEFAULT_INTERVAL = 2.0


class AckedRecord(BaseModel):
    """One node's record: what its edge holds, under which certificate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: serial of the certificate the edge's link authenticated with
    serial: int
    #: key -> resourceVersion the edge holds ("" for a key whose ACK was outstanding)
    acked: dict[str, str]

    def encode(self) -> bytes:
        """Compact bytes (gzip of JSON): ~8 bytes a key for pods named in sequence."""
        body = {"serial": format(self.serial, "x"), "acked": self.acked}
        return gzip.compress(json.dumps(body, separators=(",", ":")).encode(), mtime=0)

    @classmethod
    def decode(cls, data: bytes) -> AckedRecord:
        """Raises:
        ValueError: not a record (corrupt, or written by a newer version)."""
        try:
            body = json.loads(gzip.decompress(data))
            return cls(serial=int(body["serial"], 16), acked=body["acked"])
        except (OSError, EOFError, ValueError, KeyError, TypeError, ValidationError) as exc:
            raise ValueError(f"unreadable acked record: {exc}") from exc


class AckedStore(Protocol):
    """Where the records are kept."""

    #: seconds between batched writes (a crash costs the resends of at most this long)
    interval: float

    async def load(self, node: str) -> AckedRecord | None:
        """The node's record, or ``None`` when there is none.

        Raises:
            StoreError: it could not be read (the caller resyncs in full).
        """

    async def save(self, records: Mapping[str, AckedRecord]) -> None:
        """Write these nodes' records, replacing what each had.

        Raises:
            StoreError: not (all) written; the caller tries again at its next flush.
        """

    async def close(self) -> None:
        """Release files/connections. Safe to call twice."""


class MemoryAcked:
    """An :class:`AckedStore` in a dict (tests; nothing survives the process)."""

    interval = DEFAULT_INTERVAL

    def __init__(self) -> None:
        self.records: dict[str, AckedRecord] = {}
        self.saves = 0

    async def load(self, node: str) -> AckedRecord | None:
        return self.records.get(node)

    async def save(self, records: Mapping[str, AckedRecord]) -> None:
        self.saves += 1
        self.records.update(records)

    async def close(self) -> None:
        return None


class SqliteAcked:
    """An :class:`AckedStore` in its own SQLite file (not ``store.db``: these writes must not
    queue behind the object store's). ``synchronous=NORMAL``: a lost write costs resends."""

    interval = DEFAULT_INTERVAL

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            try:
                db = await aiosqlite.connect(self.path)
                await db.execute("PRAGMA journal_mode=WAL")
                await db.execute("PRAGMA synchronous=NORMAL")
                await db.execute(
                    "CREATE TABLE IF NOT EXISTS acked (node TEXT PRIMARY KEY, record BLOB NOT NULL)"
                )
                await db.commit()
            except (OSError, aiosqlite.Error) as exc:
                raise StoreError(f"cannot open {self.path}: {exc}") from exc
            self._db = db
        return self._db

    async def load(self, node: str) -> AckedRecord | None:
        async with self._lock:
            db = await self._conn()
            try:
                async with db.execute("SELECT record FROM acked WHERE node = ?", (node,)) as cur:
                    row = await cur.fetchone()
            except aiosqlite.Error as exc:
                raise StoreError(f"cannot read {self.path}: {exc}") from exc
        if row is None:
            return None
        try:
            return AckedRecord.decode(bytes(row[0]))
        except ValueError as exc:
            raise StoreError(f"node {node}: {exc}") from exc

    async def save(self, records: Mapping[str, AckedRecord]) -> None:
        rows = [(node, record.encode()) for node, record in records.items()]
        async with self._lock:
            db = await self._conn()
            try:
                await db.executemany(
                    "INSERT INTO acked (node, record) VALUES (?, ?) "
                    "ON CONFLICT (node) DO UPDATE SET record = excluded.record",
                    rows,
                )
                await db.commit()
            except aiosqlite.Error as exc:
                raise StoreError(f"cannot write {self.path}: {exc}") from exc

    async def close(self) -> None:
        async with self._lock:
            if self._db is not None:
                db, self._db = self._db, None
                await db.close()


@dataclass(slots=True)
class _Tracked:
    serial: int
    downstream: Downstream
    #: ``sent + acks`` of the downstream at the last snapshot (0: nothing sent yet, so an
    #: edge started from its record rewrites nothing until something moves)
    mark: int = 0


class AckedLog:
    """Keeps the records of the stock edges this hub serves (the pump around the store).

    The hub calls :meth:`begin` when an edge's link is up and :meth:`end` when it ends (both
    ignore edges that state their own inventory); :meth:`run`, a module of its own, writes.
    """

    name = "acked"
    group = "hub"
    enabled = True

    def __init__(self, store: AckedStore, *, interval: float | None = None) -> None:
        self.store = store
        self.interval = store.interval if interval is None else interval
        self._tracked: dict[str, _Tracked] = {}
        #: snapshots waiting for the next write
        self._pending: dict[str, AckedRecord] = {}
        self._wake = asyncio.Event()
        #: records written and reconnects served from a record (metrics, bench)
        self.written = 0
        self.used = 0

    async def begin(self, peer: Peer, downstream: Downstream) -> dict[str, str] | None:
        """A stock edge connected: its inventory by its record (``None``: a full resync, or
        not a stock edge), and its delivery state is tracked from now on."""
        if not peer.stock:
            return None
        known = await self.inventory(peer.node, peer.serial)
        self.track(peer.node, peer.serial, downstream)
        return known

    def end(self, node: str, downstream: Downstream) -> None:
        """The node's link ended: see :meth:`untrack` (nothing for an untracked one)."""
        self.untrack(node, downstream)

    async def inventory(self, node: str, serial: int) -> dict[str, str] | None:
        """What the node's edge holds by its record, or ``None`` (full resync)."""
        tracked = self._tracked.get(node)
        if tracked is not None and tracked.serial == serial:
            # The node's previous link has not been wound up yet: its state is the freshest,
            # and is written now (that link's own end no longer is: the node is the new one's).
            known = tracked.downstream.known()
            self._pending[node] = AckedRecord(serial=serial, acked=known)
            self._wake.set()
            self.used += 1
            return dict(known)
        record = self._pending.get(node)
        if record is None:
            try:
                record = await self.store.load(node)
            except StoreError as exc:
                log.warning("node %s: no acked record (%s); sending everything", node, exc)
                return None
        if record is None:
            return None
        if record.serial != serial:
            log.info("node %s: new certificate since its acked record; sending everything", node)
            return None
        self.used += 1
        return dict(record.acked)

    def track(self, node: str, serial: int, downstream: Downstream) -> None:
        self._tracked[node] = _Tracked(serial, downstream)

    def untrack(self, node: str, downstream: Downstream) -> None:
        """The link ended: its last state is written at once (if it is still the node's)."""
        tracked = self._tracked.get(node)
        if tracked is None or tracked.downstream is not downstream:
            return
        del self._tracked[node]
        if downstream.sent + downstream.acks != tracked.mark:
            self._pending[node] = AckedRecord(serial=tracked.serial, acked=downstream.known())
            self._wake.set()

    def snapshot(self) -> None:
        """Queue a record for every tracked node whose delivery moved since the last one."""
        for node, tracked in self._tracked.items():
            downstream = tracked.downstream
            mark = downstream.sent + downstream.acks
            if mark != tracked.mark:
                tracked.mark = mark
                self._pending[node] = AckedRecord(serial=tracked.serial, acked=downstream.known())

    async def flush(self) -> None:
        """Write what is pending in one batch (kept for the next flush if that fails)."""
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        try:
            await self.store.save(batch)
        except StoreError as exc:
            log.warning("acked records of %d nodes not written: %s", len(batch), exc)
            self._pending = {**batch, **self._pending}
            return
        self.written += len(batch)

    async def run(self) -> None:
        """Snapshot and write every ``interval`` (at once after a link ends) until cancelled;
        then a last write."""
        try:
            while True:
                # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation
                # that arrives as the event is set (a link ending as cloudhub stops), and
                # this loop then outlived its stop
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval):
                        await self._wake.wait()
                self._wake.clear()
                try:
                    self.snapshot()
                    await self.flush()
                except Exception:  # a hint only: never take the hub down with it
                    log.exception("writing acked records failed")
        finally:
            self.snapshot()
            await asyncio.shield(self._final())

    async def _final(self) -> None:
        try:
            await self.flush()
        finally:
            await self.store.close()


__all__ = [
    "ACKED_DB_FILE",
    "AckedLog",
    "AckedRecord",
    "AckedStore",
    "MemoryAcked",
    "SqliteAcked",
]
