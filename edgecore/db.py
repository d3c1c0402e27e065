"""``edgecore.db``: the one SQLite file the edge's stores share, its schema and its transactions.

Why one file and one schema: metamanager's cache, the twin's tables and edged's pod status
outbox live side by side in ``DATA_DIR/edgecore.db`` (as in KubeEdge), each store on its own
connections. One list of migrations, counted by ``PRAGMA user_version``, describes the whole
file, so whichever store opens it first brings every table up to date, and a file written by a
newer edgecore is refused whole instead of table by table.

Every write goes through :func:`transaction` (``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on
any exception and on cancellation: a half-open transaction would block every later write).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import aiosqlite

from wire.errors import ConfigError

log = logging.getLogger(__name__)

#: milliseconds a connection waits for another connection's transaction on the same file
BUSY_TIMEOUT_MS = 5000

#: SQLite's page cache of a reader, KiB (its default is 2 MiB): listing a large cache through
#: the local API would fill it with pages the OS page cache holds anyway. Writers keep the
#: default: their pages are the B-tree paths a batch of upserts walks again and again.
READER_CACHE_KIB = 512

#: Schema migrations of the whole file, applied in order; ``PRAGMA user_version`` counts those
#: applied. Never edit an entry that has shipped: append a new one.
#:
#: The first four create with ``IF NOT EXISTS``: releases before the single scheme counted the
#: cache alone in ``user_version`` (1), the twin's tables in a table of their own (``twin_schema``)
#: and the pod status outbox nowhere, so a file from them may hold any of these tables at
#: version 0 or 1; they are adopted as they are. Entry 5 drops the old counter. Later entries
#: need no ``IF NOT EXISTS``.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: metamanager's cache (KubeEdge's meta table, plus columns that spare parsing JSON)
    (
        """CREATE TABLE IF NOT EXISTS meta (
            key TEXT PRIMARY KEY NOT NULL,
            type TEXT NOT NULL,
            namespace TEXT,
            name TEXT NOT NULL,
            resource_version TEXT NOT NULL,
            value TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS meta_type_namespace ON meta (type, namespace)",
    ),
    # 2: the twin's members, properties and edge->cloud outbox (KubeEdge's names and columns)
    (
        """CREATE TABLE IF NOT EXISTS device (
            id TEXT PRIMARY KEY NOT NULL,
            name TEXT NOT NULL,
            namespace TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            state TEXT NOT NULL DEFAULT 'unknown',
            last_online TEXT NOT NULL DEFAULT ''
        )""",
        """CREATE TABLE IF NOT EXISTS device_twin (
            deviceid TEXT NOT NULL,
            name TEXT NOT NULL,
            expected TEXT,
            expected_meta TEXT,
            expected_version TEXT,
            actual TEXT,
            actual_meta TEXT,
            actual_version TEXT,
            optional INTEGER,
            attr_type TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (deviceid, name)
        )""",
        """CREATE TABLE IF NOT EXISTS outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            msg_id TEXT NOT NULL UNIQUE,
            resource TEXT NOT NULL,
            content TEXT NOT NULL,
            created INTEGER NOT NULL
        )""",
    ),
    # 3: DeviceModels deleted in the cloud while member devices used them, kept as they last
    # were so that a restart does not lose them (see edgecore.devicetwin.desired)
    (
        """CREATE TABLE IF NOT EXISTS kept_model (
            id TEXT PRIMARY KEY NOT NULL,
            body TEXT NOT NULL
        )""",
    ),
    # 4: edged's pod status outbox, latest status per pod (see edgecore.edged.statusbox)
    (
        """CREATE TABLE IF NOT EXISTS pod_status_outbox (
            key TEXT PRIMARY KEY NOT NULL,
            uid TEXT NOT NULL,
            seq INTEGER NOT NULL,
            status TEXT NOT NULL
        )""",
    ),
    # 5: the twin tables' own counter of the releases before this scheme
    ("DROP TABLE IF EXISTS twin_schema",),
)


async def connect(path: Path, *, what: str, read_only: bool = False) -> aiosqlite.Connection:
    """A connection to the edge database at ``path`` (created owner-only if missing).

    A writer (``read_only`` false) puts the file in WAL mode with ``synchronous=FULL`` (what is
    acknowledged must survive a power cut) and applies the migrations the file has not seen.
    A reader is ``query_only``; in WAL mode it sees committed data only.
    ``isolation_level=None``: no implicit transactions; writes use :func:`transaction`.

    Raises:
        ConfigError: ``what`` (e.g. "the edge cache") cannot be opened at ``path``: not a
            usable database, or its schema is newer than this program knows.
    """
    # Owner-only before SQLite creates it, so there is no window with umask permissions: the
    # file caches secrets. SQLite gives -wal and -shm the database file's mode.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    _restrict(path)
    db = await aiosqlite.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        await db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        if read_only:
            await db.execute(f"PRAGMA cache_size=-{READER_CACHE_KIB}")
            await db.execute("PRAGMA query_only=ON")
        else:
            await _wal(db)
            await db.execute("PRAGMA synchronous=FULL")
            await migrate(db, path)
        # touch the database so -wal and -shm exist now and get their mode fixed below
        await (await db.execute("SELECT count(*) FROM sqlite_master")).fetchall()
    except BaseException as exc:
        await db.close()
        if isinstance(exc, sqlite3.Error):
            raise ConfigError(f"cannot open {what} {path}: {exc}") from exc
        raise
    for suffix in ("-wal", "-shm"):
        _restrict(path.with_name(path.name + suffix))
    return db


async def _wal(db: aiosqlite.Connection) -> None:
    """Put the file in WAL mode (it stays so). Switching needs the file to itself and SQLite
    does not wait for that with the busy timeout: stores opening a new file at once retry."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.005)


async def migrate(db: aiosqlite.Connection, path: Path) -> None:
    """Apply the migrations ``db`` has not seen, all in one transaction.

    The version is read inside the transaction, so two stores opening the file at once
    migrate it once.

    Raises:
        ConfigError: the file's schema is newer than this program knows.
        sqlite3.Error: SQLite refused; nothing was changed.
    """
    async with transaction(db):
        version = await user_version(db)
        if version > len(MIGRATIONS):
            raise ConfigError(
                f"{path} has schema version {version}; this edgecore knows up to "
                f"{len(MIGRATIONS)} (written by a newer edgecore?)"
            )
        if version == len(MIGRATIONS):
            return
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                await db.execute(statement)
        # PRAGMA takes no parameter; the number is our own int. It is part of the transaction.
        await db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
    log.info("%s migrated from schema version %d to %d", path, version, len(MIGRATIONS))


async def user_version(db: aiosqlite.Connection) -> int:
    """The number of migrations the file has seen."""
    async with db.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


@asynccontextmanager
async def transaction(db: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
    """``async with transaction(db):`` one write transaction (one fsync if it wrote anything).

    Committed when the block ends, rolled back when it raises or is cancelled.
    """
    await db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        await db.execute("COMMIT")
    except BaseException:
        # also on cancellation: a half-open transaction would block every later write
        try:
            await db.execute("ROLLBACK")
        except sqlite3.Error:
            log.debug("rollback failed", exc_info=True)
        raise


def _restrict(path: Path) -> None:
    """Owner-only permissions: the file caches secrets."""
    with suppress(FileNotFoundError):
        os.chmod(path, 0o600)
