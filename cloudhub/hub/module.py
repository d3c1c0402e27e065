"""The ``cloudhub`` module: the wss server edges connect to, assembled from its parts.

A frame's way through the hub, by file:

- a link enters at :mod:`cloudhub.hub.server` (the listener: TLS, upgrade, identity from the
  certificate, connection caps), which hands it to :meth:`HubModule.serve_link`;
- :mod:`cloudhub.hub.sessions` admits it as its node's live session (one per node, ownership
  among replicas, presence reports, revocation);
- every decision about a node's link is its :class:`~cloudhub.hub.linksession.LinkSession`'s
  (pure: routing by operation, the start handshake, stock-edge differences, bad frames, what
  is due to the edge and when); the I/O parts below are pumps that execute what it says;
- an edge's frames are read in :mod:`cloudhub.hub.upstream` (ACK fast path and pacing in
  :mod:`cloudhub.hub.reader`), which forwards what the session state routes to the module that
  owns it, over the bus;
- what the cloud sends arrives in the hub's bus inbox, routed by :mod:`cloudhub.hub.inbox` into
  the nodes' sessions (fan-out of object changes, delivery starts, answers, streams);
- a frame leaves from :class:`~cloudhub.hub.session.NodeSession`, which writes what its
  session state says is due on its link (:mod:`cloudhub.hub.links`), the frames due together
  as one write.

Guards (see :mod:`cloudhub.limits` and :mod:`cloudhub.hub.handshake`): connections that
have not authenticated are capped per address and in total at accept; TLS and the upgrade
each get ``handshake_timeout``; a node's frames are read at most at its rate budget (paced,
not dropped); a revoked certificate is refused at the upgrade, and a live link using one is
closed as soon as the revocation is made.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import Counter
from collections.abc import Collection

from cloudhub import routes
from cloudhub.auth.revocation import RevocationCheck
from cloudhub.config import HubSettings
from cloudhub.hub import stock
from cloudhub.hub.acked import AckedLog, AckedStore
from cloudhub.hub.handshake import Peer
from cloudhub.hub.inbox import Inbox
from cloudhub.hub.links import Link
from cloudhub.hub.server import HubServer, WorkerTls
from cloudhub.hub.session import NodeSession, Traffic
from cloudhub.hub.sessions import NodeOwners, Sessions
from cloudhub.hub.upstream import Requests, Upstream
from cloudhub.limits import ConnectionGate
from cloudhub.linkworker.pool import LinkWorkers
from hive.bus import Bus
from hive.local_messages import MessageIds
from wire.codec import ContentCache
from wire.messages import Group


class HubModule:
    """Holds every node's link; owns one writer task per connected node."""

    name = routes.HUB
    group: str = Group.HUB
    enabled = True

    def __init__(
        self,
        *,
        bus: Bus,
        settings: HubSettings,
        ssl_context: ssl.SSLContext,
        revocations: RevocationCheck | None = None,
        owners: NodeOwners | None = None,
        worker_tls: WorkerTls | None = None,
        acked: AckedStore | None = None,
    ) -> None:
        self._settings = settings
        ids = MessageIds()
        self._ids = ids
        #: what each stock edge holds: its inventory on reconnect (a module of its own, the
        #: app runs it: :mod:`cloudhub.hub.acked`)
        self.acked = AckedLog(acked) if acked is not None else None
        #: every object version encoded once for all nodes that receive it
        self._encoded = ContentCache()
        #: frames, bytes and ACK round trips of every link (metrics)
        self.traffic = Traffic()
        self._server = HubServer(
            settings=settings,
            ssl_context=ssl_context,
            serve=self.serve_link,
            revocations=revocations,
            worker_tls=worker_tls,
        )
        self._sessions = Sessions(bus=bus, owners=owners)
        #: node -> its live session (a live view)
        self.sessions: dict[str, NodeSession] = self._sessions.live
        if revocations is not None:
            revocations.subscribe(self._sessions.revoked)
        requests = Requests()
        self._upstream = Upstream(bus=bus, settings=settings, ids=ids, requests=requests)
        self._inbox = Inbox(
            bus=bus, sessions=self.sessions, requests=requests, ids=ids, encoded=self._encoded
        )

    # -- lifecycle -----------------------------------------------------------------------------

    async def listen(self) -> None:
        """Bind the wss server. Separate from :meth:`run` so a port in use fails start-up.

        Raises:
            OSError: the address cannot be bound.
        """
        await self._server.listen()

    async def run(self) -> None:
        """Route the inbox until cancelled; then close every link and the server."""
        try:
            if self._server.workers is None:
                await self._inbox.run()
            else:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._inbox.run(), name="hub:inbox")
                    tg.create_task(self._server.run_workers(), name="hub:link-workers")
        finally:
            await self._sessions.close_all("cloudhub stopping")
            await self._server.close()

    async def serve_link(self, link: Link, peer: Peer) -> None:
        """One node's link from the upgrade to its end: the session, then every frame read."""
        s = self._settings
        session = NodeSession(
            node=peer.node,
            link=link,
            heartbeat=peer.heartbeat or s.default_heartbeat,
            ack_timeout=s.ack_timeout,
            send_timeout=s.send_timeout,
            window=min(s.window, stock.WINDOW) if peer.stock else s.window,
            min_interval=s.coalesce,
            max_frame=s.max_frame,
            encoded=self._encoded,
            ids=self._ids,
            traffic=self.traffic,
            stock=peer.stock,
        )
        if not await self._sessions.open(session, serial=peer.serial, remote=link.remote_address):
            return
        session.run_writer()
        # A stock edge sends no inventory: what it last ACKed stands in for one.
        known = await self.acked.begin(peer, session.downstream) if self.acked else None
        fallback = asyncio.get_running_loop().call_later(
            session.state.inventory_wait(s.inventory_timeout),
            self._upstream.request_start,
            session,
            known,
        )
        try:
            await self._upstream.read(session, link)
        finally:
            fallback.cancel()
            if self.acked is not None:
                self.acked.end(peer.node, session.downstream)
            await self._sessions.close(session)

    # -- what others read: presence, metrics ---------------------------------------------------

    def online_nodes(self) -> Collection[str]:
        """Nodes connected now (a live view)."""
        return self._sessions.online_nodes()

    def presence(self, node: str) -> routes.NodePresence:
        """Whether ``node`` is connected now and when it was last heard from."""
        return self._sessions.presence(node)

    def drop(self, node: str, reason: str) -> None:
        """Close ``node``'s link (e.g. this replica lost its ownership)."""
        self._sessions.drop(node, reason)

    @property
    def port(self) -> int:
        """The wss port bound (0 before :meth:`listen`)."""
        return self._server.port

    @property
    def gate(self) -> ConnectionGate:
        """The cap on connections that have not authenticated yet."""
        return self._server.gate

    @property
    def workers(self) -> LinkWorkers | None:
        """The link worker processes, when TLS is terminated outside this process."""
        return self._server.workers

    @property
    def resyncs(self) -> Counter[str]:
        """Deliveries started with the edge's inventory ("diff") or without one ("full")."""
        return self._inbox.resyncs

    @property
    def connections_total(self) -> int:
        """Links accepted since start."""
        return self._sessions.connections_total

    @property
    def closed_by_reason(self) -> Counter[str]:
        """Links ended since start, by why."""
        return self._sessions.closed_by_reason

    @property
    def closed_total(self) -> int:
        return self._sessions.closed_total

    @property
    def sent_ended(self) -> int:
        """Object messages sent by links that have ended."""
        return self._sessions.sent_ended

    @property
    def retries_ended(self) -> int:
        """Object messages retried by links that have ended."""
        return self._sessions.retries_ended


__all__ = ["HubModule", "NodeOwners", "WorkerTls"]
