"""Where an edge's frame enters the cloud: read from a node's link, decided on by its
:class:`~cloudhub.hub.linksession.LinkSession`, and the decision carried out.

:meth:`Upstream.read` reads every frame of one node's link. ACKs take the fast path of
:mod:`cloudhub.hub.reader` (applied without a task switch); every other frame goes to the
session state (:meth:`LinkSession.frame`: keepalives, decoding, routing by operation, bad
frames), and :meth:`Upstream.execute` does what it says: write replies, hand forwarded requests
to the modules over the bus, ask edgecontroller for the start, deliver what an ACK freed.

A forwarded request is remembered in :class:`Requests` so that the answer (routed by
:mod:`cloudhub.hub.inbox`) goes back to that node only. A node's frames are read at most at its
rate budget: paced, not dropped.
"""

from __future__ import annotations

import asyncio
import logging

from websockets.exceptions import ConnectionClosed

from cloudhub import routes
from cloudhub.config import HubSettings
from cloudhub.hub.links import Link
from cloudhub.hub.linksession import Actions
from cloudhub.hub.reader import FrameReader
from cloudhub.hub.session import NodeSession
from hive.bus import Bus, UnknownModule
from hive.local_messages import MessageIds
from wire.messages import Message

log = logging.getLogger(__name__)


class Requests:
    """The hub's requests still waiting for a module's answer (the answers arrive in
    :mod:`cloudhub.hub.inbox`)."""

    __slots__ = ("forwarded", "starting")

    def __init__(self) -> None:
        #: desired-query id -> the session waiting for edgecontroller's answer
        self.starting: dict[str, NodeSession] = {}
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
        state = session.state
        # ACKs arriving while this task waits are applied in the transport's (or the relay
        # channel's) callback, without waking it.
        link.take_frames(reader.ack_now)
        try:
            async for frame in link:
                # Pace, don't drop: while we sleep nothing is read and TCP slows the sender.
                wait = reader.pace_until - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if reader.ack_now(frame):
                    continue
                actions = state.frame(frame, loop.time())
                await self.execute(session, actions)
                reader.pace(actions.cost, len(frame), loop.time())
        except ConnectionClosed:
            pass
        finally:
            link.take_frames(None)

    async def route(self, session: NodeSession, msg: Message) -> None:
        """Route one decoded message from ``session``'s node (see the module notes)."""
        await self.execute(session, session.state.route(msg, asyncio.get_running_loop().time()))

    async def execute(self, session: NodeSession, actions: Actions) -> None:
        """Do what the session state decided, in order."""
        for frame in actions.frames:
            await session.send_text(frame)
        for forward in actions.forwards:
            if forward.original is not None:
                self._requests.forwarded[forward.message.id] = (session.node, forward.original)
            try:
                await self._bus.send(forward.dest, forward.message)
            except UnknownModule:
                self._requests.forwarded.pop(forward.message.id, None)
                reply = forward.unrouted_reply()
                if reply is None:
                    raise
                await session.send_text(reply)
        if actions.start is not None:
            self._ask_start(session, actions.start)
        if actions.deliver:
            session.deliver()

    def request_start(self, session: NodeSession, inventory: dict[str, str] | None) -> None:
        """Ask edgecontroller what is bound to the node (unless asked already); delivery
        starts with its answer."""
        query = session.state.start_query(inventory)
        if query is not None:
            self._ask_start(session, query)

    def _ask_start(self, session: NodeSession, query: Message) -> None:
        self._requests.starting[query.id] = session
        if not self._bus.send_nowait(routes.EDGECONTROLLER, query):
            asyncio.get_running_loop().create_task(
                self._bus.send(routes.EDGECONTROLLER, query), name=f"start:{session.node}"
            )
