"""The durable outbox of pod status: latest wins per pod, kept until the cloud answers.

Why its own table and not the twin's outbox rows: twin reports merge property by property and
every version counts; a pod's status is one document whose newest state replaces every older
one. An upsert keyed by pod gives exactly that: while the cloud is away a pod that changed a
hundred times holds one row, and what reaches the cloud after reconnect is its latest status.
The delivery rule is the twin's (:mod:`edgecore.devicetwin.uplink`): rows are sent on every
``connected`` and right after they are written while connected; a row is deleted only when
the cloud answered the message that carried it, and only if no newer status replaced it
meanwhile (``seq`` guard).

Same file as the cache (``edgecore.db``, schema and transactions from :mod:`edgecore.db`), its
own connection.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from edgecore import db
from wire.errors import ConfigError, StoreError


@dataclass(frozen=True, slots=True)
class StatusRow:
    #: ``{namespace}/{name}``
    key: str
    uid: str
    seq: int
    status: dict[str, Any]


class StatusBox:
    """Upsert, list and acknowledge pod status rows."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._seq = 0

    @classmethod
    async def open(cls, path: Path) -> StatusBox:
        """Open the outbox in the edge database at ``path``.

        Raises:
            StoreError: the file cannot be opened (edged restarts and tries again).
        """
        try:
            conn = await db.connect(path, what="the pod status outbox in")
        except ConfigError as exc:
            raise StoreError(str(exc)) from exc
        try:
            async with conn.execute("SELECT COALESCE(MAX(seq), 0) FROM pod_status_outbox") as cur:
                row = await cur.fetchone()
        except Exception as exc:
            await conn.close()
            raise StoreError(f"cannot open the pod status outbox in {path}: {exc}") from exc
        box = cls(conn)
        box._seq = int(row[0]) if row else 0
        return box

    async def close(self) -> None:
        await self._db.close()

    async def put(self, rows: list[tuple[str, str, dict[str, Any]]]) -> list[StatusRow]:
        """Store the newest status of each ``(key, uid, status)``, replacing older ones."""
        out = []
        values = []
        for key, uid, status in rows:
            self._seq += 1
            out.append(StatusRow(key, uid, self._seq, status))
            values.append((key, uid, self._seq, json.dumps(status, separators=(",", ":"))))
        try:
            async with db.transaction(self._db) as conn:
                await conn.executemany(
                    "INSERT INTO pod_status_outbox (key, uid, seq, status) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET uid = excluded.uid, seq = excluded.seq, "
                    "status = excluded.status",
                    values,
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot store pod status: {exc}") from exc
        return out

    async def pending(self) -> list[StatusRow]:
        async with self._db.execute(
            "SELECT key, uid, seq, status FROM pod_status_outbox ORDER BY seq"
        ) as cur:
            rows = await cur.fetchall()
        return [StatusRow(str(k), str(u), int(s), json.loads(t)) for k, u, s, t in rows]

    async def delivered(self, key: str, seq: int) -> None:
        """The cloud has the status of row ``seq``: drop it unless a newer one replaced it."""
        await self._db.execute(
            "DELETE FROM pod_status_outbox WHERE key = ? AND seq = ?", (key, seq)
        )
