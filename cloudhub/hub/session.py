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

from wire.codec import encode
from wire.delivery import Downstream, Outgoing
from wire.liveness import Liveness
from wire.messages import Group, Message, Operation
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
    ) -> None:
        self.node = node
        self.ws = ws
        loop = asyncio.get_running_loop()
        self._clock = loop.time
        self.downstream = Downstream(ack_timeout=ack_timeout, window=window)
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
        """Send one out-of-band frame (replies, errors)."""
        await asyncio.wait_for(self.ws.send(encode(message)), SEND_TIMEOUT)

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
                    for out in self.downstream.poll(now):
                        await asyncio.wait_for(self.ws.send(self._frame(out)), SEND_TIMEOUT)
                deadline = self.liveness.next_deadline(sending=False)
                ack_deadline = self.downstream.next_deadline()
                if ack_deadline is not None:
                    deadline = min(deadline, ack_deadline)
                self._wake.clear()
                if self.started and self.downstream.ready:
                    continue
                try:
                    await asyncio.wait_for(self._wake.wait(), max(0.0, deadline - self._clock()))
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
        msg = Message.new(
            source="edgecontroller",
            group=Group.RESOURCE,
            operation=op,
            resource=out.key,
            content=out.content,
            resource_version=out.resource_version or "",
            timestamp_ms=int(time.time() * 1000),
        )
        msg.header.msg_id = out.msg_id
        if log.isEnabledFor(logging.DEBUG):
            log.debug("> %s %s %s rv=%s", self.node, op, out.key, out.resource_version)
        return encode(msg)
