"""The edge's end of the cloud link, as a pure state machine.

Everything edgehub *decides* lives here; everything it *does* (open the websocket, read node.crt,
sleep, put messages in bus inboxes) stays in the I/O module, which becomes a pump::

    connecting() ─> opened(inventory) ─> stated(now) ─> receive(frame, now) / send(msg) /
         │                                            poll(now) until close_reason
         └─> refused(...) / failed(...) / unusable_credentials(...)
    ─> closed(now) ─> next_retry() ─> the pump sleeps ─> connecting() ...

Each input returns what to do as data: frames to write to the websocket (already encoded) and
:class:`Route` s for the bus. The clock is an argument (``now``, monotonic seconds, and
``wall_ms`` for the timestamps KubeEdge puts in headers); nothing here touches a socket.

**Routing by operation.** Cloud -> edge: the cloud's ``logs``/``exec`` streams (group
``stream``) go to the stream module; ``insert``/``update``/``patch``/``delete`` and resource
``query`` go to the store module (metamanager), which ACKs once the row is committed;
``response``/``error`` go back to the module whose upstream message they answer (remembered
per link by message id) or, failing that, to a local ``send_sync`` waiter. Anything else gets
an ``error`` reply naming the operation, so a newer cloud learns this edge does not speak it.

**Inventory handshake.** The first frame of every link is the edge's inventory
(key -> resourceVersion of everything cached) so the cloud sends only the difference; see
:mod:`wire.delivery`. Only once it is written may upstream messages follow, so modules are told
``connected`` after it.

**Liveness.** A keepalive every heartbeat; the link is dropped after two heartbeats of silence
(:mod:`wire.liveness`): KubeEdge's edge has no read deadline and sits on half-open links for
minutes.

**Reconnects.** Jittered exponential backoff (the delays come from the factory passed in,
:func:`hive.backoff.backoff` in edgecore), not KubeEdge's fixed 30 s. A link that stayed up for
two heartbeats worked, so the backoff starts over when it ends: without that, an edge that once
waited out a long outage took up to the cap to come back from every later blip. A link the cloud
drops sooner (a replica that refuses the node right after the handshake) keeps the delays
growing, so a fleet does not hammer it.

**Credentials.** A refused handshake (401/403) or an expired certificate can only be fixed by an
operator: it is logged ONCE (with the remedy the caller worded), and the next attempt waits the
backoff cap or until new credentials appear, whichever is first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from wire.codec import DEFAULT_MAX_SIZE, decode, encode
from wire.errors import WireError
from wire.liveness import Liveness
from wire.messages import Group, Message, Operation

#: operations the cloud sends that the store module persists (and ACKs)
STORE_OPERATIONS: Final = frozenset(
    {Operation.INSERT, Operation.UPDATE, Operation.PATCH, Operation.DELETE}
)
#: operations that answer an earlier message
ANSWERS: Final = frozenset({Operation.RESPONSE, Operation.ERROR})
#: the link notifications sent to :attr:`EdgeSession.notify_groups`
CONNECTED: Final = "connected"
DISCONNECTED: Final = "disconnected"
#: a link that stayed up this many heartbeats worked: the backoff starts over when it ends
STABLE_HEARTBEATS: Final = 2.0


@dataclass(slots=True)  # not frozen: that costs ~2 us per frame received, for nothing
class Route:
    """A message for local modules.

    Exactly one of ``module`` / ``group`` is set, or neither: then ``message`` is a reply for
    whoever waits on it (``Bus.respond``), and ``warn_unclaimed`` says whether it is worth a
    warning when nobody does (an ``error`` nobody asked for is the only trace of the problem).
    """

    message: Message
    module: str = ""
    group: str = ""
    warn_unclaimed: bool = False


@dataclass(slots=True)
class Actions:
    """What the pump must do after one input: write ``frames`` in order, then deliver ``routes``."""

    frames: list[str] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Retry:
    """When to try the next link."""

    #: seconds to wait
    delay: float
    #: a credential problem: try earlier if the node's credentials change meanwhile
    on_new_credentials: bool = False


class EdgeSession:
    """One edge's link to the cloud across reconnects: routing, handshake, liveness, backoff.

    Args:
        name: this module's name: the ``source`` of frames the session writes.
        heartbeat: seconds between keepalives; the link is dead after twice that in silence.
        retry_cap: seconds to wait after a credential problem (the backoff's cap).
        delays: returns a fresh backoff iterator; called again whenever the backoff starts over.
        store: the module that persists cloud objects and answers resource queries.
        stream: the module that serves the cloud's logs/exec streams.
        notify_groups: groups told ``connected`` / ``disconnected``.
        node: this node's name (the inventory's resource).
        peer: ``host:port`` of the cloud, for log lines.
        max_frame: longest frame accepted, bytes.
        logger: where decisions are logged (the I/O module's logger, so lines name it).
    """

    def __init__(
        self,
        *,
        name: str,
        heartbeat: float,
        retry_cap: float,
        delays: Callable[[], Iterator[float]],
        store: str,
        stream: str,
        notify_groups: tuple[str, ...],
        node: str,
        peer: str,
        max_frame: int = DEFAULT_MAX_SIZE,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> None:
        if heartbeat <= 0:
            raise ValueError("heartbeat interval must be positive")
        self.name = name
        self.heartbeat = heartbeat
        self.retry_cap = retry_cap
        self._new_delays = delays
        self._delays = delays()
        self.store = store
        self.stream = stream
        self.notify_groups = notify_groups
        self.node = node
        self.peer = peer
        self.max_frame = max_frame
        self.log = logger or logging.getLogger(__name__)
        #: links opened so far
        self.connections = 0
        #: why the last attempt or link failed ("" before any failure)
        self.last_error = ""
        #: the live link's liveness, or ``None`` while offline
        self._live: Liveness | None = None
        #: ``now`` the live (or last) link was opened at
        self._up_since = 0.0
        #: upstream message id -> module that sent it, to route the cloud's answer back
        self._upstream: dict[str, str] = {}
        #: links opened when the current attempt began
        self._links_at_attempt = 0
        #: the credential problem of the current attempt ("" = none)
        self._problem = ""
        #: the credential problem last logged, so it is logged once, not at every retry
        self._reported = ""
        #: why the live link should be dropped ("" = it should not)
        self.close_reason = ""

    @property
    def connected(self) -> bool:
        """A link is up and its inventory was stated."""
        return self._live is not None

    @property
    def awaiting_answers(self) -> int:
        """Upstream messages on the live link whose answer has not come back."""
        return len(self._upstream)

    def stable(self, now: float) -> bool:
        """The live link has stayed up long enough to count as working: when it ends, the
        backoff starts over."""
        return self._live is not None and now - self._up_since >= STABLE_HEARTBEATS * self.heartbeat

    # -- the link's life ------------------------------------------------------------------------

    def connecting(self) -> None:
        """An attempt begins."""
        self._links_at_attempt = self.connections
        self._problem = ""

    def handshake_accepted(self) -> None:
        """The cloud accepted the credentials: a later refusal is news worth a line again."""
        self._reported = ""

    def opened(self, inventory: Mapping[str, str], *, wall_ms: int = 0) -> str:
        """The websocket is open: the frame stating the inventory, to be written first.

        Only once it is written (:meth:`stated`) may upstream messages follow.
        """
        return encode(
            Message.new(
                source=self.name,
                group=Group.RESOURCE,
                operation=Operation.INVENTORY,
                resource=f"null/node/{self.node}",
                content=dict(inventory),
                timestamp_ms=wall_ms,
            )
        )

    def stated(self, now: float) -> Actions:
        """The inventory is written: the link is up; tell the modules."""
        self.connections += 1
        self._up_since = now
        self._live = Liveness(interval=self.heartbeat, now=now)
        self._upstream.clear()
        self.close_reason = ""
        return Actions(routes=self._notices(CONNECTED))

    def refused(self, status: int, body: str, *, expired: str = "") -> None:
        """The cloud answered the handshake with HTTP ``status``.

        Args:
            expired: the remedy for an expired node certificate, "" if it has not expired.
        """
        self.last_error = f"cloud refused the link ({status}): {body}"
        if status in (401, 403):
            self._problem = expired or self.last_error

    def failed(self, reason: str, *, expired: str = "") -> None:
        """The attempt or the link failed (network, TLS, timeout, closed).

        Args:
            expired: as for :meth:`refused`: an expired certificate explains a TLS failure.
        """
        self.last_error = reason
        if expired:
            self._problem = expired
        else:
            self.log.debug("cloud link down: %s", reason)

    def unusable_credentials(self, problem: str) -> None:
        """The node's credentials could not even be loaded; ``problem`` says what to do."""
        self._problem = problem

    def closed(self, now: float) -> Actions:
        """The attempt is over (the link, if one was opened, is gone)."""
        if self._live is None:
            return Actions()
        if self.stable(now):
            self._delays = self._new_delays()
        self._live = None
        self._upstream.clear()
        self.close_reason = ""
        self.log.warning("disconnected from cloud; serving from the local cache")
        return Actions(routes=self._notices(DISCONNECTED))

    def next_retry(self) -> Retry:
        """How long to wait before the next attempt (after :meth:`closed`)."""
        if self._problem:
            # Only an operator can fix this: say it once, retry slowly, and at once when new
            # credentials appear.
            problem, self._problem = self._problem, ""
            self.last_error = problem
            if problem != self._reported:
                self._reported = problem
                self.log.error("%s", problem)
            self._delays = self._new_delays()
            return Retry(self.retry_cap, on_new_credentials=True)
        delay = next(self._delays)
        if self.connections == self._links_at_attempt and self.last_error:
            # Never got a link: say where we cannot get to and why, once per attempt, at
            # WARNING: a wrong address or port in edgecore.yaml looks just like this.
            self.log.warning(
                "cannot reach the cloud at %s (%s); retrying in %.2fs",
                self.peer,
                self.last_error,
                delay,
            )
        else:
            self.log.info("reconnecting in %.2fs", delay)
        return Retry(delay)

    # -- traffic --------------------------------------------------------------------------------

    def receive(self, frame: str | bytes, now: float) -> Actions:
        """One frame from the cloud: any frame is a sign of life; route what it carries."""
        if self._live is not None:
            self._live.received(now)
        try:
            msg = decode(frame, max_size=self.max_frame)
        except WireError as exc:
            self.log.warning("cloud sent a bad frame: %s", exc)
            return Actions()
        op = msg.operation
        group = msg.route.group
        if group == Group.STREAM:
            return Actions(routes=[Route(msg, module=self.stream)])
        if op in STORE_OPERATIONS or (op == Operation.QUERY and group == Group.RESOURCE):
            return Actions(routes=[Route(msg, module=self.store)])
        if op in ANSWERS:
            origin = self._upstream.pop(msg.parent_id, None)
            if origin is not None:
                return Actions(routes=[Route(msg, module=origin)])
            return Actions(routes=[Route(msg, warn_unclaimed=op == Operation.ERROR)])
        self.log.warning("cloud sent unknown operation %r for %s", op, msg.resource)
        reply = msg.error_reply(f"unknown operation {op!r}", source=self.name)
        return Actions(frames=[encode(reply)])

    def send(self, msg: Message) -> str | None:
        """A local module's message for the cloud: its frame, or ``None`` while offline.

        Dropping while offline is safe: ACKs are worthless on a new link (the inventory diff
        replaces them) and upstream updates sit in their module's durable outbox until the next
        ``connected``. Never holding them means no module ever blocks on an absent cloud.
        """
        if self._live is None:
            self.log.debug("offline: not sending %s %s", msg.operation, msg.resource)
            return None
        if (
            msg.operation not in ANSWERS
            and msg.route.source
            and msg.route.group != Group.STREAM  # stream output expects no answer
        ):
            self._upstream[msg.id] = msg.route.source
        return encode(msg)

    def poll(self, now: float, *, wall_ms: int = 0) -> list[str]:
        """Keepalives due now; sets :attr:`close_reason` when the cloud fell silent."""
        live = self._live
        if live is None or self.close_reason:
            return []
        if live.expired(now):
            self.close_reason = f"nothing heard from the cloud for {now - live.last_received:.1f}s"
            self.log.warning("%s; dropping the link", self.close_reason)
            return []
        if not live.keepalive_due(now):
            return []
        live.keepalive_sent(now)
        ping = Message.new(
            source=self.name,
            group=Group.RESOURCE,
            operation=Operation.KEEPALIVE,
            resource="node",
            content="ping",
            timestamp_ms=wall_ms,
        )
        return [encode(ping)]

    def next_deadline(self) -> float | None:
        """When :meth:`poll` has something to do next, or ``None`` while offline."""
        if self._live is None:
            return None
        return self._live.next_deadline(sending=True)

    def _notices(self, op: str) -> list[Route]:
        return [
            Route(
                Message.new(source=self.name, group=Group.HUB, operation=op, resource="cloud"),
                group=g,
            )
            for g in self.notify_groups
        ]
