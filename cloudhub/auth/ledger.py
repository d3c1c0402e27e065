"""Persistent records of join-token uses and issued node certificates.

Two facts only the cloud can keep: how many times a counted join token was used, and which
certificates it issued to which node and whether they were revoked. :class:`AuthLedger` is the
seam; :class:`SqliteLedger` keeps them in ``DATA_DIR/auth.db`` (mode 0600, WAL,
``synchronous=FULL``: a revocation that was acknowledged must survive a power cut), and
:class:`MemoryLedger` keeps them in a dict for tests and embedders.

Records prune themselves: a token's row is useless once the token expired, and a
certificate's row once the certificate expired (an expired certificate is refused by its date
anyway). So the ledger stays proportional to the live fleet, not to its history.

Serial numbers are up to 159 bits, more than SQLite's integers hold; they are stored as hex.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import aiosqlite

from wire.errors import ConfigError, StoreError, TokenError

log = logging.getLogger(__name__)

AUTH_DB_FILE = "auth.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    jti TEXT PRIMARY KEY,
    uses INTEGER NOT NULL,
    max_uses INTEGER NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS certs (
    serial TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    issued_at REAL NOT NULL,
    not_after REAL NOT NULL,
    revoked_at REAL
);
CREATE INDEX IF NOT EXISTS certs_by_node ON certs (node);
"""


@dataclass(frozen=True, slots=True)
class IssuedRecord:
    """One certificate cloudhub issued."""

    serial: int
    node: str
    #: unix seconds
    issued_at: float
    #: unix seconds
    not_after: float
    #: unix seconds, or None while it is not revoked
    revoked_at: float | None = None


class AuthLedger(Protocol):
    """Where token uses and issued certificates are remembered."""

    async def start(self) -> None:
        """Open files/connections. Called once before anything else.

        Raises:
            ConfigError: the ledger cannot be opened.
        """

    async def close(self) -> None:
        """Release everything. Safe to call twice."""

    async def use_token(self, jti: str, *, max_uses: int, expires_at: float) -> int:
        """Count one use of a counted token; the number of uses including this one.

        Raises:
            TokenError: the token was already used ``max_uses`` times ("token used up").
            StoreError: the count could not be written (the join must fail).
        """
        ...

    async def record_cert(self, record: IssuedRecord) -> None:
        """Remember an issued certificate (before it is handed out).

        Raises:
            StoreError: it could not be written (the certificate must not be handed out).
        """

    async def revoke_node(self, node: str, *, at: float) -> frozenset[int]:
        """Revoke every unrevoked certificate of ``node``; the serials newly revoked.

        Raises:
            StoreError: the revocation could not be written.
        """
        ...

    async def revoked(self, now: float) -> dict[int, str]:
        """Serial -> node of every revoked certificate that has not expired yet at ``now``."""
        ...

    async def live_nodes(self, now: float) -> set[str]:
        """Nodes holding at least one unexpired, unrevoked certificate at ``now``."""
        ...

    async def prune(self, now: float) -> int:
        """Forget expired tokens and certificates; how many records went."""
        ...


class MemoryLedger:
    """An :class:`AuthLedger` in a dict: nothing survives the process."""

    def __init__(self) -> None:
        self._tokens: dict[str, tuple[int, int, float]] = {}
        self._certs: dict[int, IssuedRecord] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def use_token(self, jti: str, *, max_uses: int, expires_at: float) -> int:
        uses, _, _ = self._tokens.get(jti, (0, max_uses, expires_at))
        if uses >= max_uses:
            raise TokenError(f"token used up ({max_uses} of {max_uses} uses)")
        self._tokens[jti] = (uses + 1, max_uses, expires_at)
        return uses + 1

    async def record_cert(self, record: IssuedRecord) -> None:
        self._certs[record.serial] = record

    async def revoke_node(self, node: str, *, at: float) -> frozenset[int]:
        newly = [r for r in self._certs.values() if r.node == node and r.revoked_at is None]
        for r in newly:
            self._certs[r.serial] = replace(r, revoked_at=at)
        return frozenset(r.serial for r in newly)

    async def revoked(self, now: float) -> dict[int, str]:
        return {
            r.serial: r.node
            for r in self._certs.values()
            if r.revoked_at is not None and r.not_after >= now
        }

    async def live_nodes(self, now: float) -> set[str]:
        return {r.node for r in self._certs.values() if r.revoked_at is None and r.not_after >= now}

    async def prune(self, now: float) -> int:
        tokens = [jti for jti, (_, _, exp) in self._tokens.items() if exp < now]
        certs = [s for s, r in self._certs.items() if r.not_after < now]
        for jti in tokens:
            del self._tokens[jti]
        for s in certs:
            del self._certs[s]
        return len(tokens) + len(certs)


class SqliteLedger:
    """An :class:`AuthLedger` in ``auth.db`` (SQLite), created with mode 0600."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._db: aiosqlite.Connection | None = None
        #: one writer at a time: each operation is a short transaction
        self._lock = asyncio.Lock()

    @property
    def path(self) -> Path:
        return self._path

    async def start(self) -> None:
        try:
            # Created owner-only before SQLite opens it; SQLite gives its -wal/-shm files the
            # database file's mode, so they are owner-only too.
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            os.chmod(self._path, 0o600)
            self._db = await aiosqlite.connect(self._path)
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute("PRAGMA synchronous=FULL")
            await self._db.executescript(_SCHEMA)
            await self._db.commit()
        except (OSError, aiosqlite.Error) as exc:
            await self.close()
            raise ConfigError(f"cannot open {self._path}: {exc}") from exc

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError(f"{self._path} is not open")
        return self._db

    async def use_token(self, jti: str, *, max_uses: int, expires_at: float) -> int:
        async with self._lock:
            db = self._conn()
            try:
                cur = await db.execute(
                    "INSERT INTO tokens (jti, uses, max_uses, expires_at) VALUES (?, 1, ?, ?) "
                    "ON CONFLICT (jti) DO UPDATE SET uses = uses + 1 WHERE uses < max_uses "
                    "RETURNING uses",
                    (jti, max_uses, expires_at),
                )
                row = await cur.fetchone()
                await db.commit()
            except aiosqlite.Error as exc:
                raise StoreError(f"cannot count the token use: {exc}") from exc
        if row is None:
            raise TokenError(f"token used up ({max_uses} of {max_uses} uses)")
        uses: int = row[0]
        return uses

    async def record_cert(self, record: IssuedRecord) -> None:
        async with self._lock:
            db = self._conn()
            try:
                await db.execute(
                    "INSERT OR REPLACE INTO certs (serial, node, issued_at, not_after, revoked_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (
                        format(record.serial, "x"),
                        record.node,
                        record.issued_at,
                        record.not_after,
                        record.revoked_at,
                    ),
                )
                await db.commit()
            except aiosqlite.Error as exc:
                raise StoreError(f"cannot record the certificate: {exc}") from exc

    async def revoke_node(self, node: str, *, at: float) -> frozenset[int]:
        async with self._lock:
            db = self._conn()
            try:
                cur = await db.execute(
                    "UPDATE certs SET revoked_at = ? WHERE node = ? AND revoked_at IS NULL "
                    "RETURNING serial",
                    (at, node),
                )
                rows = await cur.fetchall()
                await db.commit()
            except aiosqlite.Error as exc:
                raise StoreError(f"cannot revoke the certificates of {node}: {exc}") from exc
        return frozenset(int(r[0], 16) for r in rows)

    async def revoked(self, now: float) -> dict[int, str]:
        rows = await self._read(
            "SELECT serial, node FROM certs WHERE revoked_at IS NOT NULL AND not_after >= ?",
            (now,),
        )
        return {int(serial, 16): node for serial, node in rows}

    async def live_nodes(self, now: float) -> set[str]:
        rows = await self._read(
            "SELECT DISTINCT node FROM certs WHERE revoked_at IS NULL AND not_after >= ?", (now,)
        )
        return {node for (node,) in rows}

    async def _read(self, sql: str, args: tuple[object, ...]) -> list[Any]:
        try:
            cur = await self._conn().execute(sql, args)
            return list(await cur.fetchall())
        except aiosqlite.Error as exc:
            raise StoreError(f"cannot read {self._path}: {exc}") from exc

    async def prune(self, now: float) -> int:
        async with self._lock:
            db = self._conn()
            try:
                a = await db.execute("DELETE FROM tokens WHERE expires_at < ?", (now,))
                b = await db.execute("DELETE FROM certs WHERE not_after < ?", (now,))
                await db.commit()
            except aiosqlite.Error as exc:
                log.warning("could not prune %s: %s", self._path, exc)
                return 0
        return max(0, a.rowcount) + max(0, b.rowcount)
