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

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.frames import TEXT, Frame
from websockets.protocol import OPEN, Event

from wire.codec import FAST_FRAME_MAX

#: bytes a frame may take on the wire beyond its text: websocket header, TLS record
FRAME_OVERHEAD = 64


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

    def write_now_all(self, frames: list[str]) -> bool:
        """:meth:`write_now` for several frames at once, all or none; whether they were."""

    def take_frames(self, sink: Callable[[str | bytes], bool] | None) -> None:
        """Offer each frame to ``sink`` as it arrives, while the reader is parked with nothing
        queued; a frame it takes (returns True) is not queued for the reader."""

    async def send(self, frame: str) -> None:
        """Write ``frame``, waiting for room if need be.

        Raises:
            ConnectionClosed: the link is closed or closing.
        """

    def abort(self) -> None:
        """Drop the connection at once (a half-open peer would never finish a close)."""

    async def close(self, code: int, reason: str) -> None:
        """Close with a websocket close code and reason."""

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        """The peer's frames until the link ends (then ConnectionClosed or the end)."""


_NOT_EMPTY = (None,)


class HubConnection(ServerConnection):
    """websockets' server connection, with frames offered to a sink as they are received.

    websockets parses frames in the transport's ``data_received`` callback and queues each for
    the task that reads the link, a wake-up and a task step per frame. A stock edge sends one
    ACK per object; the hub applies most of them in the callback instead
    (:meth:`WebsocketLink.take_frames`), as :class:`cloudhub.linkworker.pool.RelayedLink` does
    for a relayed link. Only while the reader waits with nothing queued, so frames are still
    handled in order; a frame the sink declines is queued as before.
    """

    #: the hub's ACK fast path (:meth:`cloudhub.hub.reader.FrameReader.ack_now`), if any
    sink: Callable[[str | bytes], bool] | None = None

    def process_event(self, event: Event) -> None:
        sink = self.sink
        if (
            sink is not None
            and isinstance(event, Frame)
            and event.opcode is TEXT
            and event.fin
            and len(event.data) <= FAST_FRAME_MAX
            # the reader waits in recv() with nothing queued (a websockets without these
            # attributes gets every frame queued, as without a sink)
            and getattr(self.recv_messages, "get_in_progress", False)
            and not len(getattr(self.recv_messages, "frames", _NOT_EMPTY))
        ):
            try:
                text = bytes(event.data).decode()
            except UnicodeDecodeError:
                pass  # the reader's decode fails the link over it
            else:
                if sink(text):
                    return
        super().process_event(event)


class WebsocketLink:
    """A websockets server connection terminated in this process."""

    __slots__ = ("_direct", "ws")

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
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

    def _writable_now(self) -> bool:
        """Whether a frame written now cannot wait or fail in ``send`` (see :meth:`write_now`)."""
        ws = self.ws
        return not (
            not self._direct
            or ws.protocol.state is not OPEN
            or ws.send_in_progress is not None
            or ws.paused
            or ws.transport.is_closing()
        )

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
        if not self._writable_now():
            return False
        ws = self.ws
        try:
            data = frame.encode()
        except UnicodeEncodeError:  # a lone surrogate: send fails the link over it, as before
            return False
        ws.protocol.send_text(data)
        ws.send_data()
        return True

    def write_now_all(self, frames: list[str]) -> bool:
        """:meth:`write_now` for several frames, as ONE transport write: one TLS record (up to
        16 KiB) and one system call for the lot instead of one each (``send_data`` writes
        each frame's bytes on their own). Call only when :meth:`may_wait` said no."""
        if not self._writable_now():
            return False
        ws = self.ws
        try:
            encoded = [frame.encode() for frame in frames]
        except UnicodeEncodeError:
            return False
        protocol = ws.protocol
        for data in encoded:
            protocol.send_text(data)
        chunks = protocol.data_to_send()
        if all(chunks):
            ws.transport.write(b"".join(chunks))
        else:  # an end of stream among them (not after text frames alone): websockets' way
            protocol.writes[:0] = chunks
            ws.send_data()
        return True

    def take_frames(self, sink: Callable[[str | bytes], bool] | None) -> None:
        ws = self.ws
        if isinstance(ws, HubConnection):
            ws.sink = sink

    async def send(self, frame: str) -> None:
        await self.ws.send(frame)

    def abort(self) -> None:
        self.ws.transport.abort()

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code, reason)

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self.ws.__aiter__()


__all__ = ["FRAME_OVERHEAD", "HubConnection", "Link", "WebsocketLink"]
