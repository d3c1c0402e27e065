"""The SQLite side of :mod:`cloudhub.store.embedded`: file, schema, statements, start-up counters.

The file is created mode 0600 before SQLite opens it (SQLite would honour the umask, and the
store holds Secrets); a file someone loosened is tightened back.

It is opened in WAL mode (readers stay cheap) with ``synchronous=FULL``: every commit is
durable, so the cloud does not lose an applied object on a crash.

**Nothing but objects and events is written per commit.** The resourceVersion counter is the
newest event's rv (every rv has exactly one event and the newest is never trimmed), and the
compaction point is the oldest kept event's rv minus one (rvs are contiguous), so both are read
back from the log at start-up (:func:`open_store`). The ``meta`` table older versions wrote on
every commit is still read, and written at close (:func:`write_counters`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from wire.errors import StoreError

# The store's logger: these records keep the name they have always had.
log = logging.getLogger("cloudhub.store.embedded")

SCHEMA_VERSION = 1
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS objects (
        type TEXT NOT NULL,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        uid TEXT NOT NULL,
        rv INTEGER NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (type, namespace, name)
    )""",
    """CREATE TABLE IF NOT EXISTS events (
        rv INTEGER PRIMARY KEY,
        type TEXT NOT NULL,
        event_type TEXT NOT NULL,
        body TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS events_by_type ON events (type, rv)",
    # Written at close only (the log is the source of both at start-up; see the module doc):
    # key 'rv': the last resourceVersion handed out; key 'compacted': every event with an rv at
    # or below it has been trimmed from the log.
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)
_UPSERT_HEAD = "INSERT INTO objects (type, namespace, name, uid, rv, body) VALUES "
_UPSERT_TAIL = (
    " ON CONFLICT (type, namespace, name) DO UPDATE"
    " SET uid = excluded.uid, rv = excluded.rv, body = excluded.body"
)
_EVENTS_HEAD = "INSERT INTO events (rv, type, event_type, body) VALUES "
DELETE_OBJECT = "DELETE FROM objects WHERE type = ? AND namespace = ? AND name = ?"
TRIM_EVENTS = "DELETE FROM events WHERE rv <= ?"
REPLAY_EVENTS = (
    "SELECT rv, event_type, body FROM events"
    " WHERE type = ? AND rv > ? AND rv <= ? ORDER BY rv LIMIT ?"
)


def upsert_sql(count: int) -> str:
    """Insert or replace ``count`` objects rows (type, namespace, name, uid, rv, body).

    Rows are applied in order, so a key given twice ends with its last row.
    """
    return _UPSERT_HEAD + ",".join(["(?, ?, ?, ?, ?, ?)"] * count) + _UPSERT_TAIL


def insert_events_sql(count: int) -> str:
    """Insert ``count`` events rows (rv, type, event_type, body)."""
    return _EVENTS_HEAD + ",".join(["(?, ?, ?, ?)"] * count)


def chunked_rows(
    sql_for: Callable[[int], str], rows: Sequence[Sequence[Any]], per_statement: int
) -> Iterator[tuple[str, list[Any]]]:
    """(statement, flat parameters) writing ``rows``, ``per_statement`` at a time.

    Why multi-row statements: Python's sqlite3 lets go of the GIL around every step, and
    ``executemany`` steps once per row: each row then waited for the event loop's thread to
    hand the GIL back, which under load made a 500-row write take hundreds of milliseconds of
    ping-pong. One statement of many rows is one step
    (:attr:`~cloudhub.store.settings.StoreSettings.rows_per_statement`).
    """
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        yield sql_for(len(chunk)), [value for row in chunk for value in row]


#: Separators in :func:`find_many_sql`'s one-row answer. JSON text never holds a raw control
#: character (its strings escape them), so neither can occur in a body.
FOUND_SEPARATOR = "\x1e"
INDEX_SEPARATOR = "\x1f"


def find_many_sql(count: int) -> str:
    """The SELECT of the stored rows of ``count`` keys (4 parameters each: type, namespace,
    name and the key's index in the list asked for).

    The answer is one row: ``index INDEX_SEPARATOR body`` per key found, joined by
    ``FOUND_SEPARATOR`` (or NULL when none is). One row is one step, so the worker thread
    takes the GIL back once instead of once per object (see :func:`chunked_rows`).
    """
    values = ",".join(["(?, ?, ?, ?)"] * count)
    # CROSS JOIN keeps SQLite on the primary key (an IN over VALUES would scan).
    return (
        "SELECT group_concat(k.column4 || char(31) || o.body, char(30))"
        f" FROM (VALUES {values}) AS k"
        " CROSS JOIN objects AS o"
        " ON o.type = k.column1 AND o.namespace = k.column2 AND o.name = k.column3"
    )


def prepare_file(path: Path) -> None:
    """Create the database file 0600 before SQLite does (it would honour the umask)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            # The store holds Secrets: tighten a file someone loosened.
            log.warning("tightening permissions of %s from %o to 600", path, mode)
            path.chmod(0o600)
    else:
        os.close(fd)


async def open_store(path: Path) -> tuple[aiosqlite.Connection, int, int]:
    """Open (or create) the database; returns it, the resourceVersion and the compaction point.

    Raises:
        StoreError: the file cannot be opened as a store.
    """
    try:
        await asyncio.to_thread(prepare_file, path)
        db = await aiosqlite.connect(path, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"cannot open store {path}: {exc}") from exc
    try:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.execute("BEGIN IMMEDIATE")
        for statement in SCHEMA:
            await db.execute(statement)
        await db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        await db.execute("COMMIT")
        counters = {
            str(k): int(v) for k, v in await db.execute_fetchall("SELECT key, value FROM meta")
        }
        ((newest, oldest),) = await db.execute_fetchall("SELECT max(rv), min(rv) FROM events")
        ((newest_object,),) = await db.execute_fetchall("SELECT max(rv) FROM objects")
    except sqlite3.Error as exc:
        await db.close()
        raise StoreError(f"cannot open store {path}: {exc}") from exc
    # Every rv has exactly one event and the newest event is never trimmed: the log's top
    # is the counter. Events are contiguous, so everything below the oldest was trimmed.
    rv = max(counters.get("rv", 0), newest or 0, newest_object or 0)
    compacted = max(counters.get("compacted", 0), (oldest or 1) - 1)
    return db, rv, compacted


async def write_counters(db: aiosqlite.Connection, rv: int, compacted: int) -> None:
    """Record the counters in ``meta``, for readers of the file that predate the log deriving them.

    Raises:
        sqlite3.Error: the write failed.
    """
    await db.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [("rv", rv), ("compacted", compacted)],
    )
