"""One connected node: the I/O shell around :class:`wire.delivery.Downstream` and
:class:`wire.liveness.Liveness`.

The session owns exactly one background task, its writer (named ``session:{node}``). The
writer sleeps until something changes (:meth:`NodeSession.wake`) or the next deadline (an ACK
timeout or the keepalive expiry) passes, then sends whatever the state machine says is due.
Its alarm is one timer that is moved only when a deadline comes *earlier*: a frame received
pushes the expiry later every time, and re-arming on each would cost a timer per ACK; an alarm
that rings early just makes the writer look again and set the next one.
Reading happens in the websocket handler of :mod:`cloudhub.hub.module`, which feeds ACKs and
signs of life in here.

When the writer has several frames for one link (a batch of ACKs for a node's device reports,
a resync), it corks the TCP socket while writing them: each frame is still its own TLS record
and ``send``, but the kernel pushes them in one go instead of running the whole TCP path (on
loopback, the receiver's too) once per frame.

Frames the hub writes are spliced from templates (:func:`object_frame`,
:func:`response_frame`) rather than built as pydantic models and dumped: each costs a few
string joins instead of three model constructions and two dumps, and the text is exactly what
``wire.codec.encode`` writes for the same message (the tests hold them to that). Their
``msg_id``s come from :class:`MessageIds`, a counter behind a random prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import re
import socket
import time
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from wire.codec import ContentCache, encode, encode_content
from wire.delivery import Downstream, Outgoing
from wire.liveness import Liveness
from wire.messages import Group, Message, Operation
from wire.resources import ResourceKey

log = logging.getLogger(__name__)

#: seconds a single frame write may block (a frozen peer with a full TCP window)
SEND_TIMEOUT = 10.0


#: Linux's TCP_CORK (None elsewhere: frames then go out one by one, as without it)
_TCP_CORK: int | None = getattr(socket, "TCP_CORK", None)

#: JSON string contents that need no escaping (no quote, backslash or control character)
_PLAIN = re.compile(r'[^"\\\x00-\x1f]*')


def json_string(text: str) -> str:
    """``text`` as a JSON string literal, as pydantic writes it (non-ASCII unescaped)."""
    if _PLAIN.fullmatch(text):
        return f'"{text}"'
    # Rare (keys and ids are plain): ASCII escapes are valid JSON whatever the text holds.
    return json.dumps(text)


class MessageIds:
    """``msg_id``s for frames the hub writes, shaped like UUIDv4s and unique per instance.

    uuid4 reads the OS's random source for every id; a random prefix chosen once and a counter
    cost a fifth of that and cannot collide within the process. Nobody outside can use them:
    they name the hub's own replies and forwarded requests (an edge ACKs the ids of object
    messages, which :mod:`wire.delivery` draws).
    """

    def __init__(self) -> None:
        r = os.urandom(10).hex()
        variant = "89ab"[int(r[15], 16) & 3]
        self._prefix = f"{r[:8]}-{r[8:12]}-4{r[12:15]}-{variant}{r[16:19]}-"
        self._count = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._count) & 0xFFFFFFFFFFFF:012x}"


def response_frame(
    *, msg_id: str, parent_id: str, source: str, group: str, resource: str, content_json: str
) -> str:
    """The frame of ``Message.reply``: a ``response`` to ``parent_id``, ``content`` as JSON."""
    return (
        f'{{"header":{{"msg_id":{json_string(msg_id)},"parent_msg_id":{json_string(parent_id)},'
        f'"timestamp":0,"resourceversion":"","sync":false,"type":""}},'
        f'"route":{{"source":{json_string(source)},"destination":"","group":{json_string(group)},'
        f'"operation":"response","resource":{json_string(resource)}}},"content":{content_json}}}'
    )


def object_frame(
    *,
    msg_id: str,
    timestamp: int,
    resource_version: str,
    operation: str,
    key: str,
    content_json: str,
) -> str:
    """The frame that carries one object (or its deletion) to an edge."""
    return (
        f'{{"header":{{"msg_id":{json_string(msg_id)},"parent_msg_id":"","timestamp":{timestamp},'
        f'"resourceversion":{json_string(resource_version)},"sync":false,"type":""}},'
        f'"route":{{"source":"edgecontroller","destination":"","group":"{Group.RESOURCE}",'
        f'"operation":"{operation}","resource":{json_string(key)}}},"content":{content_json}}}'
    )


def stub_for(key: str) -> dict[str, Any]:
    """Content of a delete for a key the cloud no longer knows: kind and metadata only."""
    k = ResourceKey.parse(key)
    meta: dict[str, Any] = {"name": k.name}
    if k.namespace:
        meta["namespace"] = k.namespace
    return {"kind": k.kind, "metadata": meta}


class NodeSession:
    """State and writer of one node's live connection."""

    def __init__(
        self,
        *,
        node: str,
        ws: ServerConnection,
        heartbeat: float,
        ack_timeout: float,
        window: int,
        min_interval: float = 0.0,
        encoded: ContentCache | None = None,
    ) -> None:
        self.node = node
        self.ws = ws
        #: the TCP socket under the TLS link (asyncio's wrapper of it), for corking; None if
        #: the transport has none
        self._socket: socket.socket | None = ws.transport.get_extra_info("socket")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._clock = loop.time
        #: the writer's alarm (see the module notes); None when not set or already rung
        self._alarm: asyncio.TimerHandle | None = None
        self.downstream = Downstream(
            ack_timeout=ack_timeout, window=window, min_interval=min_interval
        )
        #: shared by all sessions of a hub: a fanned-out object is encoded once
        self._encoded = encoded if encoded is not None else ContentCache()
        self.liveness = Liveness(interval=heartbeat, now=self._clock())
        #: ``True`` once the inventory diff has been computed and delivery may start
        self.started = False
        self.connected_at = time.time()
        self.last_seen = self.connected_at
        self._wake = asyncio.Event()
        #: frames queued by :meth:`send_soon` (replies), written by the writer before objects
        self._outbox: deque[str] = deque()
        self._writer: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.close_reason = ""

    # -- driven by the hub ---------------------------------------------------------------------

    def start(
        self, inventory: Mapping[str, str] | None, desired: Mapping[str, tuple[str, Any]]
    ) -> None:
        """Diff the inventory against the desired set and start delivering."""
        self.downstream.start(inventory, desired, stub=stub_for)
        self.started = True
        log.info(
            "node %s synced: %d bound, edge had %s, %d to send",
            self.node,
            len(desired),
            "?" if inventory is None else len(inventory),
            len(self.downstream.wanted),
        )
        self.wake()

    def run_writer(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(
            self._write_loop(), name=f"session:{self.node}"
        )

    def wake(self) -> None:
        self._wake.set()

    def received(self) -> None:
        """Any frame from the edge is a sign of life."""
        self.liveness.received(self._clock())
        self.last_seen = time.time()

    def ack(self, msg_id: str) -> None:
        if self.downstream.ack(msg_id) and self.downstream.ready:
            self.wake()

    async def send(self, message: Message) -> None:
        """Send one out-of-band frame (replies, errors).

        Not bounded here: on a frozen link the writer's keepalive check aborts the transport,
        which ends this wait too.
        """
        await self.ws.send(encode(message))

    async def send_text(self, frame: str) -> None:
        """:meth:`send` for a frame already encoded."""
        await self.ws.send(frame)

    def send_soon(self, frame: str) -> None:
        """Queue a frame for the writer (replies from other modules: no task per frame).

        Frames queued when the link goes down are dropped with it, as a reply to a request
        whose link is gone would be; the edge asks again on its next link.
        """
        self._outbox.append(frame)
        self._wake.set()

    async def close(self, reason: str) -> None:
        """Drop the link. Aborts the transport: a half-open peer would never finish a close."""
        if not self.close_reason:
            self.close_reason = reason
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm = None
        self.ws.transport.abort()
        self.closed.set()

    # -- the writer ----------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        try:
            while True:
                now = self._clock()
                if self.liveness.expired(now):
                    log.warning(
                        "node %s: nothing received for %.1fs, closing half-open link",
                        self.node,
                        now - self.liveness.last_received,
                    )
                    await self.close("keepalive timeout")
                    return
                if self._outbox:
                    outbox = self._outbox
                    with self._corked(len(outbox)):
                        async with asyncio.timeout(SEND_TIMEOUT * max(1, len(outbox) // 64)):
                            while outbox:
                                await self.ws.send(outbox.popleft())
                if self.started:
                    batch = self.downstream.poll(now)
                    if batch:
                        # asyncio.timeout, not wait_for: no task per frame on the hot path
                        with self._corked(len(batch)):
                            async with asyncio.timeout(SEND_TIMEOUT * max(1, len(batch) // 64)):
                                for out in batch:
                                    await self.ws.send(self._frame(out))
                deadline = self.liveness.next_deadline(sending=False)
                ack_deadline = self.downstream.next_deadline()
                if ack_deadline is not None:
                    deadline = min(deadline, ack_deadline)
                self._wake.clear()
                if self._outbox or (self.started and self.downstream.ready):
                    continue
                self._arm(deadline)
                await self._wake.wait()
        except (ConnectionClosed, TimeoutError, OSError) as exc:
            log.info("node %s: writer stopped: %s", self.node, exc or type(exc).__name__)
            await self.close(f"write failed: {exc or type(exc).__name__}")

    @contextlib.contextmanager
    def _corked(self, frames: int) -> Iterator[None]:
        """Hold back TCP segments while ``frames`` frames are written (see the module notes)."""
        sock = self._socket
        if frames < 2 or sock is None or _TCP_CORK is None:
            yield
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_CORK, 1)
        except OSError:  # not TCP after all (a unix socket in a test): nothing to hold back
            yield
            return
        try:
            yield
        finally:
            with contextlib.suppress(OSError):  # the link died meanwhile
                sock.setsockopt(socket.IPPROTO_TCP, _TCP_CORK, 0)

    def _arm(self, deadline: float) -> None:
        """Make sure the writer wakes by ``deadline`` (an alarm set earlier already does)."""
        alarm = self._alarm
        if alarm is not None:
            if alarm.when() <= deadline:
                return
            alarm.cancel()
        self._alarm = self._loop.call_at(deadline, self._ring)

    def _ring(self) -> None:
        self._alarm = None
        self._wake.set()

    def _frame(self, out: Outgoing) -> str:
        if out.resource_version is None:
            op = Operation.DELETE
        else:
            op = Operation.INSERT if out.insert else Operation.UPDATE
        if log.isEnabledFor(logging.DEBUG):
            log.debug("> %s %s %s rv=%s", self.node, op, out.key, out.resource_version)
        return object_frame(
            msg_id=out.msg_id,
            timestamp=int(time.time() * 1000),
            resource_version=out.resource_version or "",
            operation=op,
            key=out.key,
            content_json=self._content_json(out),
        )

    def _content_json(self, out: Outgoing) -> str:
        """The object's JSON, encoded once per version however many nodes receive it."""
        if out.resource_version is None:
            return encode_content(out.content)
        cache_key = (out.key, out.resource_version)
        cached = self._encoded.get(cache_key)
        if cached is None:
            cached = encode_content(out.content)
            self._encoded.put(cache_key, cached)
        return cached
