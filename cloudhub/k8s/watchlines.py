"""A watch stream's lines: each decoded with the object's own bytes kept, and the silence that
ends a half-dead stream. :meth:`cloudhub.k8s.api.KubeApi.watch` reads the stream with them;
they hold no connection, so tests drive them with bytes and a loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp
import pydantic_core


@dataclass(frozen=True, slots=True)
class RawEvent:
    """One line of a watch stream."""

    #: ADDED, MODIFIED, DELETED, BOOKMARK, ERROR (or whatever else the server says)
    type: str
    #: the decoded object (a ``kind: Status`` for ERROR); not necessarily a dict on bad input
    object: Any
    #: ``object``'s JSON text exactly as the server sent it, when it could be cut out cleanly
    body: str | None
    #: another complete event is already in hand (a consumer may batch until the last)
    more: bool = False


def parse_event(line: bytes, *, more: bool = False) -> RawEvent:
    """One watch line (``{"type":T,"object":{...}}``) decoded, with the object's bytes cut out.

    Raises:
        ValueError: the line is not a JSON object with a ``type``.
    """
    decoded = pydantic_core.from_json(line)
    kind = decoded.get("type") if isinstance(decoded, dict) else None
    if not isinstance(kind, str):
        raise ValueError(f"not a watch event: {line[:200]!r}")
    obj = decoded.get("object")
    body = None
    # The API server writes exactly these two members in this order, compactly; then the
    # object is everything between the prefix and the final brace.
    if len(decoded) == 2 and isinstance(obj, dict):
        prefix = _PREFIXES.get(kind) or _prefix(kind)
        if line.startswith(prefix):
            end = len(line.rstrip()) - 1
            if line[end] == 0x7D:  # the final "}"; decoded straight from the line, no copy
                body = str(memoryview(line)[len(prefix) : end], "utf-8")
    return RawEvent(kind, obj, body, more)


def _prefix(kind: str) -> bytes:
    """What a compact watch line of event type ``kind`` starts with, up to its object."""
    return b'{"type":"' + kind.encode() + b'","object":'


#: the prefixes of the event types the API server sends, made once
_PREFIXES = {k: _prefix(k) for k in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR")}


class Silence:
    """Ends a stream silent for ``limit`` seconds: one timer, re-armed only when it fires.

    aiohttp's ``sock_read`` timeout cancels its timer and schedules a new one for every chunk
    read (a handle into the loop's heap per event); here the reader only notes each chunk
    (:attr:`last`, :attr:`taken`), and the timer, when it fires, either finds the stream
    silent since ``limit`` seconds or sleeps again until ``limit`` after the last chunk.
    Bytes received but not read yet (the reader is behind, busy with what came before) are
    not silence.
    """

    __slots__ = ("_content", "_handle", "_limit", "_loop", "_what", "last", "taken")

    def __init__(self, content: aiohttp.StreamReader, limit: float, what: str) -> None:
        self._loop = asyncio.get_running_loop()
        self._content = content
        self._limit = limit
        self._what = what
        #: the loop's time of the last chunk read, and the bytes read up to it
        self.last = self._loop.time()
        self.taken = 0
        self._handle = self._loop.call_at(self.last + limit, self._check)

    def _check(self) -> None:
        now, due = self._loop.time(), self.last + self._limit
        if now < due:
            self._handle = self._loop.call_at(due, self._check)
        elif self._content.total_bytes > self.taken:  # received, not read yet: not silent
            self._handle = self._loop.call_at(now + self._limit, self._check)
        else:
            self._content.set_exception(aiohttp.SocketTimeoutError(self._what))

    def cancel(self) -> None:
        self._handle.cancel()


__all__ = ["RawEvent", "Silence", "parse_event"]
