"""What a node session writes to and reads from: a :class:`Link`.

Two kinds exist. :class:`WebsocketLink` is a websockets connection this process terminated
(TLS and framing here). :class:`cloudhub.linkworker.pool.RelayedLink` is a connection a link
worker process terminated: frames arrive and leave as records on a socketpair, so this process
does no TLS and no websocket framing for it (see :mod:`cloudhub.linkworker`). The session and
the hub do not care which they hold.

A link's writes come in two speeds. :meth:`Link.write_now` writes a frame at once if nothing
could make it wait (a full buffer, a frozen peer); :meth:`Link.send` may wait and is what the
session's writer uses, within its time limit, when :meth:`Link.may_wait` says a write could.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.protocol import OPEN

#: bytes a frame may take on the wire beyond its text: websocket header, TLS record
FRAME_OVERHEAD = 64

#: Linux's TCP_CORK (None elsewhere: frames then go out one by one, as without it)
_TCP_CORK: int | None = getattr(socket, "TCP_CORK", None)


class Link(Protocol):
    """One node's connection, as the hub and its session use it."""

    @property
    def remote_address(self) -> Any:
        """The peer's address, as the socket reports it (for logs)."""

    def may_wait(self, frames: list[str]) -> bool:
        """Whether writing ``frames`` could wait for the peer to read."""

    def may_wait_one(self, frame: str) -> bool:
        """:meth:`may_wait` for one frame (no list built)."""

    def write_now(self, frame: str) -> bool:
        """Write ``frame`` if nothing could make it wait or fail; whether it was written."""

    async def send(self, frame: str) -> None:
        """Write ``frame``, waiting for room if need be.

        Raises:
            ConnectionClosed: the link is closed or closing.
        """

    def cork(self, on: bool) -> bool:
        """Hold back (or release) TCP segments around a batch; whether that was possible."""

    def abort(self) -> None:
        """Drop the connection at once (a half-open peer would never finish a close)."""

    async def close(self, code: int, reason: str) -> None:
        """Close with a websocket close code and reason."""

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        """The peer's frames until the link ends (then ConnectionClosed or the end)."""


class WebsocketLink:
    """A websockets server connection terminated in this process."""

    __slots__ = ("_direct", "_socket", "ws")

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        #: the TCP socket under the TLS link (asyncio's wrapper of it), for corking; None if
        #: the transport has none
        self._socket: socket.socket | None = ws.transport.get_extra_info("socket")
        #: whether this websockets has what :meth:`write_now` checks (older releases named
        #: the send lock ``fragmented_send_waiter``); if not, every frame takes ``send``
        self._direct = all(hasattr(ws, a) for a in ("send_in_progress", "paused", "send_data"))

    @property
    def remote_address(self) -> Any:
        return self.ws.remote_address

    def may_wait(self, frames: list[str]) -> bool:
        """Whether sending ``frames`` could wait for the peer to read (a frozen link).

        websockets' ``send`` waits only while the transport has paused writing. asyncio pauses
        it when its write buffer reaches the high-water mark and resumes it as soon as the
        buffer is back at the low-water mark, so with the buffer at or below the low-water
        mark and room for the frames under the high-water mark, every send completes at once.
        """
        transport = self.ws.transport
        size = transport.get_write_buffer_size()
        low, high = transport.get_write_buffer_limits()
        if size > low:
            return True
        # At most 4 bytes a character, plus websocket header and TLS record per frame.
        return size + sum(4 * len(f) + FRAME_OVERHEAD for f in frames) >= high

    def may_wait_one(self, frame: str) -> bool:
        transport = self.ws.transport
        size = transport.get_write_buffer_size()
        low, high = transport.get_write_buffer_limits()
        return size > low or size + 4 * len(frame) + FRAME_OVERHEAD >= high

    def write_now(self, frame: str) -> bool:
        """Write ``frame`` without ``ServerConnection.send`` if nothing could make it wait or
        fail there; whether it was written. Call only when :meth:`may_wait` said no.

        What ``send`` would otherwise decide, checked here the way ``websockets.broadcast``
        checks it: the protocol is OPEN (not closing: then ``send`` waits for the close and
        raises ConnectionClosed), no fragmented message is being sent (``send`` waits for it;
        the protocol would refuse a new frame), writing is not paused and the transport is not
        closing (``send`` would wait in its drain). ``send_data`` is the very method ``send``
        flushes the protocol's output with. Nothing here awaits, so no other task's write can
        come between the frame and its bytes, as in ``send``. That skips ``send``'s context
        manager, state checks and drain: about 2 µs of the 9 µs a 1 KiB frame takes over TLS.
        """
        ws = self.ws
        if (
            not self._direct
            or ws.protocol.state is not OPEN
            or ws.send_in_progress is not None
            or ws.paused
            or ws.transport.is_closing()
        ):
            return False
        try:
            data = frame.encode()
        except UnicodeEncodeError:  # a lone surrogate: send fails the link over it, as before
            return False
        ws.protocol.send_text(data)
        ws.send_data()
        return True

    async def send(self, frame: str) -> None:
        await self.ws.send(frame)

    def cork(self, on: bool) -> bool:
        sock = self._socket
        if sock is None or _TCP_CORK is None:
            return False
        try:
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_CORK, 1 if on else 0)
        except OSError:  # not TCP after all (a unix socket in a test), or the link died
            return False
        return True

    def abort(self) -> None:
        self.ws.transport.abort()

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code, reason)

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self.ws.__aiter__()


__all__ = ["FRAME_OVERHEAD", "Link", "WebsocketLink"]
