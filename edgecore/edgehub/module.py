"""The ``edgehub`` module: one websocket to cloudhub, reconnected forever.

Each connection begins with the edge's *inventory* (key -> resourceVersion of everything in
the SQLite cache) so the cloud sends only the difference; see :mod:`wire.delivery`. Then three
tasks share the link: the reader routes cloud messages to metamanager, the writer sends what
other modules put in edgehub's inbox (ACKs, later status), and the keepalive task sends a
``keepalive`` every heartbeat and drops the link when nothing was heard for two heartbeats
(KubeEdge's edge has no read deadline and sits on half-open links for minutes).

Reconnects use jittered exponential backoff starting under a second and capped, instead of
KubeEdge's fixed 30 s; a refused handshake (bad certificate, identity) is logged with the
server's reason and retried at the cap, since only an operator can fix it. A link that stayed
up for two heartbeats worked, so the backoff starts over when it ends: without that, an edge
that once waited out a long outage took up to the cap (30 s) to come back from every later
blip. A link the cloud drops sooner (a replica that refuses the node right after the
handshake) keeps the delays growing, so a fleet does not hammer it.

The TLS context is built from the files for every attempt, so a certificate renewed by
certmanager or replaced by ``edgecore join`` is used without a restart. When the certificate
has expired (or the cloud says it was revoked) the edge logs ONE line saying what is needed
("node certificate expired at ...: run 'edgecore join --token <new token>'"), keeps serving
from its cache, retries at the backoff cap, and tries at once when node.crt changes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from edgecore.certmanager import credentials
from edgecore.config import EdgeSettings
from edgecore.modules import EDGEHUB, EDGESTREAM, METAMANAGER, NOTIFY_GROUPS
from hive.backoff import backoff
from hive.bus import Bus
from wire.codec import DEFAULT_MAX_SIZE, decode, encode
from wire.errors import WireError
from wire.liveness import Liveness
from wire.messages import Group, Message, Operation

log = logging.getLogger(__name__)

HEARTBEAT_HEADER = "edgebridge-heartbeat"
#: operations the cloud sends that metamanager stores
_META_OPS = frozenset({Operation.INSERT, Operation.UPDATE, Operation.PATCH, Operation.DELETE})
#: seconds between looks at node.crt while waiting for a re-join
_CERT_POLL = 0.25
CONNECTED = "connected"
DISCONNECTED = "disconnected"


def client_ssl_context(settings: EdgeSettings) -> ssl.SSLContext:
    """Trust only the pinned cloud CA; present the node certificate as it is on disk now."""
    return credentials.client_ssl_context(settings)


class EdgeHub:
    """Keeps the cloud link up and routes messages across it."""

    name = EDGEHUB
    group: str = Group.HUB
    enabled = True

    def __init__(
        self,
        *,
        bus: Bus,
        settings: EdgeSettings,
        inventory: Callable[[], Awaitable[dict[str, str]]],
        ssl_context: ssl.SSLContext | None = None,
        max_frame: int = DEFAULT_MAX_SIZE,
    ) -> None:
        self._bus = bus
        self._settings = settings
        self._inventory = inventory
        #: a fixed TLS context (tests); None = build one from the files for every attempt
        self._ssl = ssl_context
        self._max_frame = max_frame
        #: the credential problem last logged, so it is logged once, not at every retry
        self._reported = ""
        self.connected = asyncio.Event()
        self.connections = 0
        self.last_error = ""
        #: upstream message id -> module that sent it, to route the cloud's answer back
        self._upstream: dict[str, str] = {}
        #: the live link, or ``None`` while offline
        self._ws: ClientConnection | None = None
        #: monotonic time the live link was established (inventory stated)
        self._up_since = 0.0

    @property
    def url(self) -> str:
        h = self._settings.hub
        return f"wss://{h.cloud_host}:{h.ws_port}/{h.project_id}/{self._settings.node_name}/events"

    async def run(self) -> None:
        h = self._settings.hub
        delays = backoff(initial=h.reconnect_initial, cap=h.reconnect_cap)
        pump = asyncio.create_task(self._pump(), name="edgehub:pump")
        try:
            await self._connect_forever(delays)
        finally:
            pump.cancel()

    async def _pump(self) -> None:
        """The only reader of edgehub's inbox: send to the cloud, or drop while offline.

        Dropping is safe: ACKs are worthless on a new link (the inventory diff replaces them)
        and upstream updates sit in their module's durable outbox until the next ``connected``.
        Never blocking here means no module ever blocks on an absent cloud.
        """
        while True:
            msg = await self._bus.receive(self.name)
            ws = self._ws
            if ws is None:
                log.debug("offline: not sending %s %s", msg.operation, msg.resource)
                continue
            if (
                msg.operation not in (Operation.RESPONSE, Operation.ERROR)
                and msg.route.source
                and msg.route.group != Group.STREAM  # stream output expects no answer
            ):
                self._upstream[msg.id] = msg.route.source
            try:
                await ws.send(encode(msg))
            except (ConnectionClosed, OSError):
                log.debug("link closing: %s %s not sent", msg.operation, msg.resource)

    async def _connect_forever(self, delays: Iterator[float]) -> None:
        h = self._settings.hub
        while True:
            problem = ""
            linked = self.connections
            try:
                problem = await self._attempt()
            finally:
                self._ws = None
                if self.connected.is_set():
                    self.connected.clear()
                    self._upstream.clear()
                    if time.monotonic() - self._up_since >= 2 * h.heartbeat:
                        delays = backoff(initial=h.reconnect_initial, cap=h.reconnect_cap)
                    log.warning("disconnected from cloud; serving from the local cache")
                    await self._notify(DISCONNECTED)
            if problem:
                # Only an operator can fix this: say it once, retry slowly, and at once when
                # `edgecore join` writes a new certificate.
                self.last_error = problem
                if problem != self._reported:
                    self._reported = problem
                    log.error("%s", problem)
                await self._sleep_until_cert_changes(h.reconnect_cap)
                delays = backoff(initial=h.reconnect_initial, cap=h.reconnect_cap)
                continue
            delay = next(delays)
            if self.connections == linked and self.last_error:
                # Never got a link: say where we cannot get to and why, once per attempt,
                # at WARNING: a wrong address or port in edgecore.yaml looks just like this.
                log.warning(
                    "cannot reach the cloud at %s:%d (%s); retrying in %.2fs",
                    h.cloud_host,
                    h.ws_port,
                    self.last_error,
                    delay,
                )
            else:
                log.info("reconnecting in %.2fs", delay)
            await asyncio.sleep(delay)

    async def _attempt(self) -> str:
        """One connection, served until it ends; a credential problem to report, or ""."""
        h = self._settings.hub
        expired = self._expired()
        try:
            ssl_context = self._ssl or credentials.client_ssl_context(self._settings)
        except (OSError, ssl.SSLError, ValueError) as exc:
            return f"cannot load the node certificate: {exc}: {credentials.REJOIN_HINT}"
        try:
            async with connect(
                self.url,
                ssl=ssl_context,
                additional_headers={
                    "node_id": self._settings.node_name,
                    "project_id": h.project_id,
                    HEARTBEAT_HEADER: str(h.heartbeat),
                },
                compression=None,
                max_size=self._max_frame,
                ping_interval=None,
                open_timeout=max(5.0, 2 * h.heartbeat),
                close_timeout=1.0,
            ) as ws:
                self._reported = ""
                await self._serve(ws)
        except InvalidStatus as exc:
            body = exc.response.body.decode(errors="replace").strip()
            status = exc.response.status_code
            self.last_error = f"cloud refused the link ({status}): {body}"
            if status in (401, 403):
                return expired or self.last_error
        except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError, ssl.SSLError) as exc:
            if isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError) and exc.errno:
                self.last_error = os.strerror(exc.errno).lower()
            else:
                self.last_error = f"{type(exc).__name__}: {exc}"
            if expired:
                return expired
            log.debug("cloud link down: %s", self.last_error)
        return ""

    def _expired(self) -> str:
        """The one-line remedy if the node certificate on disk has expired, else ""."""
        try:
            info = credentials.read_cert(self._settings)
        except (OSError, ValueError):
            return ""
        return credentials.expired_message(info) if info.expired(time.time()) else ""

    async def _sleep_until_cert_changes(self, timeout: float) -> None:
        before = credentials.fingerprint(self._settings)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            await asyncio.sleep(min(_CERT_POLL, max(0.0, deadline - loop.time())))
            if credentials.fingerprint(self._settings) != before:
                log.info("node certificate changed; reconnecting now")
                return

    async def _serve(self, ws: ClientConnection) -> None:
        inventory = await self._inventory()
        await ws.send(
            encode(
                Message.new(
                    source=EDGEHUB,
                    group=Group.RESOURCE,
                    operation=Operation.INVENTORY,
                    resource=f"null/node/{self._settings.node_name}",
                    content=inventory,
                    timestamp_ms=int(time.time() * 1000),
                )
            )
        )
        self.connections += 1
        self._ws = ws
        self._up_since = time.monotonic()
        self.connected.set()
        log.info("connected to %s; stated inventory of %d objects", self.url, len(inventory))
        await self._notify(CONNECTED)
        loop = asyncio.get_running_loop()
        live = Liveness(interval=self._settings.hub.heartbeat, now=loop.time())
        tasks = [
            asyncio.create_task(self._read(ws, live), name="edgehub:read"),
            asyncio.create_task(self._keepalive(ws, live), name="edgehub:keepalive"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            ws.transport.abort()

    async def _read(self, ws: ClientConnection, live: Liveness) -> None:
        loop = asyncio.get_running_loop()
        async for frame in ws:
            live.received(loop.time())
            try:
                msg = decode(frame, max_size=self._max_frame)
            except WireError as exc:
                log.warning("cloud sent a bad frame: %s", exc)
                continue
            op = msg.operation
            if msg.route.group == Group.STREAM:
                await self._bus.send(EDGESTREAM, msg)
            elif op in _META_OPS or (op == Operation.QUERY and msg.route.group == Group.RESOURCE):
                await self._bus.send(METAMANAGER, msg)
            elif op in (Operation.RESPONSE, Operation.ERROR):
                origin = self._upstream.pop(msg.parent_id, None)
                if origin is not None:
                    await self._bus.send(origin, msg)
                elif not self._bus.respond(msg) and op == Operation.ERROR:
                    log.warning("cloud reported an error for %s: %s", msg.resource, msg.content)
            else:
                log.warning("cloud sent unknown operation %r for %s", op, msg.resource)
                await ws.send(encode(msg.error_reply(f"unknown operation {op!r}", source=EDGEHUB)))

    async def _notify(self, operation: str) -> None:
        for group in NOTIFY_GROUPS:
            for module in self._bus.modules(group):
                await self._bus.send(
                    module,
                    Message.new(
                        source=EDGEHUB, group=Group.HUB, operation=operation, resource="cloud"
                    ),
                )

    async def _keepalive(self, ws: ClientConnection, live: Liveness) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            if live.expired(now):
                log.warning(
                    "nothing heard from the cloud for %.1fs; dropping the link",
                    now - live.last_received,
                )
                return
            if live.keepalive_due(now):
                live.keepalive_sent(now)
                # Bounded: on a frozen link the write buffer fills and send() would wait forever.
                await asyncio.wait_for(
                    ws.send(
                        encode(
                            Message.new(
                                source=EDGEHUB,
                                group=Group.RESOURCE,
                                operation=Operation.KEEPALIVE,
                                resource="node",
                                content="ping",
                                timestamp_ms=int(time.time() * 1000),
                            )
                        )
                    ),
                    timeout=live.interval,
                )
            await asyncio.sleep(max(0.0, live.next_deadline(sending=True) - loop.time()))
