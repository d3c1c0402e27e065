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


async def follow(store: ObjectStore, typ: str, *, listed: Listed, changed: Changed) -> None:
    """Call ``listed`` with every object of ``typ``, then ``changed`` per change; never returns."""
    delays = backoff(cap=10.0)
    while True:
        try:
            objects, rv = await store.list(typ)
            await listed(objects)
            delays = backoff(cap=10.0)
            async for event in store.watch(typ, rv):
                await changed(event)
            log.debug("watch of %s ended; re-listing", typ)
        except Gone:
            log.debug("watch of %s expired (410 Gone); re-listing", typ)
        except asyncio.CancelledError:
            raise
        except (StoreError, WireError, OSError) as exc:
            delay = next(delays)
            log.warning("following %s failed: %s; retrying in %.1fs", typ, exc, delay)
            await asyncio.sleep(delay)
