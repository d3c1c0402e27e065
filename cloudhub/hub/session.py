"""One connected node: the I/O shell around :class:`wire.delivery.Downstream` and
:class:`wire.liveness.Liveness`.

The session owns exactly one background task, its writer (named ``session:{node}``). The
writer sleeps until something changes (:meth:`NodeSession.wake`) or the next deadline (an ACK
timeout or the keepalive expiry) passes, then sends whatever the state machine says is due.
Reading happens in the websocket handler of :mod:`cloudhub.hub.module`, which feeds ACKs and
signs of life in here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from wire.codec import ContentCache, encode, encode_content, encode_with_content
from wire.delivery import Downstream, Outgoing
from wire.liveness import Liveness
from wire.messages import Group, Header, Message, Operation, Route
from wire.resources import ResourceKey

log = logging.getLogger(__name__)

#: seconds a single frame write may block (a frozen peer with a full TCP window)
SEND_TIMEOUT = 10.0


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
        loop = asyncio.get_running_loop()
        self._clock = loop.time
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

    async def close(self, reason: str) -> None:
        """Drop the link. Aborts the transport: a half-open peer would never finish a close."""
        if not self.close_reason:
            self.close_reason = reason
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()
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
                if self.started:
                    batch = self.downstream.poll(now)
                    if batch:
                        # asyncio.timeout, not wait_for: no task per frame on the hot path
                        async with asyncio.timeout(SEND_TIMEOUT * max(1, len(batch) // 64)):
                            for out in batch:
                                await self.ws.send(self._frame(out))
                deadline = self.liveness.next_deadline(sending=False)
                ack_deadline = self.downstream.next_deadline()
                if ack_deadline is not None:
                    deadline = min(deadline, ack_deadline)
                self._wake.clear()
                if self.started and self.downstream.ready:
                    continue
                try:
                    async with asyncio.timeout(max(0.0, deadline - self._clock())):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        except (ConnectionClosed, TimeoutError, OSError) as exc:
            log.info("node %s: writer stopped: %s", self.node, exc or type(exc).__name__)
            await self.close(f"write failed: {exc or type(exc).__name__}")

    def _frame(self, out: Outgoing) -> str:
        if out.resource_version is None:
            op = Operation.DELETE
        else:
            op = Operation.INSERT if out.insert else Operation.UPDATE
        header = Header(
            msg_id=out.msg_id,
            timestamp=int(time.time() * 1000),
            resourceversion=out.resource_version or "",
        )
        route = Route(source="edgecontroller", group=Group.RESOURCE, operation=op, resource=out.key)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("> %s %s %s rv=%s", self.node, op, out.key, out.resource_version)
        return encode_with_content(header, route, self._content_json(out))

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
