"""The cloud's end of one node's link, as a pure state machine.

Everything the hub *decides* about a connected node lives here; everything it *does* (read
and write the websocket, sleep until a deadline, put messages in bus inboxes) stays in
:class:`~cloudhub.hub.session.NodeSession`, :mod:`cloudhub.hub.upstream` and
:mod:`cloudhub.hub.inbox`, which are pumps. It is the counterpart of
:class:`wire.session.EdgeSession` and composes the same pure parts: :class:`wire.delivery.
Downstream` (what the edge holds, what is in flight, retries) and :class:`wire.liveness.
Liveness`. Nothing here awaits, touches a socket or reads a clock: ``now`` (monotonic
seconds) and ``wall_ms`` (header timestamps) are arguments.

Inputs and what they return::

    frame(data, now)          -> Actions   any frame read from the edge
    route(msg, now)           -> Actions   one decoded message
    inventory_wait(timeout)   -> seconds   how long to wait for an inventory before asking
    start_query(inventory)    -> Message?  the ``desired`` query that starts delivery
    started(answer)           -> kind?     edgecontroller's answer to it: delivery starts
    change(key, rv, obj)      -> bool      an object change for the node: ready to send?
    ack(msg_id, now)          -> bool      an ACK: ready to send?
    poll(now, wall_ms)        -> [frame]   object frames due now
    expired(now)              -> reason?   the edge fell silent: close the link
    next_deadline()           -> float     when to poll again

**Routing by operation** (edge -> cloud): ``response`` is an ACK for the delivery state;
``keepalive`` is answered with ``pong`` (not to a stock edge, which expects none);
``inventory`` is what the edge holds, and asks for the start; ``query`` goes to edgecontroller,
writes to the controller that owns the resource (:func:`cloudhub.routes.upstream_destination`),
a stock edge's bare device reports and its membership ``get`` to devicecontroller, group
``stream`` to cloudstream. A forwarded message is renamed ``node/{node}/...`` from the
certificate's identity, never from anything the edge wrote. A bad frame and an unknown operation
get an error reply; a stock edge's empty message gets nothing (:mod:`cloudhub.hub.stock`).

**Start handshake.** Delivery starts once edgecontroller has said what is bound to the node
(its answer to :meth:`LinkSession.start_query`), diffed against the inventory the edge stated
(ours sends one first; a stock edge's stands in from the acked log, at once). Without an
inventory in time, the pump asks anyway and everything is sent again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeGuard

from cloudhub import routes
from cloudhub.hub import stock
from hive.local_messages import MessageIds
from hive.metrics import Buckets
from wire.codec import (
    FAST_FRAME_MAX,
    Cheap,
    ContentCache,
    ack_or_keepalive,
    ack_parent,
    decode,
    encode,
    encode_content,
    json_string,
    object_frame,
    response_frame,
)
from wire.delivery import Downstream, Outgoing
from wire.errors import WireError
from wire.liveness import Liveness
from wire.messages import Group, Header, Message, Operation, Route
from wire.resources import ResourceKey

log = logging.getLogger(__name__)

#: edge -> cloud writes, handed to the controller that owns the resource
UPSTREAM_OPS: Final = frozenset(
    {Operation.INSERT, Operation.UPDATE, Operation.PATCH, Operation.DELETE, Operation.UPLOAD}
)
#: what an ACK or keepalive costs in a node's rate budget (a frame that makes work costs 1):
#: ACKs are bounded by what the cloud sent, and a resync of 10,000 objects must not crawl
CHEAP_FRAME_COST: Final = 0.05
#: the close reason of a link whose edge fell silent
KEEPALIVE_TIMEOUT: Final = "keepalive timeout"
_PONG = json_string("pong")
#: (``__init__``'s ``stock`` flag hides the module there)
_node_object_key = stock.node_object_key


def stub_for(key: str) -> dict[str, Any]:
    """Content of a delete for a key the cloud no longer knows: kind and metadata only."""
    k = ResourceKey.parse(key)
    meta: dict[str, Any] = {"name": k.name}
    if k.namespace:
        meta["namespace"] = k.namespace
    return {"kind": k.kind, "metadata": meta}


@dataclass(slots=True)
class Forward:
    """A message for a cloud module.

    ``original`` is the edge's request when its answer must go back to this node (the pump
    remembers it under ``message.id``); ``unrouted`` says why, when ``dest`` is not a module
    of this cloudhub, the edge gets an error reply (:meth:`unrouted_reply`) rather than
    nothing.
    """

    dest: str
    message: Message
    original: Message | None = None
    unrouted: str = ""

    def unrouted_reply(self) -> str | None:
        """The frame for the edge when ``dest`` is not a module here (None: nothing)."""
        if not self.unrouted:
            return None
        return encode(self.message.error_reply(self.unrouted, source=routes.HUB))


@dataclass(slots=True)
class Actions:
    """What the pump must do after one input, in this order: write ``frames``, send
    ``forwards``, send ``start`` (a ``desired`` query) to edgecontroller, and if ``deliver``,
    write what the delivery state has due. ``cost``: the input's share of the node's rate
    budget."""

    frames: list[str] = field(default_factory=list)
    forwards: list[Forward] = field(default_factory=list)
    start: Message | None = None
    deliver: bool = False
    cost: float = 1.0


def _may_take_fast_path(frame: str | bytes, max_frame: int) -> TypeGuard[str]:
    return (
        isinstance(frame, str)
        and len(frame) <= FAST_FRAME_MAX
        and 4 * len(frame) <= max_frame  # UTF-8 takes at most 4 bytes a character
    )


def cheap_frame(frame: str | bytes, max_frame: int) -> Cheap | None:
    """The codec's ACK/keepalive fast path for ``frame`` if it may take it, else None."""
    return ack_or_keepalive(frame) if _may_take_fast_path(frame, max_frame) else None


class LinkSession:
    """The decisions of one node's live link (see the module notes).

    Args:
        node: the node's name, from its certificate.
        stock: a stock KubeEdge edgecore (:mod:`cloudhub.hub.stock`).
        heartbeat: seconds between the edge's keepalives; silent for twice that, it is gone.
        now: monotonic seconds at the upgrade.
        ack_timeout, window, min_interval: the delivery's (:class:`wire.delivery.Downstream`).
        max_frame: longest frame accepted, bytes.
        ids: message ids of the hub (object frames, replies, forwards).
        encoded: object versions encoded once for every node that gets them.
        round_trips: where the ACK round trips of objects are counted.
    """

    def __init__(
        self,
        *,
        node: str,
        stock: bool = False,
        heartbeat: float,
        now: float,
        ack_timeout: float,
        window: int,
        min_interval: float = 0.0,
        max_frame: int,
        ids: Callable[[], str] | None = None,
        encoded: ContentCache | None = None,
        round_trips: Buckets | None = None,
    ) -> None:
        self.node = node
        #: device changes also go down as membership updates and ``cloud_updated`` twins,
        #: objects by their source; no pong, no inventory
        self.stock = stock
        #: the key of the node's own Node object, which a stock edge never receives
        self._own_key = _node_object_key(node) if stock else None
        self.max_frame = max_frame
        self._ids: Callable[[], str] = ids if ids is not None else MessageIds()
        self._encoded = encoded if encoded is not None else ContentCache()
        self._round_trips = round_trips if round_trips is not None else Buckets()
        # The hub's ids for object messages too: an ACK only has to name a message of this
        # link, and a counter costs a fifth of a uuid4 (an OS random read per message).
        self.downstream = Downstream(
            ack_timeout=ack_timeout, window=window, min_interval=min_interval, new_id=self._ids
        )
        self.liveness = Liveness(interval=heartbeat, now=now)
        #: ``True`` once the inventory diff has been computed and delivery may start
        self.is_started = False
        #: the ``desired`` query asked and not answered yet, and the inventory it will diff
        self._query_id: str | None = None
        self._inventory: dict[str, str] | None = None

    # -- what the edge sends -------------------------------------------------------------------

    def received(self, now: float) -> None:
        """Any frame from the edge is a sign of life."""
        self.liveness.received(now)

    def ack(self, msg_id: str, now: float) -> bool:
        """Apply an ACK; whether something can be sent now."""
        downstream = self.downstream
        sent = downstream.take_ack(msg_id)
        if sent is None:
            return False
        self._round_trips.observe(now - sent)
        return downstream.ready

    def ack_frame(self, data: str | bytes, now: float) -> bool | None:
        """``data`` if it is an ACK the codec's fast path matches (:func:`cheap_frame`'s test,
        for ACKs alone): applied, as :meth:`frame` would, and whether something can be sent
        now; None (nothing done) for any other frame. The hub's reader takes one per object
        it sends."""
        parent = ack_parent(data) if _may_take_fast_path(data, self.max_frame) else None
        if parent is None:
            return None
        self.liveness.received(now)
        return self.ack(parent, now)

    def frame(self, data: str | bytes, now: float) -> Actions:
        """One frame read from the edge: ACKs and keepalives by the codec's fast path, the rest
        decoded and routed."""
        self.liveness.received(now)
        cheap = cheap_frame(data, self.max_frame)
        if cheap is not None:
            if cheap.op == Operation.RESPONSE:
                return Actions(deliver=self.ack(cheap.parent, now), cost=CHEAP_FRAME_COST)
            frames = [] if self.stock else [self._pong(cheap)]
            return Actions(frames=frames, cost=CHEAP_FRAME_COST)
        try:
            msg = decode(data, max_size=self.max_frame)
        except WireError as exc:
            if self.stock and stock.is_empty_message(data):
                log.debug("node %s sent the stock edge's empty message", self.node)
                return Actions(cost=CHEAP_FRAME_COST)
            log.warning("node %s sent a bad frame: %s", self.node, exc)
            return Actions(frames=[encode(_error(f"bad frame: {exc}"))])
        actions = self.route(msg, now)
        if msg.operation in (Operation.RESPONSE, Operation.KEEPALIVE):
            actions.cost = CHEAP_FRAME_COST
        return actions

    def route(self, msg: Message, now: float) -> Actions:
        """Route one decoded message from the edge (see the module notes)."""
        op = msg.operation
        if msg.route.group == Group.STREAM:
            return Actions(forwards=[self._stream(msg)])
        if op == Operation.RESPONSE:
            return Actions(deliver=self.ack(msg.parent_id, now))
        if op == Operation.KEEPALIVE:
            if self.stock:  # a stock edge expects no answer (it logs one)
                return Actions()
            return Actions(frames=[encode(msg.reply("pong", source=routes.HUB))])
        if stock.bare_report(msg.route.source, msg.resource) is not None:
            # Unanswered, as stock cloudcore does: a stock edge takes any answer for one to a
            # synchronous call and logs a warning per report (refusals are logged and
            # recorded as Events here).
            return Actions(forwards=[self._forward(msg, routes.DEVICECONTROLLER, answer=False)])
        if op == stock.GET and msg.resource == routes.MEMBERSHIP_DETAIL:
            return Actions(forwards=[self._forward(msg, routes.DEVICECONTROLLER)])
        if op == Operation.INVENTORY:
            inventory = msg.content
            actions = Actions()
            if not isinstance(inventory, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in inventory.items()
            ):
                reply = msg.error_reply("inventory must map keys to versions")
                actions.frames.append(encode(reply))
                inventory = None
            actions.start = self.start_query(inventory)
            return actions
        if op == Operation.QUERY:
            return Actions(forwards=[self._forward(msg, routes.EDGECONTROLLER)])
        if op in UPSTREAM_OPS:
            return Actions(forwards=[self._forward(msg, routes.upstream_destination(msg.resource))])
        if op == Operation.ERROR:
            log.warning("node %s could not apply %s: %s", self.node, msg.resource, msg.content)
            return Actions()
        log.warning("node %s sent unknown operation %r", self.node, op)
        return Actions(
            frames=[encode(msg.error_reply(f"unknown operation {op!r}", source=routes.HUB))]
        )

    def _pong(self, keepalive: Cheap) -> str:
        """The answer to a keepalive the fast path matched, as ``msg.reply("pong")`` writes it."""
        return response_frame(
            msg_id=self._ids(),
            parent_id=keepalive.id,
            source=routes.HUB,
            group=keepalive.group,
            resource=keepalive.resource,
            content_json=_PONG,
        )

    def _forward(self, msg: Message, dest: str, *, answer: bool = True) -> Forward:
        """An edge's request for a controller, named by the certificate's node."""
        forward = Message(
            header=Header(msg_id=self._ids(), resourceversion=msg.header.resourceversion),
            route=Route(
                source=routes.HUB,
                group=msg.route.group,
                operation=msg.operation,
                resource=f"node/{self.node}/{msg.resource}",
            ),
            content=msg.content,
        )
        return Forward(dest, forward, original=msg if answer else None)

    def _stream(self, msg: Message) -> Forward:
        """A stream message for cloudstream, named by the certificate's node."""
        msg.route.resource = f"node/{self.node}/{msg.resource}"
        return Forward(routes.CLOUDSTREAM, msg, unrouted="this cloudhub relays no streams")

    # -- the start handshake -------------------------------------------------------------------

    def inventory_wait(self, timeout: float) -> float:
        """Seconds to wait for the edge's inventory before starting without one: ``timeout``
        for ours; none for a stock edge, which sends none (what it last ACKed stands in)."""
        return 0.0 if self.stock else timeout

    def start_query(self, inventory: Mapping[str, str] | None) -> Message | None:
        """The query asking edgecontroller what is bound to the node, diffed against
        ``inventory`` when it answers; None when delivery started or was asked for already."""
        if self.is_started or self._query_id is not None:
            return None
        query = Message.new(
            source=routes.HUB,
            group=Group.RESOURCE,
            operation=Operation.QUERY,
            resource=routes.desired_resource(self.node),
        )
        self._query_id = query.id
        self._inventory = None if inventory is None else dict(inventory)
        return query

    def started(self, answer: Message) -> str | None:
        """edgecontroller answered the start query: diff and start delivering. Whether it did:
        ``"diff"`` (against the edge's inventory), ``"full"`` (without one), or None (an error,
        or an answer to another query, starts nothing)."""
        if answer.parent_id != self._query_id or self.is_started:
            return None
        self._query_id = None
        if answer.operation != Operation.RESPONSE or not isinstance(answer.content, dict):
            return None
        desired: Mapping[str, tuple[str, Any]] = answer.content
        if self.stock:  # a stock edge never receives its Node
            desired = {k: v for k, v in desired.items() if not stock.is_node_object(k, self.node)}
        inventory, self._inventory = self._inventory, None
        self.start(inventory, desired)
        return "full" if inventory is None else "diff"

    def start(
        self, inventory: Mapping[str, str] | None, desired: Mapping[str, tuple[str, Any]]
    ) -> None:
        """Diff the inventory against the desired set and start delivering."""
        self.downstream.start(inventory, desired, stub=stub_for)
        self.is_started = True
        log.info(
            "node %s synced: %d bound, edge had %s, %d to send",
            self.node,
            len(desired),
            "?" if inventory is None else len(inventory),
            len(self.downstream.wanted),
        )

    # -- what the cloud sends ------------------------------------------------------------------

    def change(self, key: str, resource_version: str | None, obj: Any) -> bool:
        """An object bound to the node changed (``resource_version`` None: deleted); whether
        something can be sent now. Before the start it is ignored: the diff covers it."""
        if not self.is_started or key == self._own_key:
            return False
        if resource_version is None:
            self.downstream.remove(key, obj)
        else:
            self.downstream.update(key, resource_version, obj)
        return self.downstream.ready

    def poll(self, now: float, wall_ms: int) -> list[str]:
        """The object frames due now (retries included), in order, stamped ``wall_ms``."""
        if not self.is_started:
            return []
        batch = self.downstream.poll(now)
        if not batch:
            return []
        return self.frames(batch, wall_ms)

    def expired(self, now: float) -> str | None:
        """Why the link must close now (the edge fell silent), or None."""
        if not self.liveness.expired(now):
            return None
        log.warning(
            "node %s: nothing received for %.1fs, closing half-open link",
            self.node,
            now - self.liveness.last_received,
        )
        return KEEPALIVE_TIMEOUT

    def next_deadline(self) -> float:
        """When to poll again: the keepalive expiry, an ACK deadline or a held key's release,
        whichever comes first."""
        deadline = self.liveness.next_deadline(sending=False)
        ack_deadline = self.downstream.next_deadline()
        return deadline if ack_deadline is None else min(deadline, ack_deadline)

    @property
    def ready(self) -> bool:
        """Started, with something the delivery state would send now."""
        return self.is_started and self.downstream.ready

    def frames(self, batch: list[Outgoing], wall_ms: int) -> list[str]:
        """The frames of ``batch``: for a stock edge, each Device's membership or twin frame
        goes just before the object."""
        if not self.stock:
            return [self._frame(out, wall_ms) for out in batch]
        frames: list[str] = []
        for out in batch:
            device = None if out.resource_version is None else out.content
            frames.extend(
                stock.device_frames(
                    key=out.key,
                    device=device,
                    new=out.insert,
                    new_id=self._ids,
                    timestamp_ms=wall_ms,
                )
            )
            frames.append(self._frame(out, wall_ms))
        return frames

    def _frame(self, out: Outgoing, wall_ms: int) -> str:
        key = out.key
        rv = out.resource_version
        if rv is None:
            op = Operation.DELETE
            content_json = encode_content(out.content)
        else:
            op = Operation.INSERT if out.insert else Operation.UPDATE
            # The object's JSON, encoded once per version however many nodes receive it
            # (usually the store's own text, put there by the inbox: no JSON work here).
            cache_key = (key, rv)
            cached = self._encoded.get(cache_key)
            if cached is None:
                cached = encode_content(out.content)
                self._encoded.put(cache_key, cached)
            content_json = cached
        if log.isEnabledFor(logging.DEBUG):
            log.debug("> %s %s %s rv=%s", self.node, op, key, rv)
        return object_frame(
            msg_id=out.msg_id,
            timestamp=wall_ms,
            resource_version=rv or "",
            operation=op,
            key=key,
            content_json=content_json,
            source=stock.object_source(key),
        )

    def answer(self, reply: Message, original: Message, wall_ms: int) -> str:
        """The frame answering ``original`` (a request forwarded from this node) with a
        module's ``reply``."""
        if isinstance(reply.content, routes.MembershipDevices):
            return stock.membership_detail_frame(
                msg_id=self._ids(),
                event_id=self._ids(),
                timestamp_ms=wall_ms,
                devices=reply.content.devices,
            )
        if reply.operation == Operation.RESPONSE:
            return encode(original.reply(reply.content, source=routes.HUB))
        return encode(original.error_reply(str(reply.content), source=routes.HUB))


def _error(reason: str) -> Message:
    return Message.new(
        source=routes.HUB,
        group=Group.RESOURCE,
        operation=Operation.ERROR,
        resource="",
        content=reason,
    )


__all__ = [
    "CHEAP_FRAME_COST",
    "KEEPALIVE_TIMEOUT",
    "Actions",
    "Forward",
    "LinkSession",
    "cheap_frame",
    "stub_for",
]
