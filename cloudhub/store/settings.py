"""The embedded store's settings: how much history it keeps and how it batches SQLite work.

The batch sizes trade round trips against statement size (see :mod:`cloudhub.store.embedded`
for why round trips are what a write costs). Their upper bounds keep a statement below
SQLite's limit of 32,766 parameters.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from hive.flags import Positive

#: SQLite's default SQLITE_MAX_VARIABLE_NUMBER (since 3.32)
_SQLITE_MAX_PARAMETERS = 32_766


class StoreSettings(BaseModel):
    """What :class:`~cloudhub.store.embedded.EmbeddedStore` is tuned by; defaults suit a fleet
    of thousands of nodes."""

    model_config = ConfigDict(frozen=True)

    #: events kept for ``watch(type, since)`` replay. At ~1 KiB an event that is ~100 MiB at
    #: most, and it covers a full re-apply of a large fleet's manifests while an
    #: edgecontroller reconnects
    history: Positive = 100_000
    #: events a watcher may fall behind before it is dropped with Gone. Large enough to absorb
    #: a bulk apply of thousands of objects while the consumer is busy; small enough to bound
    #: memory
    watch_buffer: Positive = 10_000
    #: rows fetched per round trip when a watch replays the event log
    replay_page: Positive = 500
    #: keys looked up per SELECT when a write reads the objects it changes (4 parameters each)
    read_chunk: int = Field(default=500, ge=1, le=_SQLITE_MAX_PARAMETERS // 4)
    #: rows per multi-row INSERT (6 parameters a row; see
    #: :func:`~cloudhub.store.sqlite_schema.chunked_rows` for why not ``executemany``)
    rows_per_statement: int = Field(default=500, ge=1, le=_SQLITE_MAX_PARAMETERS // 6)
