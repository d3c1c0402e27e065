"""One connected node: the I/O shell (a pump) around its pure
:class:`~cloudhub.hub.linksession.LinkSession`, which decides what to send and when.

The session owns exactly one background task, its writer (named ``session:{node}``). The
writer sleeps until something changes (:meth:`NodeSession.wake`) or the next deadline (an ACK
timeout or the keepalive expiry) passes, then sends whatever the state machine says is due.
Its alarm is one timer that is moved only when a deadline comes *earlier*: a frame received
pushes the expiry later every time, and re-arming on each would cost a timer per ACK; an alarm
that rings early just makes the writer look again and set the next one.
Reading happens in :mod:`cloudhub.hub.upstream` (and :mod:`cloudhub.hub.reader`), which
feeds ACKs and signs of life in here.

The common case skips the writer: a change for this node, or an ACK that frees a key with a
newer version waiting, is written at once by the task that learnt of it
(:meth:`NodeSession.deliver`), provided the writer is parked and the write cannot wait for
the peer. Writes that could wait (a full buffer, a frozen peer) go through the writer and its
time limit (``send_timeout``); writes that cannot get none, which saves a timer per message.

Several frames due at once for one link (a batch of changes from one watch read, answers
to a node's device reports, a resync) go out as one write (:meth:`~cloudhub.hub.links.Link.
write_now_all`): one TLS record and one system call for the lot, not one per frame (on
loopback the receiver's side of TCP runs in the sender's call too).

A frame that cannot wait is written at once (:meth:`~cloudhub.hub.links.Link.write_now`:
on a websocket of this process, straight to websockets' sans-I/O protocol object, as
``websockets.broadcast`` does; on a link a worker terminates, into the relay's buffer).
Everything else (a link closing, a buffer that may be paused) goes through ``send``, which
waits or raises. Which kind of link a session holds is :mod:`cloudhub.hub.links`' business.

The frames themselves (objects spliced by the codec's fast path, a stock edge's device
frames) come from the session state (:mod:`cloudhub.hub.linksession`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from cloudhub.hub.links import Link, WebsocketLink
from cloudhub.hub.linksession import LinkSession
from hive.local_messages import MessageIds
from hive.metrics import Buckets
from wire.codec import DEFAULT_MAX_SIZE, ContentCache, encode
from wire.delivery import Downstream
from wire.liveness import Liveness
from wire.messages import Message

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Traffic:
    """What every link of a hub carried, for metrics: frames and bytes (UTF-8 characters of
    text frames, as good as bytes for JSON) each way, and the ACK round trips of objects."""

    frames_in: int = 0
    bytes_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    ack_round_trip: Buckets = field(default_factory=Buckets)

    def sent(self, frames: list[str]) -> None:
        self.frames_out += len(frames)
        self.bytes_out += sum(map(len, frames))

    def sent_one(self, frame: str) -> None:
        """:meth:`sent` for one frame (the usual delivery, and every reply): no list walked."""
        self.frames_out += 1
        self.bytes_out += len(frame)


class NodeSession:
    """The writer and link of one node's live connection; :attr:`state` decides."""

    def __init__(
        self,
        *,
        node: str,
        ws: ServerConnection | None = None,
        link: Link | None = None,
        heartbeat: float,
        ack_timeout: float,
        window: int,
        send_timeout: float,
        min_interval: float = 0.0,
        max_frame: int = DEFAULT_MAX_SIZE,
        encoded: ContentCache | None = None,
        ids: MessageIds | None = None,
        traffic: Traffic | None = None,
        stock: bool = False,
    ) -> None:
        self.node = node
        #: seconds a write that could wait may take (:attr:`HubSettings.send_timeout`)
        self._send_timeout = send_timeout
        #: shared by all sessions of a hub (see :class:`Traffic`)
        self.traffic = traffic if traffic is not None else Traffic()
        if link is None:
            if ws is None:
                raise TypeError("NodeSession needs a link (or a websockets connection)")
            link = WebsocketLink(ws)
        #: where frames go: this process's websocket, or one a link worker terminates
        self.link: Link = link
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._clock = loop.time
        #: the writer's alarm (see the module notes); None when not set or already rung
        self._alarm: asyncio.TimerHandle | None = None
        #: the loop's time at the upgrade, when :attr:`connected_at` was read
        self._connected_loop = self._clock()
        #: every decision about this link (pure)
        self.state = LinkSession(
            node=node,
            stock=stock,
            heartbeat=heartbeat,
            now=self._connected_loop,
            ack_timeout=ack_timeout,
            window=window,
            min_interval=min_interval,
            max_frame=max_frame,
            ids=ids,
            encoded=encoded,
            round_trips=self.traffic.ack_round_trip,
        )
        self.connected_at = time.time()
        self._wake = asyncio.Event()
        #: frames queued by :meth:`send_soon` (replies), written by the writer before objects
        self._outbox: deque[str] = deque()
        self._writer: asyncio.Task[None] | None = None
        #: the writer is waiting for a wake-up (not writing): :meth:`deliver` may write
        self._parked = False
        self.closed = asyncio.Event()
        self.close_reason = ""

    @property
    def stock(self) -> bool:
        """A stock KubeEdge edgecore (see :mod:`cloudhub.hub.stock`)."""
        return self.state.stock

    @property
    def downstream(self) -> Downstream:
        return self.state.downstream

    @property
    def liveness(self) -> Liveness:
        return self.state.liveness

    @property
    def last_seen(self) -> float:
        """Wall-clock time of the edge's last frame: from the loop time liveness keeps for
        every frame anyway, rather than a ``time.time()`` per frame."""
        return self.connected_at + (self.state.liveness.last_received - self._connected_loop)

    @property
    def started(self) -> bool:
        """The inventory diff has been computed and delivery may start."""
        return self.state.is_started

    # -- driven by the hub ---------------------------------------------------------------------

    def start(
        self, inventory: Mapping[str, str] | None, desired: Mapping[str, tuple[str, Any]]
    ) -> None:
        """Diff the inventory against the desired set and start delivering."""
        self.state.start(inventory, desired)
        self.wake()

    def run_writer(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(
            self._write_loop(), name=f"session:{self.node}"
        )

    def wake(self) -> None:
        self._wake.set()

    def received(self, now: float | None = None) -> None:
        """Any frame from the edge is a sign of life (``now``: the loop's time, if read)."""
        self.state.received(self._clock() if now is None else now)

    def ack(self, msg_id: str, now: float | None = None) -> bool:
        """Apply an ACK; whether something can be sent now (then call :meth:`deliver`)."""
        return self.state.ack(msg_id, self._clock() if now is None else now)

    def deliver(self) -> None:
        """Send what is due now, from the calling task when the writer is parked and the link
        takes it at once; otherwise wake the writer.

        A delivery is nearly always one frame to a link with an empty write buffer. Written
        here (by the hub routing a change, or the reader that just took an ACK), it costs no
        writer wake-up: an event, a task step and a pass of the writer's loop, about a tenth
        of a pod update's CPU. Nothing here awaits, so the reader of a relayed link may call
        it from its channel's callback, without a task switch per ACK either. The writer keeps
        everything that can wait: retries and held keys (its alarm), replies, a full write
        buffer, a link going down, and any frame the link would not take at once (it goes
        to the writer's queue, in order, and ``send`` there waits or fails the link).
        """
        state = self.state
        if not self._parked or self._outbox or not state.is_started or self.closed.is_set():
            self.wake()
            return
        now = self._clock()
        frames = state.poll(now, int(time.time() * 1000))
        if frames:
            link = self.link
            if len(frames) == 1:  # nearly always: no list walked, no generator
                frame = frames[0]
                if not link.may_wait_one(frame) and link.write_now(frame):
                    self.traffic.sent_one(frame)
                else:
                    self._outbox.append(frame)  # the writer sends it, within its time limit
                    self.wake()
            elif not self._may_wait(frames) and link.write_now_all(frames):
                self.traffic.sent(frames)
            else:
                self._outbox.extend(frames)  # the writer sends them, in order, in time
                self.wake()
        # The writer's alarm must cover the new ACK deadlines (``now + ack_timeout``) and any
        # key held back. One that rings by then already does, unless a key is held: then the
        # earliest deadline is looked up (a scan of the held keys).
        alarm = self._alarm
        downstream = state.downstream
        if alarm is None or alarm.when() > now + downstream.ack_timeout or downstream.holding:
            self._arm(state.next_deadline())

    async def send(self, message: Message) -> None:
        """Send one out-of-band frame (replies, errors).

        Not bounded here: on a frozen link the writer's keepalive check aborts the transport,
        which ends this wait too.
        """
        await self.send_text(encode(message))

    async def send_text(self, frame: str) -> None:
        """:meth:`send` for a frame already encoded."""
        self.traffic.sent_one(frame)
        link = self.link
        if link.may_wait_one(frame) or not link.write_now(frame):
            await link.send(frame)

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
        writer = self._writer
        if writer is asyncio.current_task():
            writer = None  # the writer closing on its own: it ends right after
        if writer is not None:
            writer.cancel()
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm = None
        self.link.abort()
        self.closed.set()
        if writer is not None:
            # Until it has run its cancellation, the writer still holds this session (and its
            # buffers): a closed link is over only once its writer is. wait() does not raise
            # the writer's CancelledError, only ours.
            await asyncio.wait({writer})

    # -- the writer ----------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        try:
            while True:
                now = self._clock()
                state = self.state
                reason = state.expired(now)
                if reason is not None:
                    await self.close(reason)
                    return
                if self._outbox:
                    frames = list(self._outbox)
                    self._outbox.clear()
                    await self._send_all(frames)
                frames = state.poll(now, int(time.time() * 1000))
                if frames:
                    await self._send_all(frames)
                deadline = state.next_deadline()
                self._wake.clear()
                if self._outbox or state.ready:
                    continue
                self._arm(deadline)
                self._parked = True
                try:
                    await self._wake.wait()
                finally:
                    self._parked = False
        except (ConnectionClosed, TimeoutError, OSError) as exc:
            log.info("node %s: writer stopped: %s", self.node, exc or type(exc).__name__)
            await self.close(f"write failed: {exc or type(exc).__name__}")

    async def _send_all(self, frames: list[str]) -> None:
        """Write ``frames`` in order: at once as one write when nothing could make them wait,
        else one by one through ``send``, within a time limit when a write could wait for the
        peer (see :meth:`_may_wait`)."""
        self.traffic.sent(frames)
        link = self.link
        if self._may_wait(frames):
            # asyncio.timeout, not wait_for: no task per frame
            async with asyncio.timeout(self._send_timeout * max(1, len(frames) // 64)):
                for frame in frames:
                    await link.send(frame)
        elif not (link.write_now(frames[0]) if len(frames) == 1 else link.write_now_all(frames)):
            for frame in frames:
                await link.send(frame)

    def _may_wait(self, frames: list[str]) -> bool:
        """Whether sending ``frames`` could wait for the peer to read (a frozen link).

        Only writes that might wait get a timeout: one is a timer set and cancelled per
        message, and on a healthy link nearly every write finds an empty buffer.
        """
        return self.link.may_wait(frames)

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
