"""Where an edge's frame is decided on: read from a node's link, then routed by operation.

:meth:`Upstream.read` reads every frame of one node's link. ACKs and keepalives take the
fast path (:mod:`cloudhub.hub.reader`: an ACK applied to the node's delivery state without a
task switch, a keepalive answered from a template); every other frame is decoded
(:func:`wire.codec.decode`) and routed by :meth:`Upstream.route`:

- ``response`` (an ACK the fast path did not take): the node's delivery state;
- ``keepalive``: answered with ``pong`` (not to a stock edge, which expects none);
- ``inventory``: what the edge holds; delivery starts with edgecontroller's answer to the
  ``desired`` query it triggers (:meth:`Upstream.request_start`);
- ``query``: forwarded to edgecontroller; writes (``insert``/``update``/``patch``/``delete``/
  ``upload``) to the controller that owns the resource
  (:func:`cloudhub.routes.upstream_destination`); a stock edge's device reports and its
  membership get to devicecontroller;
- group ``stream``: to cloudstream.

A forwarded request is renamed ``node/{node}/...`` from the certificate's identity, never from
anything the edge wrote, and remembered in :class:`Requests` so that the answer (routed by
:mod:`cloudhub.hub.inbox`) goes back to that node only. A node's frames are read at most at its
rate budget: paced, not dropped.
"""

from __future__ import annotations

import asyncio
import logging

from websockets.exceptions import ConnectionClosed

from cloudhub import routes
from cloudhub.config import HubSettings
from cloudhub.hub import stock
from cloudhub.hub.links import Link
from cloudhub.hub.reader import CHEAP_FRAME_COST, FrameReader
from cloudhub.hub.session import NodeSession
from cloudhub.linkworker.pool import RelayedLink
from hive.bus import Bus, UnknownModule
from hive.local_messages import MessageIds
from wire.codec import Cheap, decode, json_string, response_frame
from wire.errors import WireError
from wire.messages import Group, Header, Message, Operation, Route

log = logging.getLogger(__name__)

#: edge -> cloud writes, handed to the controller that owns the resource
_UPSTREAM_OPS = frozenset(
    {Operation.INSERT, Operation.UPDATE, Operation.PATCH, Operation.DELETE, Operation.UPLOAD}
)
_CHEAP_OPS = frozenset({Operation.RESPONSE, Operation.KEEPALIVE})
_PONG = json_string("pong")


class Requests:
    """The hub's requests still waiting for a module's answer (the answers arrive in
    :mod:`cloudhub.hub.inbox`)."""

    __slots__ = ("forwarded", "starting")

    def __init__(self) -> None:
        #: desired-query id -> (session, inventory) waiting for edgecontroller's answer
        self.starting: dict[str, tuple[NodeSession, dict[str, str] | None]] = {}
        #: forwarded request id -> (node, the edge's message)
        self.forwarded: dict[str, tuple[str, Message]] = {}


class Upstream:
    """Reads nodes' links and routes what they send (see the module notes)."""

    def __init__(
        self, *, bus: Bus, settings: HubSettings, ids: MessageIds, requests: Requests
    ) -> None:
        self._bus = bus
        self._settings = settings
        self._ids = ids
        self._requests = requests

    async def read(self, session: NodeSession, link: Link) -> None:
        """Read and route every frame of ``session``'s link until it ends."""
        loop = asyncio.get_running_loop()
        reader = FrameReader(session, self._settings, loop.time)
        if isinstance(link, RelayedLink):
            # ACKs arriving while this task waits are applied by the channel's callback.
            link.sink = reader.ack_now
        try:
            async for frame in link:
                # Pace, don't drop: while we sleep nothing is read and TCP slows the sender.
                wait = reader.pace_until - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if reader.ack_now(frame):
                    continue
                session.received()
                cheap = reader.cheap(frame)
                if cheap is None:
                    cost = await self._read_frame(session, frame)
                elif cheap.op == Operation.RESPONSE:
                    if session.ack(cheap.parent):  # an ACK the fast path did not take
                        session.deliver()
                    cost = CHEAP_FRAME_COST
                else:
                    if not session.stock:  # a stock edge expects no answer (it logs one)
                        await session.send_text(self._pong(cheap))
                    cost = CHEAP_FRAME_COST
                reader.pace(cost, len(frame), loop.time())
        except ConnectionClosed:
            pass

    async def _read_frame(self, session: NodeSession, frame: str | bytes) -> float:
        """Decode and route one frame; what it costs in the node's rate budget."""
        try:
            msg = decode(frame, max_size=self._settings.max_frame)
        except WireError as exc:
            if session.stock and stock.is_empty_message(frame):
                log.debug("node %s sent the stock edge's empty message", session.node)
                return CHEAP_FRAME_COST
            log.warning("node %s sent a bad frame: %s", session.node, exc)
            await session.send(_error(f"bad frame: {exc}"))
            return 1.0
        await self.route(session, msg)
        return CHEAP_FRAME_COST if msg.operation in _CHEAP_OPS else 1.0

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

    async def route(self, session: NodeSession, msg: Message) -> None:
        """Route one decoded message from ``session``'s node (see the module notes)."""
        op = msg.operation
        if msg.route.group == Group.STREAM:
            await self._stream_from_edge(session, msg)
        elif op == Operation.RESPONSE:
            if session.ack(msg.parent_id):
                session.deliver()
        elif op == Operation.KEEPALIVE:
            if not session.stock:
                await session.send(msg.reply("pong", source=routes.HUB))
        elif stock.bare_report(msg.route.source, msg.resource) is not None:
            # Unanswered, as stock cloudcore does: a stock edge takes any answer for one to a
            # synchronous call and logs a warning per report (refusals are logged and
            # recorded as Events here).
            await self._forward(session, msg, routes.DEVICECONTROLLER, answer=False)
        elif op == stock.GET and msg.resource == routes.MEMBERSHIP_DETAIL:
            await self._forward(session, msg, routes.DEVICECONTROLLER)
        elif op == Operation.INVENTORY:
            inventory = msg.content
            if not isinstance(inventory, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in inventory.items()
            ):
                await session.send(msg.error_reply("inventory must map keys to versions"))
                inventory = None
            self.request_start(session, inventory)
        elif op == Operation.QUERY:
            await self._forward(session, msg, routes.EDGECONTROLLER)
        elif op in _UPSTREAM_OPS:
            await self._forward(session, msg, routes.upstream_destination(msg.resource))
        elif op == Operation.ERROR:
            log.warning("node %s could not apply %s: %s", session.node, msg.resource, msg.content)
        else:
            log.warning("node %s sent unknown operation %r", session.node, op)
            await session.send(msg.error_reply(f"unknown operation {op!r}", source=routes.HUB))

    async def _forward(
        self, session: NodeSession, msg: Message, dest: str, *, answer: bool = True
    ) -> None:
        """Hand an edge's request to a controller; its answer goes back to this node only.

        The resource gets the ``node/{node}/`` prefix from the certificate's identity, never
        from anything the edge wrote, so controllers authorize against the real node.
        """
        forward = Message(
            header=Header(msg_id=self._ids(), resourceversion=msg.header.resourceversion),
            route=Route(
                source=routes.HUB,
                group=msg.route.group,
                operation=msg.operation,
                resource=f"node/{session.node}/{msg.resource}",
            ),
            content=msg.content,
        )
        if answer:
            self._requests.forwarded[forward.id] = (session.node, msg)
        await self._bus.send(dest, forward)

    async def _stream_from_edge(self, session: NodeSession, msg: Message) -> None:
        """Hand a stream message to cloudstream, named by the certificate's node."""
        msg.route.resource = f"node/{session.node}/{msg.resource}"
        try:
            await self._bus.send(routes.CLOUDSTREAM, msg)
        except UnknownModule:
            await session.send(
                msg.error_reply("this cloudhub relays no streams", source=routes.HUB)
            )

    def request_start(self, session: NodeSession, inventory: dict[str, str] | None) -> None:
        """Ask edgecontroller what is bound to the node; delivery starts with its answer."""
        starting = self._requests.starting
        if session.started or any(s is session for s, _ in starting.values()):
            return
        query = Message.new(
            source=routes.HUB,
            group=Group.RESOURCE,
            operation=Operation.QUERY,
            resource=routes.desired_resource(session.node),
        )
        starting[query.id] = (session, inventory)
        if not self._bus.send_nowait(routes.EDGECONTROLLER, query):
            asyncio.get_running_loop().create_task(
                self._bus.send(routes.EDGECONTROLLER, query), name=f"start:{session.node}"
            )


def _error(reason: str) -> Message:
    return Message.new(
        source=routes.HUB,
        group=Group.RESOURCE,
        operation=Operation.ERROR,
        resource="",
        content=reason,
    )
