"""Follow one type of a store: list, then watch from the list's resourceVersion, forever.

A watch that ends or expires (:class:`~wire.errors.Gone`) is followed by a re-list; a store
that fails is retried after a jittered, capped backoff. The caller sees a re-list as a fresh
``listed`` call with every object (it diffs against what it holds) and each watch event as it
comes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from cloudhub.store.base import ObjectStore, WatchEvent
from hive.backoff import backoff
from wire.errors import Gone, StoreError, WireError

log = logging.getLogger(__name__)

Listed = Callable[[list[dict[str, Any]]], Awaitable[None]]
Changed = Callable[[WatchEvent], Awaitable[None]]
Failed = Callable[[], Awaitable[None]]


async def follow(
    store: ObjectStore,
    typ: str,
    *,
    listed: Listed,
    changed: Changed,
    failed: Failed | None = None,
    who: str = "",
) -> None:
    """Call ``listed`` with every object of ``typ``, then ``changed`` per change; never returns.

    ``failed`` runs when the store fails, before the backoff's wait (a caller may hand on
    what it holds rather than keep it through the wait); ``who`` names the follower in logs.
    """
    delays = backoff(cap=10.0)
    prefix = f"{who}: " if who else ""
    while True:
        try:
            objects, rv = await store.list(typ)
            await listed(objects)
            delays = backoff(cap=10.0)
            async for event in store.watch(typ, rv):
                await changed(event)
            log.warning("%swatch of %s ended; re-listing", prefix, typ)
        except Gone:
            log.info("%swatch of %s expired (410 Gone); re-listing", prefix, typ)
        except asyncio.CancelledError:
            raise
        except (StoreError, WireError, OSError) as exc:
            if failed is not None:
                await failed()
            delay = next(delays)
            log.warning("%swatching %s failed: %s; retrying in %.1fs", prefix, typ, exc, delay)
            await asyncio.sleep(delay)
