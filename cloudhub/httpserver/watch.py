"""``GET /admin/v1/{plural}?watch=true``: the store's watch, as JSON lines for edgectl.

The stream is a Kubernetes watch: without ``resourceVersion`` it starts with an ``ADDED`` for
every object that matches, then follows changes; with one it sends the changes after it (410
when that version is older than the store keeps). Each line is a :class:`wire.admin.WatchLine`.

- **Filters stay correct as objects change.** :class:`WatchView` (pure) remembers which
  objects are in the view: a change that takes an object out of ``namespace``/``labelSelector``
  is sent as ``DELETED``, one that brings it in as ``ADDED``, as Kubernetes does.
- **Node state is not stored data** (see :mod:`cloudhub.httpserver.admin`): a node watch
  also polls the hub's presence every :data:`PRESENCE_POLL` seconds and sends ``MODIFIED``
  when a node goes online or offline, so ``edgectl get nodes -w`` shows it.
- **A quiet stream is told from a dead one** by a ``BOOKMARK`` every :data:`BOOKMARK_EVERY`
  seconds; edgectl gives up on a stream silent for much longer.
- **Every task is owned**: one pump task per stream (the store's iterator cannot be awaited
  with a timeout without closing it), in the handler's TaskGroup, cancelled with it; streams
  end when cloudhub stops (:meth:`WatchStreams.close`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from cloudhub.store.base import ObjectStore, WatchEvent
from wire.admin import BOOKMARK_EVERY, WatchLine, WatchType
from wire.errors import Gone
from wire.kinds import ApiKind
from wire.resources import resource_version_of
from wire.selectors import Selector

logger = logging.getLogger(__name__)

#: Seconds between checks of node presence on a node watch.
PRESENCE_POLL = 1.0
#: Events a slow reader may lag before its pump waits (the store drops it with Gone later).
QUEUE_SIZE = 1024

Present = Callable[[dict[str, Any]], dict[str, Any]]
Key = tuple[str, str]


def _key(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


class WatchView:
    """Which objects a filtered watch shows, and what to send for each store event (pure).

    Args:
        namespace: only this namespace (None: all).
        selector: only objects whose labels match.
    """

    def __init__(self, *, namespace: str | None, selector: Selector) -> None:
        self._namespace = namespace
        self._selector = selector
        #: objects in the view, as stored (node presence is overlaid when sent)
        self.shown: dict[Key, dict[str, Any]] = {}

    def matches(self, obj: dict[str, Any]) -> bool:
        if self._namespace is not None:
            if str((obj.get("metadata") or {}).get("namespace") or "") != self._namespace:
                return False
        return self._selector.matches_object(obj)

    def listed(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The objects of a list that are in the view (each sent as ADDED)."""
        shown = [o for o in items if self.matches(o)]
        self.shown = {_key(o): o for o in shown}
        return shown

    def event(self, type: str, obj: dict[str, Any]) -> WatchType | None:
        """What to send for a store event: its type, ADDED/DELETED when the object enters or
        leaves the view, or None when the view does not change."""
        key = _key(obj)
        was = key in self.shown
        if type == "DELETED" or not self.matches(obj):
            if not was:
                return None
            del self.shown[key]
            return "DELETED"
        self.shown[key] = obj
        return "MODIFIED" if was else "ADDED"


class WatchStreams:
    """The open watch streams of one admin API, so that stopping cloudhub ends them."""

    def __init__(self) -> None:
        self._closing: set[asyncio.Queue[WatchEvent | BaseException | None]] = set()
        self.closed = False

    def close(self) -> None:
        """End every open stream (their handlers return), and any opened from now on."""
        self.closed = True
        for queue in self._closing:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    async def serve(
        self,
        request: web.Request,
        *,
        store: ObjectStore,
        kind: ApiKind,
        view: WatchView,
        since: str,
        present: Present,
        online: Callable[[str], bool] | None,
    ) -> web.StreamResponse:
        """Stream the watch of ``kind`` to ``request`` until the client or cloudhub goes.

        Raises:
            wire.errors.Gone: ``since`` is older than the store keeps (before anything is sent).
        """
        # The view needs the objects there are, also when resuming from ``since``: an object
        # that leaves the view later is sent as DELETED only if the view knows it was in.
        items, listed = await store.list(kind.type)
        items.sort(key=_key)
        shown = view.listed(items)
        stream = store.watch(kind.type, since or listed)
        lines = [] if since else [WatchLine(type="ADDED", object=present(o)) for o in shown]
        since = since or listed
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        queue: asyncio.Queue[WatchEvent | BaseException | None] = asyncio.Queue(QUEUE_SIZE)
        self._closing.add(queue)
        if self.closed:  # cloudhub began stopping while this request was on its way
            queue.put_nowait(None)
        logger.debug("watch of %s opened (since %s)", kind.plural, since or "now")
        try:
            async with asyncio.TaskGroup() as tasks:
                pump = tasks.create_task(_pump(stream, queue), name=f"watch-{kind.plural}")
                try:
                    await _write(response, lines)
                    await self._follow(response, queue, view, since, present, online)
                finally:
                    pump.cancel()
        except ConnectionError:
            pass  # the client went away
        finally:
            self._closing.discard(queue)
            logger.debug("watch of %s closed", kind.plural)
        return response

    async def _follow(
        self,
        response: web.StreamResponse,
        queue: asyncio.Queue[WatchEvent | BaseException | None],
        view: WatchView,
        rv: str,
        present: Present,
        online: Callable[[str], bool] | None,
    ) -> None:
        was_online = {k: online(k[1]) for k in view.shown} if online else {}
        tick = PRESENCE_POLL if online else BOOKMARK_EVERY
        quiet = 0.0
        while True:
            item: WatchEvent | BaseException | object | None
            try:
                item = await asyncio.wait_for(queue.get(), timeout=tick)
            except TimeoutError:
                item = _TICK
            if item is None:
                return
            if isinstance(item, BaseException):
                status: dict[str, Any] = {
                    "kind": "Status",
                    "status": "Failure",
                    "message": str(item),
                }
                if isinstance(item, Gone):
                    status |= {"code": 410, "reason": "Expired"}
                await _write(response, [WatchLine(type="ERROR", object=status)])
                return
            lines: list[WatchLine] = []
            changed: Key | None = None
            if isinstance(item, WatchEvent):
                rv = resource_version_of(item.object) or rv
                sent = view.event(item.type, item.object)
                if sent is not None:
                    changed = _key(item.object)
                    lines.append(WatchLine(type=sent, object=present(item.object)))
            if online:
                for key, obj in view.shown.items():
                    now_online = online(key[1])
                    if was_online.get(key) != now_online:
                        was_online[key] = now_online
                        if key != changed:
                            lines.append(WatchLine(type="MODIFIED", object=present(obj)))
            if lines:
                quiet = 0.0
            elif item is _TICK:
                quiet += tick
                if quiet >= BOOKMARK_EVERY:
                    quiet = 0.0
                    mark = {"kind": "Bookmark", "metadata": {"resourceVersion": rv}}
                    lines.append(WatchLine(type="BOOKMARK", object=mark))
            await _write(response, lines)


#: stands for "nothing arrived within the tick"
_TICK = object()


async def _write(response: web.StreamResponse, lines: list[WatchLine]) -> None:
    if lines:
        text = "".join(line.model_dump_json() + "\n" for line in lines)
        await response.write(text.encode())


async def _pump(
    stream: AsyncIterator[WatchEvent],
    queue: asyncio.Queue[WatchEvent | BaseException | None],
) -> None:
    """Move the store's events into ``queue``; its end or failure goes in as the last item."""
    try:
        async for event in stream:
            await queue.put(event)
        await queue.put(None)
    except Gone as exc:
        await queue.put(exc)
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
