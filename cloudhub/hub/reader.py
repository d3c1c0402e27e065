"""One node's reading: the fast path for ACKs and keepalives, and pacing.

Most frames an edge sends are ACKs and keepalives, and a fleet sends them all the time. Those
are recognised by the codec's fast path (:data:`wire.codec.ACK_OR_KEEPALIVE`, in our layout and
in a stock edgecore's: whatever it matches decodes to the same message with the same values);
an ACK is then applied (:meth:`~cloudhub.hub.linksession.LinkSession.ack_frame`, which reads
nothing but the id it acknowledges) and a keepalive answered from a template, without a
pydantic round trip. Anything else (another
layout, an escape, a field too many or too few) takes the full decode and its validation.
"""

from __future__ import annotations

from collections.abc import Callable

from cloudhub.config import HubSettings
from cloudhub.hub.linksession import CHEAP_FRAME_COST
from cloudhub.hub.session import NodeSession
from hive.ratelimit import TokenBucket


class FrameReader:
    """One node's reading: its rate budget, and ACKs applied without a task switch.

    Most frames an edge sends are ACKs. :meth:`ack_now` applies one and delivers what it
    frees at once (:meth:`NodeSession.deliver` never awaits). The hub's reader task calls it
    first for every frame; a relayed link also calls it straight from its channel's callback
    while the task is parked with nothing queued, which saves a task wake-up per ACK. While
    the budget says wait (``pace_until``), the fast path declines, frames queue, and the task
    sleeps before reading on, so pacing holds for both paths.
    """

    __slots__ = ("_clock", "_frames", "_session", "_volume", "pace_until")

    def __init__(
        self, session: NodeSession, settings: HubSettings, clock: Callable[[], float]
    ) -> None:
        self._session = session
        self._clock = clock
        now = clock()
        self._frames = TokenBucket(rate=settings.node_rate, burst=settings.node_burst, now=now)
        self._volume = TokenBucket(
            rate=settings.node_byte_rate, burst=settings.node_byte_burst, now=now
        )
        #: loop time before which nothing more is read from the node
        self.pace_until = 0.0

    def ack_now(self, frame: str | bytes) -> bool:
        """Apply ``frame`` if it is an ACK and reading is not being paced; whether it was."""
        now = self._clock()
        if now < self.pace_until:
            return False
        session = self._session
        ready = session.state.ack_frame(frame, now)
        if ready is None:
            return False
        if ready:
            session.deliver()
        self.pace(CHEAP_FRAME_COST, len(frame), now)
        return True

    def pace(self, cost: float, size: int, now: float) -> None:
        """Charge a frame to the node's budgets; past them, hold reading for a while."""
        traffic = self._session.traffic  # every frame read passes here once
        traffic.frames_in += 1
        traffic.bytes_in += size
        wait = max(self._frames.reserve(cost, now), self._volume.reserve(size, now))
        if wait > 0:
            self.pace_until = now + wait
