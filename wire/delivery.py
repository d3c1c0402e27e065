"""Cloud -> edge delivery for one node, as a pure state machine.

Why not KubeEdge's way: KubeEdge keeps one ObjectSync custom resource per (node, object) and
re-walks all of them every 5 s, and it queues every version of every object. Here the cloud keeps
no per-(node, object) records at all: on every (re)connect the edge states its *inventory*
(key -> resourceVersion of what it has persisted), and the cloud sends only the difference
between that and what is bound to the node now. Nothing needs to survive a cloudhub restart.

Within a connection, delivery is *latest wins per key*: at most one message per key is in
flight; newer versions that arrive meanwhile replace each other in ``wanted`` and the newest
goes out when the ACK comes back. 2,000 edits of one configmap therefore cost each node a
handful of messages, not 2,000.

Latest-wins alone coalesces only while an ACK is outstanding: on a fast LAN the edge ACKs
before the next edit arrives and every version would go out. ``min_interval`` adds a per-key
pause: after a key is sent, its next version waits until ``min_interval`` has passed, so a
burst of N edits costs each node about ``burst_duration / min_interval`` messages, while the
first change after a quiet period still goes out at once.

resourceVersions are compared for equality only, never ordered: they are opaque strings.

The I/O shell (``cloudhub.hub.session``) calls :meth:`Downstream.poll` whenever something
changed or :meth:`Downstream.next_deadline` passed, writes what it returns, and feeds ACKs
back with :meth:`Downstream.ack`. Nothing here touches a socket or a clock.
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: Seconds to wait for an ACK before sending the key's newest version again. KubeEdge uses 5 s.
DEFAULT_ACK_TIMEOUT = 5.0
#: Messages in flight per node at once; bounds memory and lets a slow edge apply back-pressure.
DEFAULT_WINDOW = 256
#: Seconds a key waits after being sent before its next version may go (0: no pause).
DEFAULT_MIN_INTERVAL = 0.0


@dataclass(slots=True)
class Outgoing:
    """One message the I/O shell must now send."""

    msg_id: str
    key: str
    #: resourceVersion being delivered; ``None`` means delete the key at the edge.
    resource_version: str | None
    #: the object (for a delete: the last object known, possibly a stub with kind+metadata)
    content: Any
    #: ``True`` when the edge does not have the key yet (``insert``), else ``update``/``delete``
    insert: bool
    retry: bool
    #: when it was sent, in the ``now`` of :meth:`Downstream.poll` (the delivery keeps this
    #: very record while it waits for the ACK: one object per message, not two)
    sent: float = 0.0


class Downstream:
    """Delivery state for one connected node."""

    def __init__(
        self,
        *,
        ack_timeout: float = DEFAULT_ACK_TIMEOUT,
        window: int = DEFAULT_WINDOW,
        min_interval: float = DEFAULT_MIN_INTERVAL,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.ack_timeout = ack_timeout
        self.window = window
        self.min_interval = min_interval
        #: key -> when it was last sent, oldest first, kept only while younger than
        #: ``min_interval`` (pruned from the front: no scan of every recent key per poll)
        self._recent: dict[str, float] = {}
        #: wanted keys held back by ``min_interval``: key -> earliest send time
        self._held: dict[str, float] = {}
        self._new_id = new_id
        #: what the edge has confirmed it persisted: key -> resourceVersion
        self.edge: dict[str, str] = {}
        #: what must still go out: key -> (target resourceVersion or None for delete, content)
        self.wanted: dict[str, tuple[str | None, Any]] = {}
        #: what is in flight: key -> the message sent, until its ACK
        self._flights: dict[str, Outgoing] = {}
        #: the wanted keys not in flight (held back or not), in the order they could go: a
        #: poll and :attr:`ready` look at these alone, not at every key waiting for an ACK
        self._queue: dict[str, None] = {}
        #: (ACK deadline, send number, msg_id) of every message sent, earliest first; an entry
        #: whose msg_id is no longer in ``_by_id`` (ACKed or sent again) is dropped when it
        #: comes to the top. The earliest deadline and the retries due are then found without
        #: looking at every flight, per poll and per ACK.
        self._deadlines: list[tuple[float, int, str]] = []
        self._by_id: dict[str, str] = {}
        #: messages sent, retries included (for metrics and the reconnect-cost bench)
        self.sent = 0
        self.retries = 0
        #: ACKs taken (with ``sent``: whether :meth:`known` may have changed)
        self.acks = 0

    # -- inputs -------------------------------------------------------------------------------

    def start(
        self,
        inventory: Mapping[str, str] | None,
        desired: Mapping[str, tuple[str, Any]],
        *,
        stub: Callable[[str], Any] = lambda key: None,
    ) -> None:
        """Begin a session: diff the edge's inventory against what is bound to the node.

        Args:
            inventory: key -> resourceVersion the edge has, or ``None`` when the edge did not
                say (a stock KubeEdge edgecore): then everything desired is sent, nothing deleted.
            desired: key -> (resourceVersion, object) bound to the node now.
            stub: builds the content of a delete for a key the cloud no longer has.
        """
        self.edge = dict(inventory or {})
        self.wanted.clear()
        self._flights.clear()
        self._deadlines.clear()
        self._by_id.clear()
        self._recent.clear()
        self._held.clear()
        for key, (rv, obj) in desired.items():
            if self.edge.get(key) != rv:
                self.wanted[key] = (rv, obj)
        for key in self.edge.keys() - desired.keys():
            self.wanted[key] = (None, stub(key))
        self._queue = dict.fromkeys(self.wanted)

    def update(self, key: str, resource_version: str, obj: Any) -> None:
        """The object under ``key`` is bound to the node at this version (new or changed)."""
        if key in self._flights:
            self.wanted[key] = (resource_version, obj)  # goes out once the flight is ACKed
        elif self.edge.get(key) == resource_version:
            self._drop(key)
        else:
            self.wanted[key] = (resource_version, obj)
            self._queue[key] = None

    def remove(self, key: str, obj: Any) -> None:
        """The object under ``key`` is no longer bound to the node (deleted or moved away)."""
        if key in self._flights:
            self.wanted[key] = (None, obj)  # goes out once the flight is ACKed
        elif key not in self.edge:
            self._drop(key)
        else:
            self.wanted[key] = (None, obj)
            self._queue[key] = None

    def _drop(self, key: str) -> None:
        """Nothing to send for ``key`` (not in flight): the edge has what is wanted."""
        self.wanted.pop(key, None)
        self._held.pop(key, None)
        self._queue.pop(key, None)

    def ack(self, msg_id: str) -> bool:
        """The edge persisted message ``msg_id``. Returns ``False`` for unknown or stale ids."""
        return self.take_ack(msg_id) is not None

    def take_ack(self, msg_id: str) -> float | None:
        """:meth:`ack`, returning when the message was sent (in the ``now`` of :meth:`poll`),
        or ``None`` for unknown or stale ids."""
        key = self._by_id.pop(msg_id, None)
        if key is None:
            return None
        flight = self._flights.pop(key)
        self.acks += 1
        rv = flight.resource_version
        if rv is None:
            self.edge.pop(key, None)
        else:
            self.edge[key] = rv
        want = self.wanted.get(key)
        if want is not None:
            if want[0] == self.edge.get(key):
                del self.wanted[key]
                self._held.pop(key, None)
            else:
                self._queue[key] = None  # the newer version may go now
        return flight.sent

    def sent_at(self, msg_id: str) -> float | None:
        """When message ``msg_id`` (in flight) was sent, in the ``now`` of :meth:`poll`."""
        key = self._by_id.get(msg_id)
        flight = self._flights.get(key) if key is not None else None
        return flight.sent if flight is not None else None

    # -- outputs ------------------------------------------------------------------------------

    def poll(self, now: float) -> list[Outgoing]:
        """Everything due now: retries whose ACK deadline passed, then new keys up to the window."""
        out: list[Outgoing] = []
        deadlines = self._deadlines
        if deadlines and deadlines[0][0] <= now:
            due: list[str] = []
            by_id = self._by_id
            while deadlines and deadlines[0][0] <= now:
                key = by_id.get(heapq.heappop(deadlines)[2])
                if key is not None:
                    due.append(key)
            for key in due:
                flight = self._flights[key]
                rv, content = self.wanted.pop(key, (flight.resource_version, flight.content))
                out.append(self._send(key, rv, content, now, retry=True))
        recent = self._recent
        if recent and self.min_interval > 0:
            horizon = now - self.min_interval
            stale: list[str] = []
            for key, sent in recent.items():  # oldest first
                if sent > horizon:
                    break
                stale.append(key)
            for key in stale:
                del recent[key]

        queue = self._queue
        if queue and len(self._flights) < self.window:
            for key in list(queue):
                sent_at = recent.get(key)
                if sent_at is not None and now < sent_at + self.min_interval:
                    self._held[key] = sent_at + self.min_interval
                    continue  # sent a moment ago: let more versions pile up
                self._held.pop(key, None)
                del queue[key]
                rv, content = self.wanted.pop(key)
                out.append(self._send(key, rv, content, now, retry=False))
                if len(self._flights) >= self.window:
                    break
        return out

    def next_deadline(self) -> float | None:
        """The earliest ACK deadline or held key's release, or ``None`` if there is neither."""
        deadlines = self._deadlines
        by_id = self._by_id
        while deadlines and deadlines[0][2] not in by_id:
            heapq.heappop(deadlines)  # ACKed or sent again since
        earliest = deadlines[0][0] if deadlines else None
        if self._held:  # only with ``min_interval``, only while a key's versions pile up
            wanted = self.wanted
            for key, release in self._held.items():
                if key in wanted and (earliest is None or release < earliest):
                    earliest = release
        return earliest

    def known(self) -> dict[str, str]:
        """What the edge may hold: its confirmed keys, and every key in flight to it with an
        empty version (it may have applied the message whose ACK is still coming). As an
        inventory this errs towards resending, never towards leaving a deleted key behind."""
        known = dict(self.edge)
        for key in self._flights.keys() - known.keys():
            known[key] = ""
        return known

    @property
    def in_flight(self) -> int:
        return len(self._flights)

    @property
    def backlog(self) -> int:
        """Keys still to deliver or waiting for an ACK."""
        return len(self.wanted.keys() | self._flights.keys())

    @property
    def holding(self) -> bool:
        """Some key is held back by ``min_interval``: :meth:`next_deadline` may be its release
        (earlier than any ACK deadline of a message sent since)."""
        return bool(self._held)

    @property
    def ready(self) -> bool:
        """Something could go out right now without waiting for a deadline."""
        flights = self._flights
        if len(flights) >= self.window:
            return False
        held = self._held
        for key in self._queue:  # nearly always empty or one key, asked per change and ACK
            if key not in held:
                return True
        return False

    def _send(self, key: str, rv: str | None, content: Any, now: float, *, retry: bool) -> Outgoing:
        old = self._flights.get(key)
        if old is not None:
            self._by_id.pop(old.msg_id, None)
        msg_id = self._new_id()
        deadline = now + self.ack_timeout
        flights = self._flights
        out = Outgoing(msg_id, key, rv, content, key not in self.edge, retry, now)
        flights[key] = out
        self._by_id[msg_id] = key
        deadlines = self._deadlines
        if len(deadlines) < 2 * len(flights) + 64:
            heapq.heappush(deadlines, (deadline, self.sent, msg_id))
        else:  # ACKed entries below a long-unACKed one: keep the heap within the flights' size
            timeout = self.ack_timeout
            deadlines[:] = [(f.sent + timeout, i, f.msg_id) for i, f in enumerate(flights.values())]
            heapq.heapify(deadlines)
        if self.min_interval > 0:
            recent = self._recent
            recent.pop(key, None)  # to the end: oldest first
            recent[key] = now
        self.sent += 1
        self.retries += retry
        return out
