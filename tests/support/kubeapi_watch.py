"""The emulator's watch streams (:mod:`tests.support.kubeapi`): replay, live events, bookmarks.

A watch (``?watch=1&resourceVersion=RV&allowWatchBookmarks=true&timeoutSeconds=N``) streams
newline-delimited JSON events after RV from the kept history (:mod:`tests.support.kubeapi_state`),
then live ones as :meth:`WatchStreams.fan_out` hands them over. An RV older than the history
gets one watch ``ERROR`` event carrying a ``Status`` with code 410, as the API server sends;
bookmarks (with the current RV) come after ``bookmark_interval`` seconds of silence. Without an
RV (or with ``0``) the watch starts with ADDED events for what exists. A filtered watch
reports an object that starts matching as ADDED and one that stops matching as DELETED
(:func:`tests.support.kubeapi_model.translate`).

The test hooks (end every stream, with a 410 or abruptly; make them silent) act here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field

from aiohttp import web

from tests.support.kubeapi_model import Obj, Predicate, ResourceType, translate
from tests.support.kubeapi_state import ApiError, Event, ObjectState


@dataclass(eq=False)
class _Watch:
    res: ResourceType
    match: Predicate
    #: events, or the commands "close", "abort", "gone" from the test hooks
    queue: asyncio.Queue[Event | str] = field(default_factory=asyncio.Queue)
    killed: asyncio.Event = field(default_factory=asyncio.Event)


class WatchStreams:
    """Every open watch of one emulator, fed by its :class:`ObjectState`."""

    def __init__(self, state: ObjectState, *, bookmark_interval: float) -> None:
        self.state = state
        self.bookmark_interval = bookmark_interval
        self._watches: set[_Watch] = set()
        self._thawed = asyncio.Event()
        self._thawed.set()
        #: BOOKMARK events written so far, over all watches
        self.bookmarks_sent = 0
        state.listeners.add(self.fan_out)

    @property
    def open(self) -> int:
        return len(self._watches)

    def fan_out(self, event: Event) -> None:
        for watch in self._watches:
            if watch.res == event.res:
                watch.queue.put_nowait(event)

    # ------------------------------------------------------------------ test hooks

    def expire(self) -> None:
        """End every open watch with an ERROR 410 event."""
        for watch in self._watches:
            watch.queue.put_nowait("gone")

    async def kill(self, *, abrupt: bool = False) -> None:
        """End every open watch stream (``abrupt``: reset the connection instead).

        Returns once those streams are gone (watches opened meanwhile are left alone).
        """
        killed = list(self._watches)
        for watch in killed:
            watch.queue.put_nowait("abort" if abrupt else "close")
            watch.killed.set()
        for _ in range(400):
            if not any(watch in self._watches for watch in killed):
                return
            await asyncio.sleep(0.005)

    def freeze(self) -> None:
        """Open and new watches send nothing (no events, no bookmarks) until thawed."""
        self._thawed.clear()

    def thaw(self) -> None:
        self._thawed.set()

    # ------------------------------------------------------------------ serving

    async def serve(
        self, request: web.Request, res: ResourceType, ns: str, query: dict[str, str]
    ) -> web.StreamResponse:
        """Answer one watch request, for as long as it lasts."""
        match = self.state.matcher(res, ns, query)
        since = query.get("resourceVersion", "")
        bookmarks = query.get("allowWatchBookmarks") in ("1", "true")
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        if since not in ("", "0") and not since.isdigit():
            raise ApiError(400, "BadRequest", f"invalid resource version {since!r}")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        # Replayed and registered with no await in between: no event is missed or doubled.
        watch = _Watch(res, match)
        try:
            if since in ("", "0"):
                initial = [{"type": "ADDED", "object": o} for o in self.state.current(res, match)]
            else:
                initial = self.state.replay(res, int(since), match)
        except ApiError as exc:
            with contextlib.suppress(ConnectionError):
                await response.write(_line({"type": "ERROR", "object": exc.body}))
                await response.write_eof()
            return response
        self._watches.add(watch)
        try:
            for item in initial:
                await response.write(_line(item))
            await self._stream(request, response, watch, bookmarks, timeout)
            await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._watches.discard(watch)
        return response

    async def _stream(
        self,
        request: web.Request,
        response: web.StreamResponse,
        watch: _Watch,
        bookmarks: bool,
        timeout: float | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            wait = self.bookmark_interval if bookmarks else 3600.0
            if deadline is not None:
                wait = min(wait, deadline - loop.time())
                if wait <= 0:
                    return
            try:
                item = await asyncio.wait_for(watch.queue.get(), wait)
            except TimeoutError:
                if bookmarks and self._thawed.is_set():
                    # Every event up to the current RV was queued synchronously and the queue
                    # is empty, so this watch has sent all of them: the bookmark is honest.
                    meta = {"resourceVersion": str(self.state.rv)}
                    mark = {"kind": watch.res.kind, "apiVersion": watch.res.api_version}
                    await response.write(
                        _line({"type": "BOOKMARK", "object": mark | {"metadata": meta}})
                    )
                    self.bookmarks_sent += 1
                continue
            if not self._thawed.is_set() and not watch.killed.is_set():
                waiters = {
                    asyncio.ensure_future(self._thawed.wait()),
                    asyncio.ensure_future(watch.killed.wait()),
                }
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()
            if item == "close":
                return
            if item == "abort":
                if request.transport is not None:
                    request.transport.abort()
                raise ConnectionResetError("aborted by the test")
            if item == "gone":
                gone = ApiError(410, "Expired", "too old resource version (history compacted)")
                await response.write(_line({"type": "ERROR", "object": gone.body}))
                return
            assert isinstance(item, Event)
            found = translate(item.type, item.obj, item.old, watch.match)
            if found is not None:
                await response.write(_line({"type": found[0], "object": found[1]}))


def _line(event: Obj) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"
