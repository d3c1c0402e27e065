"""glibc's heap, tuned for a long-lived edge: fewer malloc arenas, and the first sync's garbage
given back.

Why: an edge's memory that is not Python's code and objects is glibc's heap. Each thread that
allocates (one per SQLite connection, the executor's) gets an arena of its own, and memory
freed in one arena is not reused by another; ``M_ARENA_MAX`` 2 keeps them to two. The first
sync after a start decodes and stores every object the cloud sends at once; what it freed
stays in the heap until :func:`trim` (``malloc_trim(0)``) returns it. Measured in
``bench/edge_footprint.py`` (bench/README.md); both are no-ops where libc is not glibc.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

#: mallopt's parameter number for the arena limit (glibc's malloc.h)
M_ARENA_MAX = -8
#: arenas an edge keeps: the main thread's and one its worker threads share
ARENAS = 2


def _glibc() -> ctypes.CDLL | None:
    """The C library the interpreter runs on, when it has glibc's malloc tuning calls."""
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols: its libc's among them
        libc.mallopt  # noqa: B018 (glibc has both, musl neither)
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def limit_arenas(arenas: int = ARENAS) -> None:
    """Cap glibc's malloc arenas; call before threads start (arenas made already stay)."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(M_ARENA_MAX, arenas)


def trim() -> None:
    """Collect garbage, then give the heap's free pages back to the OS."""
    gc.collect()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


async def trim_after_sync(
    connected: asyncio.Event,
    commits: Callable[[], int],
    *,
    quiet: float = 1.0,
    limit: float = 120.0,
) -> None:
    """Once the link is up and the cache has committed nothing for ``quiet`` seconds (the
    first sync is over), :func:`trim`; at the latest ``limit`` seconds after the link came up."""
    await connected.wait()
    loop = asyncio.get_running_loop()
    give_up = loop.time() + limit
    seen = commits()
    while loop.time() < give_up:
        await asyncio.sleep(quiet)
        now = commits()
        if now == seen:
            break
        seen = now
    trim()
    log.debug("heap trimmed after the first sync")
