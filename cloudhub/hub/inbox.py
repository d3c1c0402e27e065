"""Where cloud messages head for the edges: the hub's bus inbox, routed to nodes' sessions.

The inbox holds, in order (see :mod:`cloudhub.routes`):

- fan-outs of object changes (:class:`~cloudhub.routes.Fanouts`): each change goes into the
  delivery state of every started session it names; a change for a few nodes is written at
  once from here, one for many is left to their writers;
- edgecontroller's answer to a node's ``desired`` query, which starts its delivery (diffed
  against the inventory the edge sent);
- answers to requests the hub forwarded (:class:`~cloudhub.hub.upstream.Requests`), one by
  one or many at once (:class:`~cloudhub.routes.Replies`), written on the asking node's link;
- cloudstream's messages (group ``stream``), written on their node's link.

Where a frame then leaves: :class:`~cloudhub.hub.session.NodeSession` writes what its delivery
state says is due (:mod:`cloudhub.hub.session`).
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from cloudhub import routes
from cloudhub.hub.session import NodeSession
from cloudhub.hub.upstream import Requests
from hive.bus import Bus
from hive.local_messages import MessageIds
from wire.codec import ContentCache, encode, encode_content, response_frame
from wire.messages import Group, Message
from wire.resources import split_node_prefix

log = logging.getLogger(__name__)

#: fan-outs to at most this many nodes are written as they are routed (by the sender's task
#: when the inbox was empty, see :meth:`Inbox.run`), larger ones by each node's writer
_DIRECT_FANOUT = 8


class Inbox:
    """Routes the hub's bus inbox to the nodes' sessions (see the module notes)."""

    def __init__(
        self,
        *,
        bus: Bus,
        sessions: dict[str, NodeSession],
        requests: Requests,
        ids: MessageIds,
        encoded: ContentCache,
    ) -> None:
        self._bus = bus
        #: the live sessions by node (:attr:`cloudhub.hub.sessions.Sessions.live`)
        self._sessions = sessions
        self._requests = requests
        self._ids = ids
        self._encoded = encoded
        #: deliveries started with the edge's inventory ("diff") or without one ("full")
        self.resyncs: Counter[str] = Counter()

    async def run(self) -> None:
        """Route the inbox until cancelled.

        Routing is synchronous, so the bus hands a message sent to an empty inbox straight to
        :meth:`handle` in the sender's task (a watch read's fan-out reaches the links in the
        same loop iteration, without a task switch); the rest wait here in order.
        """
        await self._bus.serve(routes.HUB, self.handle)

    def handle(self, msg: Message) -> None:
        """Route one message of the hub's inbox."""
        if isinstance(msg.content, routes.Fanouts):
            self._fan_out_all(msg.content.changes)
        else:
            self._route(msg)

    def _fan_out_all(self, changes: tuple[routes.Fanout, ...]) -> None:
        """Route a batch of changes (one watch read's, typically), then serve each session
        once: the frames one node got from the batch go out as one write."""
        direct: dict[str, NodeSession] = {}
        woken: dict[str, NodeSession] = {}
        for fanout in changes:
            try:
                self._fan_out(fanout, direct, woken)
            except Exception:
                log.exception("failed to route the change of %s", fanout.key)
        for session in direct.values():
            session.deliver()
        for node, session in woken.items():
            if node not in direct:
                session.wake()

    def _route(self, msg: Message) -> None:
        if msg.route.group == Group.STREAM:
            self._stream_to_edge(msg)
            return
        if isinstance(msg.content, routes.Replies):
            self._reply_all(msg.content)
            return
        session = self._requests.starting.pop(msg.parent_id, None)
        if session is not None:
            if self._sessions.get(session.node) is session:
                kind = session.state.started(msg)
                if kind is not None:
                    self.resyncs[kind] += 1
                    session.wake()
            return
        forwarded = self._requests.forwarded.pop(msg.parent_id, None)
        if forwarded is not None:
            self._answer(msg, *forwarded)
            return
        log.debug("hub dropped unexpected %s %s", msg.operation, msg.resource)

    def _answer(self, msg: Message, node: str, original: Message) -> None:
        """Write a module's answer to ``original`` on ``node``'s link."""
        target = self._sessions.get(node)
        if target is None:
            return
        target.send_soon(target.state.answer(msg, original, int(time.time() * 1000)))

    def _reply_all(self, replies: routes.Replies) -> None:
        """Answer each forwarded request named in ``replies`` on its node's link."""
        content_json = encode_content(replies.content)
        forwarded = self._requests.forwarded
        for parent_id in replies.parent_ids:
            request = forwarded.pop(parent_id, None)
            if request is None:
                continue
            node, original = request
            target = self._sessions.get(node)
            if target is None:
                continue
            target.send_soon(
                response_frame(
                    msg_id=self._ids(),
                    parent_id=original.id,
                    source=routes.HUB,
                    group=original.route.group,
                    resource=original.route.resource,
                    content_json=content_json,
                )
            )

    def _stream_to_edge(self, msg: Message) -> None:
        """Write cloudstream's message on its node's link (dropped when the node is gone:
        cloudstream ends the node's streams on the disconnect report)."""
        node, rest = split_node_prefix(msg.resource)
        session = self._sessions.get(node)
        if session is not None:
            msg.route.resource = rest
            session.send_soon(encode(msg))

    def _fan_out(
        self,
        fanout: routes.Fanout,
        direct: dict[str, NodeSession],
        woken: dict[str, NodeSession],
    ) -> None:
        """Put one change into the delivery state of the sessions it names; those with
        something to send now go into ``direct`` (written by the caller) or ``woken`` (left
        to their writers)."""
        key = fanout.key
        rv = fanout.resource_version
        if fanout.body is not None and rv is not None:
            # The store's own text of this version: every session sends it as it is.
            self._encoded.put((key, rv), fanout.body)
        # A change for a few nodes is written from here; one for many is left to their
        # writers, so that routing it does not hold the loop for the whole fan-out.
        served = direct if len(fanout.nodes) <= _DIRECT_FANOUT else woken
        sessions = self._sessions
        for node in fanout.nodes:
            session = sessions.get(node)
            # Only a session with something to send now is served: while the key's previous
            # version awaits its ACK (a burst of edits), that ACK does it. Waking every
            # session of a widely used object on every edit was most of a burst's cost.
            if session is not None and session.state.change(key, rv, fanout.object):
                served[node] = session
