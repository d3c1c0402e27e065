"""The ``cloudhub`` module: the wss server edges connect to.

Where a message enters: :meth:`HubModule._serve_link` reads each frame of a node's link (a
websocket this process terminated, or one a link worker relays: :mod:`cloudhub.hub.links`),
decodes it, and routes it by operation (ACKs to the node's delivery state, keepalives answered,
inventory starts delivery, queries go to edgecontroller). Where it leaves: each
:class:`~cloudhub.hub.session.NodeSession` writes what its delivery state says is due, from
the task that made it due when that cannot wait (the inbox routing a change for a few nodes,
the reader that took an ACK), else from its writer.

Inbox (from other modules, in order): fan-out of object changes, the answer to a node's
``desired`` query (which starts its delivery), answers to a node's own queries.

Most frames an edge sends are ACKs and keepalives: :mod:`cloudhub.hub.reader` recognises
them without a full decode and applies ACKs without a task switch.

Guards (see :mod:`cloudhub.hub.limits` and :mod:`cloudhub.hub.handshake`): connections that
have not authenticated are capped per address and in total at accept; TLS and the upgrade
each get ``handshake_timeout``; a node's frames are read at most at its rate budget (paced,
not dropped); a revoked certificate is refused at the upgrade, and a live link using one is
closed as soon as the revocation is made.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import socket
import ssl
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from cloudhub import routes
from cloudhub.auth.revocation import RevocationCheck
from cloudhub.config import HubSettings
from cloudhub.httpserver.app import NodePresence
from cloudhub.hub import stock
from cloudhub.hub.acked import AckedLog, AckedStore
from cloudhub.hub.handshake import Peer, identify, identify_parts, refuse
from cloudhub.hub.limits import ConnectionGate
from cloudhub.hub.links import Link, WebsocketLink
from cloudhub.hub.reader import CHEAP_FRAME_COST, FrameReader
from cloudhub.hub.session import NodeSession, Traffic, json_string, response_frame
from cloudhub.linkworker.pool import Hello, LinkWorkers, RelayedLink
from cloudhub.linkworker.worker import WorkerConfig
from hive import logs
from hive.bus import Bus, UnknownModule
from hive.local_messages import MessageIds
from wire.codec import ContentCache, decode, encode, encode_content
from wire.errors import AuthError, WireError
from wire.messages import Group, Header, Message, Operation, Route
from wire.resources import split_node_prefix

log = logging.getLogger(__name__)

#: edge -> cloud writes, handed to the controller that owns the resource
_UPSTREAM_OPS = frozenset(
    {Operation.INSERT, Operation.UPDATE, Operation.PATCH, Operation.DELETE, Operation.UPLOAD}
)
_PONG = json_string("pong")
#: fan-outs to at most this many nodes are written by the hub's routing task itself
_DIRECT_FANOUT = 8


@dataclass(frozen=True, slots=True)
class Replies:
    """Inbox content: answer many forwarded requests at once.

    Each ``parent_ids`` entry is the id of a request the hub forwarded; the edge that sent it
    gets a ``response`` carrying ``content``. One bus message per batch instead of one per
    request (the devicecontroller ACKs whole batches of twin reports).
    """

    parent_ids: tuple[str, ...]
    content: Any = "OK"


class NodeOwners(Protocol):
    """Who may serve a node when several cloudhub replicas share one cluster."""

    async def claim(self, node: str) -> bool: ...

    async def release(self, node: str) -> None: ...


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
        self._bus = bus
        #: what each stock edge holds: its inventory on reconnect (a module of its own, the
        #: app runs it: :mod:`cloudhub.hub.acked`)
        self.acked = AckedLog(acked) if acked is not None else None
        #: what link workers build their TLS context from (``settings.link_workers`` > 0)
        self._worker_tls = worker_tls
        #: the link worker processes, when TLS is terminated outside this process
        self.workers: LinkWorkers | None = None
        self._owners = owners
        #: every object version encoded once for all nodes that receive it
        self._encoded = ContentCache()
        #: links accepted since start (GC tuning in :mod:`cloudhub.tuning`, metrics)
        self.connections_total = 0
        #: links ended since start, by why (:func:`close_kind`; metrics)
        self.closed_by_reason: Counter[str] = Counter()
        #: frames, bytes and ACK round trips of every link (metrics)
        self.traffic = Traffic()
        #: deliveries started with the edge's inventory ("diff") or without one ("full")
        self.resyncs: Counter[str] = Counter()
        #: object messages sent and retried by links that have ended (live ones: their
        #: sessions' delivery state), so the totals only grow
        self.sent_ended = 0
        self.retries_ended = 0
        self._settings = settings
        self._ssl = ssl_context
        self._revocations = revocations
        if revocations is not None:
            revocations.subscribe(self._on_revoked)
        #: caps connections that have not shown a valid node certificate yet
        self.gate = ConnectionGate(
            name="wss",
            max_pending=settings.max_pending_handshakes,
            max_pending_per_ip=settings.max_pending_per_ip,
        )
        #: node -> serial of the certificate its live link authenticated with
        self._serials: dict[str, int] = {}
        self.sessions: dict[str, NodeSession] = {}
        self._last_seen: dict[str, float] = {}
        self._peers: dict[int, Peer] = {}
        #: desired-query id -> (session, inventory) waiting for edgecontroller's answer
        self._starting: dict[str, tuple[NodeSession, dict[str, str] | None]] = {}
        #: forwarded request id -> (node, the edge's message)
        self._forwarded: dict[str, tuple[str, Message]] = {}
        self.port = 0
        self._server: Server | None = None
        #: the listening socket while link workers accept on it
        self._listener: socket.socket | None = None
        self._ids = MessageIds()

    # -- lifecycle -----------------------------------------------------------------------------

    async def listen(self) -> None:
        """Bind the wss server. Separate from :meth:`run` so a port in use fails start-up.

        Raises:
            OSError: the address cannot be bound.
        """
        s = self._settings
        sock = await _bind(self.gate, s.bind, s.ws_port)
        if s.link_workers > 0:
            await self._start_workers(sock)
            return
        try:
            self._server = await serve(
                self._handle,
                sock=sock,
                ssl=self._ssl,
                ssl_handshake_timeout=s.handshake_timeout,
                process_request=self._process_request,
                compression=None,  # 3x less memory per link; k8s JSON is small
                max_size=s.max_frame,
                ping_interval=None,  # our keepalive protocol covers liveness both ways
                max_queue=64,
                open_timeout=s.handshake_timeout,
            )
        except BaseException:
            sock.close()
            raise
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        log.info("listening for edges on wss://%s:%d", s.bind, self.port)

    async def _start_workers(self, sock: socket.socket) -> None:
        """Hand the listening socket to link worker processes (see :mod:`cloudhub.linkworker`).

        Raises:
            OSError: a worker could not be started.
        """
        s = self._settings
        if self._worker_tls is None:
            sock.close()
            raise ValueError("link workers need the TLS files (worker_tls)")
        tls = self._worker_tls
        self.workers = LinkWorkers(
            count=s.link_workers,
            sock=sock,
            config=WorkerConfig(
                index=0,
                listen_fd=-1,
                channel_fd=-1,
                server_cert=tls.server_cert,
                server_key=tls.server_key,
                ca_cert=tls.ca_cert,
                max_frame=s.max_frame,
                handshake_timeout=s.handshake_timeout,
                max_pending_handshakes=s.max_pending_handshakes,
                max_pending_per_ip=s.max_pending_per_ip,
                verbose=log.isEnabledFor(logging.DEBUG),
                log_format=logs.current_format(),
            ),
            admit=self._admit_relayed,
            serve=self._serve_link,
        )
        self._listener = sock
        try:
            await self.workers.start()
        except BaseException:
            await self.workers.stop()
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        log.info(
            "listening for edges on wss://%s:%d (%d link worker processes)",
            s.bind,
            self.port,
            s.link_workers,
        )

    async def run(self) -> None:
        """Route the inbox until cancelled; then close every link and the server."""
        try:
            if self.workers is None:
                await self._route_inbox()
            else:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._route_inbox(), name="hub:inbox")
                    tg.create_task(self.workers.run(), name="hub:link-workers")
        finally:
            for session in list(self.sessions.values()):
                await session.close("cloudhub stopping")
            if self._server is not None:
                self._server.close(close_connections=False)
            if self.workers is not None:
                await self.workers.stop()
            if self._listener is not None:
                self._listener.close()

    @property
    def closed_total(self) -> int:
        return sum(self.closed_by_reason.values())

    def online_nodes(self) -> Collection[str]:
        """Nodes connected now (a live view)."""
        return self.sessions.keys()

    def presence(self, node: str) -> NodePresence:
        """Whether ``node`` is connected now and when it was last heard from."""
        session = self.sessions.get(node)
        if session is not None:
            return NodePresence(
                online=True, last_seen=session.last_seen, connected_at=session.connected_at
            )
        return NodePresence(online=False, last_seen=self._last_seen.get(node))

    # -- handshake and reading -----------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        revocations = self._revocations
        try:
            self._peers[id(connection)] = identify(
                connection,
                request,
                is_revoked=revocations.is_revoked if revocations is not None else _never,
            )
        except AuthError as exc:
            return refuse(connection, exc)
        self.gate.authenticated(connection.transport.get_extra_info("socket"))
        return None

    def _on_revoked(self, node: str, serials: frozenset[int]) -> None:
        """Close the node's live link if it authenticated with a certificate just revoked."""
        session = self.sessions.get(node)
        if session is None or self._serials.get(node) not in serials:
            return
        log.warning("node %s: certificate revoked; closing its link", node)
        asyncio.get_running_loop().create_task(
            session.close("certificate revoked"), name=f"revoke:{node}"
        )

    async def _handle(self, ws: ServerConnection) -> None:
        """websockets' handler for a link this process terminated."""
        await self._serve_link(WebsocketLink(ws), self._peers.pop(id(ws)))

    def _admit_relayed(self, hello: Hello) -> Peer:
        """A link worker's upgrade request: who the peer is (the checks :meth:`_process_request`
        makes for a link of this process).

        Raises:
            AuthError: refused; the worker answers 403 with the reason.
        """
        revocations = self._revocations
        return identify_parts(
            hello.der,
            hello.headers,
            hello.path,
            is_revoked=revocations.is_revoked if revocations is not None else _never,
        )

    async def _serve_link(self, link: Link, peer: Peer) -> None:
        """One node's link from the upgrade to its end: the session, then every frame read."""
        session = NodeSession(
            node=peer.node,
            link=link,
            heartbeat=peer.heartbeat or self._settings.default_heartbeat,
            ack_timeout=self._settings.ack_timeout,
            window=min(self._settings.window, stock.WINDOW)
            if peer.stock
            else self._settings.window,
            min_interval=self._settings.coalesce,
            encoded=self._encoded,
            ids=self._ids,
            traffic=self.traffic,
            stock=peer.stock,
        )
        if self._owners is not None and not await self._owners.claim(peer.node):
            # Another replica serves this node; the edge's backoff brings it back, here or
            # there, once that replica lets go or its lease expires.
            log.info("node %s is served by another replica; refusing this link", peer.node)
            await link.close(1013, "node is served by another cloudhub replica; retry later")
            return
        self.connections_total += 1
        old = self.sessions.get(peer.node)
        if old is not None:
            log.info("node %s reconnected; closing its previous link", peer.node)
            await old.close("replaced by a new connection")
        self.sessions[peer.node] = session
        self._serials[peer.node] = peer.serial
        log.info("node %s connected from %s", peer.node, link.remote_address)
        await self._report(peer.node, online=True)
        session.run_writer()
        # A stock edge sends no inventory: what it last ACKed stands in for one, and its
        # delivery starts at once.
        known = await self.acked.begin(peer, session.downstream) if self.acked else None
        fallback = asyncio.get_running_loop().call_later(
            0 if peer.stock else self._settings.inventory_timeout,
            self._request_start,
            session,
            known,
        )
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
                elif cheap["op"] == Operation.RESPONSE:
                    if session.ack(cheap["parent"]):  # an ACK the fast path did not take
                        session.deliver()
                    cost = CHEAP_FRAME_COST
                else:
                    if not session.stock:  # a stock edge expects no answer (it logs one)
                        await session.send_text(self._pong(cheap))
                    cost = CHEAP_FRAME_COST
                reader.pace(cost, len(frame), loop.time())
        except ConnectionClosed:
            pass
        finally:
            fallback.cancel()
            if self.acked is not None:
                self.acked.end(peer.node, session.downstream)
            try:
                await session.close(session.close_reason or "connection closed")
                self.sent_ended += session.downstream.sent
                self.retries_ended += session.downstream.retries
                if self.sessions.get(peer.node) is session:
                    del self.sessions[peer.node]
                    self._serials.pop(peer.node, None)
                    self._last_seen[peer.node] = session.last_seen
                    log.info("node %s disconnected: %s", peer.node, session.close_reason)
                    await self._report(peer.node, online=False)
                    if self._owners is not None:
                        await self._owners.release(peer.node)
            finally:
                # Last, with nothing awaited after it: a link counted as closed is one whose
                # handling is over (its session no longer held here, collectable).
                self.closed_by_reason[close_kind(session.close_reason)] += 1

    async def _read_frame(self, session: NodeSession, frame: str | bytes) -> float:
        """Decode and route one frame; what it costs in the node's rate budget."""
        try:
            msg = decode(frame, max_size=self._settings.max_frame)
        except WireError as exc:
            log.warning("node %s sent a bad frame: %s", session.node, exc)
            await session.send(_error(f"bad frame: {exc}"))
            return 1.0
        await self._upstream(session, msg)
        return CHEAP_FRAME_COST if msg.operation in _CHEAP_OPS else 1.0

    def _pong(self, keepalive: re.Match[str]) -> str:
        """The answer to a keepalive the fast path matched, as ``msg.reply("pong")`` writes it."""
        return response_frame(
            msg_id=self._ids(),
            parent_id=keepalive["id"],
            source=routes.HUB,
            group=keepalive["group"],
            resource=keepalive["resource"],
            content_json=_PONG,
        )

    async def _upstream(self, session: NodeSession, msg: Message) -> None:
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
        elif op == stock.GET and msg.resource == stock.MEMBERSHIP_DETAIL:
            await self._forward(session, msg, routes.DEVICECONTROLLER)
        elif op == Operation.INVENTORY:
            inventory = msg.content
            if not isinstance(inventory, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in inventory.items()
            ):
                await session.send(msg.error_reply("inventory must map keys to versions"))
                inventory = None
            self._request_start(session, inventory)
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
            self._forwarded[forward.id] = (session.node, msg)
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

    def _stream_to_edge(self, msg: Message) -> None:
        """Write cloudstream's message on its node's link (dropped when the node is gone:
        cloudstream ends the node's streams on the disconnect report)."""
        node, rest = split_node_prefix(msg.resource)
        session = self.sessions.get(node)
        if session is not None:
            msg.route.resource = rest
            session.send_soon(encode(msg))

    def _request_start(self, session: NodeSession, inventory: dict[str, str] | None) -> None:
        """Ask edgecontroller what is bound to the node; delivery starts with its answer."""
        if session.started or any(s is session for s, _ in self._starting.values()):
            return
        query = Message.new(
            source=routes.HUB,
            group=Group.RESOURCE,
            operation=Operation.QUERY,
            resource=routes.desired_resource(session.node),
        )
        self._starting[query.id] = (session, inventory)
        if not self._bus.send_nowait(routes.EDGECONTROLLER, query):
            asyncio.get_running_loop().create_task(
                self._bus.send(routes.EDGECONTROLLER, query), name=f"start:{session.node}"
            )

    def drop(self, node: str, reason: str) -> None:
        """Close ``node``'s link (e.g. this replica lost its ownership)."""
        session = self.sessions.get(node)
        if session is not None:
            log.warning("closing node %s: %s", node, reason)
            asyncio.get_running_loop().create_task(session.close(reason), name=f"drop:{node}")

    async def _report(self, node: str, *, online: bool) -> None:
        report = routes.NodeStatusReport(online=online, at=time.time())
        for dest in (routes.EDGECONTROLLER, *self._bus.modules(routes.LIFECYCLE_GROUP)):
            await self._bus.send(
                dest,
                Message.new(
                    source=routes.HUB,
                    group=Group.RESOURCE,
                    operation=Operation.UPDATE,
                    resource=routes.nodestatus_resource(node),
                    content=report,
                ),
            )

    # -- inbox ---------------------------------------------------------------------------------

    async def _route_inbox(self) -> None:
        while True:
            msg = await self._bus.receive(self.name)
            try:
                if isinstance(msg.content, routes.Fanouts):
                    self._fan_out_all(msg.content.changes)
                else:
                    self._route(msg)
            except Exception:
                log.exception("failed to route %s %s", msg.operation, msg.resource)

    def _fan_out_all(self, changes: tuple[routes.Fanout, ...]) -> None:
        for fanout in changes:
            try:
                self._fan_out(fanout)
            except Exception:
                log.exception("failed to route the change of %s", fanout.key)

    def _route(self, msg: Message) -> None:
        if msg.route.group == Group.STREAM:
            self._stream_to_edge(msg)
            return
        if isinstance(msg.content, Replies):
            self._reply_all(msg.content)
            return
        started = self._starting.pop(msg.parent_id, None)
        if started is not None:
            session, inventory = started
            if self.sessions.get(session.node) is session and msg.operation == Operation.RESPONSE:
                desired = msg.content
                if session.stock:
                    desired = {
                        k: v
                        for k, v in desired.items()
                        if not stock.is_node_object(k, session.node)
                    }
                session.start(inventory, desired)
                self.resyncs["full" if inventory is None else "diff"] += 1
            return
        forwarded = self._forwarded.pop(msg.parent_id, None)
        if forwarded is not None:
            node, original = forwarded
            target = self.sessions.get(node)
            if target is None:
                return
            if isinstance(msg.content, routes.MembershipDevices):
                now_ms = int(time.time() * 1000)
                target.send_soon(
                    stock.membership_detail_frame(
                        msg_id=self._ids(),
                        event_id=self._ids(),
                        timestamp_ms=now_ms,
                        devices=msg.content.devices,
                    )
                )
                return
            if msg.operation == Operation.RESPONSE:
                reply = original.reply(msg.content, source=routes.HUB)
            else:
                reply = original.error_reply(str(msg.content), source=routes.HUB)
            target.send_soon(encode(reply))
            return
        log.debug("hub dropped unexpected %s %s", msg.operation, msg.resource)

    def _reply_all(self, replies: Replies) -> None:
        """Answer each forwarded request named in ``replies`` on its node's link."""
        content_json = encode_content(replies.content)
        for parent_id in replies.parent_ids:
            forwarded = self._forwarded.pop(parent_id, None)
            if forwarded is None:
                continue
            node, original = forwarded
            target = self.sessions.get(node)
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

    def _fan_out(self, fanout: routes.Fanout) -> None:
        key = fanout.key
        rv = fanout.resource_version
        if fanout.body is not None and rv is not None:
            # The store's own text of this version: every session sends it as it is.
            self._encoded.put((key, rv), fanout.body)
        # A change for a few nodes is written from here; one for many is left to their
        # writers, so that routing it does not hold the loop for the whole fan-out.
        direct = len(fanout.nodes) <= _DIRECT_FANOUT
        for node in fanout.nodes:
            session = self.sessions.get(node)
            if session is None or not session.started:
                continue  # it gets the current state from its inventory diff
            if session.stock and stock.is_node_object(key, node):
                continue  # a stock edge never receives its Node
            if rv is None:
                session.downstream.remove(key, fanout.object)
            else:
                session.downstream.update(key, rv, fanout.object)
            # Only a session with something to send now is served: while the key's previous
            # version awaits its ACK (a burst of edits), that ACK does it. Waking every
            # session of a widely used object on every edit was most of a burst's cost.
            if not session.downstream.ready:
                continue
            if direct:
                session.deliver()
            else:
                session.wake()


_CHEAP_OPS = frozenset({Operation.RESPONSE, Operation.KEEPALIVE})

#: close reasons as metric labels: a bounded set (free text would be unbounded)
_CLOSE_KINDS = (
    ("keepalive", "keepalive_timeout"),
    ("replaced", "replaced"),
    ("revoked", "revoked"),
    ("write failed", "write_failed"),
    ("stopping", "shutdown"),
    ("ownership", "ownership_moved"),
    ("connection closed", "peer_closed"),
)


def close_kind(reason: str) -> str:
    """The metric label for a link's close reason."""
    return next((kind for text, kind in _CLOSE_KINDS if text in reason), "other")


def _never(serial: int) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class WorkerTls:
    """The files link workers build the wss TLS context from (server cert, key, CA)."""

    server_cert: Path
    server_key: Path
    ca_cert: Path


#: seconds to keep trying a port still held by a previous cloudhub's exiting link workers
_BIND_PATIENCE = 3.0


async def _bind(gate: ConnectionGate, host: str, port: int) -> socket.socket:
    """The listening socket; a port in use is tried again for a moment when it is fixed
    (link workers of a cloudhub killed just before exit a few milliseconds after it).

    Raises:
        OSError: the address cannot be bound.
    """
    deadline = time.monotonic() + _BIND_PATIENCE
    while True:
        try:
            return gate.listen(host, port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or port == 0 or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)


def _error(reason: str) -> Message:
    return Message.new(
        source=routes.HUB,
        group=Group.RESOURCE,
        operation=Operation.ERROR,
        resource="",
        content=reason,
    )


__all__ = ["HubModule", "Replies", "WorkerTls"]
