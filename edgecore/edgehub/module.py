"""The ``edgehub`` module: one websocket to cloudhub, reconnected forever: a pump.

Every decision about the link (routing by operation, the inventory handshake, keepalives and
half-open detection, the reconnect backoff and when it starts over, what a credential problem
means) is made by the pure :class:`wire.session.EdgeSession`; see its module docstring for the
why of each. This module does the I/O it asks for: open the websocket (mutual TLS), read the
inventory from the store, write frames, put messages in bus inboxes, sleep.

Three tasks share a live link: the reader feeds every frame to the session and delivers what it
routes, the ticker writes the keepalives the session asks for and drops the link when it says
so, and the inbox pump (for the module's whole life) writes what other modules put in
edgehub's inbox (ACKs, status) through :meth:`EdgeSession.send`.

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
from collections.abc import Awaitable, Callable

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from edgecore import credentials
from edgecore.config import EdgeSettings
from edgecore.modules import EDGEHUB, EDGESTREAM, METAMANAGER, NOTIFY_GROUPS
from hive.backoff import backoff
from hive.bus import Bus
from wire.codec import DEFAULT_MAX_SIZE
from wire.messages import Group, Message
from wire.session import CONNECTED, DISCONNECTED, Actions, EdgeSession, Retry

log = logging.getLogger(__name__)

HEARTBEAT_HEADER = "edgebridge-heartbeat"
#: seconds between looks at node.crt while waiting for a re-join
_CERT_POLL = 0.25

__all__ = [
    "CONNECTED",
    "DISCONNECTED",
    "EDGEHUB",
    "EDGESTREAM",
    "HEARTBEAT_HEADER",
    "METAMANAGER",
    "NOTIFY_GROUPS",
    "EdgeHub",
    "client_ssl_context",
]


def client_ssl_context(settings: EdgeSettings) -> ssl.SSLContext:
    """Trust only the pinned cloud CA; present the node certificate as it is on disk now."""
    return credentials.client_ssl_context(settings)


def _wall_ms() -> int:
    return int(time.time() * 1000)


class EdgeHub:
    """Keeps the cloud link up and routes messages across it (as its session decides)."""

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
        h = settings.hub
        self.session = EdgeSession(
            name=EDGEHUB,
            heartbeat=h.heartbeat,
            retry_cap=h.reconnect_cap,
            delays=lambda: backoff(initial=h.reconnect_initial, cap=h.reconnect_cap),
            store=METAMANAGER,
            stream=EDGESTREAM,
            notify_groups=NOTIFY_GROUPS,
            node=settings.node_name,
            peer=f"{h.cloud_host}:{h.ws_port}",
            max_frame=max_frame,
            logger=log,
        )
        self.connected = asyncio.Event()
        #: the live link, or ``None`` while offline
        self._ws: ClientConnection | None = None

    @property
    def connections(self) -> int:
        """Links opened so far."""
        return self.session.connections

    @property
    def last_error(self) -> str:
        """Why the last attempt or link failed."""
        return self.session.last_error

    @property
    def url(self) -> str:
        h = self._settings.hub
        return f"wss://{h.cloud_host}:{h.ws_port}/{h.project_id}/{self._settings.node_name}/events"

    async def run(self) -> None:
        pump = asyncio.create_task(self._pump(), name="edgehub:pump")
        try:
            while True:
                await self._wait(await self._attempt())
        finally:
            pump.cancel()

    async def _pump(self) -> None:
        """The only reader of edgehub's inbox: send to the cloud, or drop while offline."""
        while True:
            msg = await self._bus.receive(self.name)
            frame = self.session.send(msg)  # None while offline
            ws = self._ws  # set exactly while the session has a link (no await in between)
            if frame is None or ws is None:
                continue
            try:
                await ws.send(frame)
            except (ConnectionClosed, OSError):
                log.debug("link closing: %s %s not sent", msg.operation, msg.resource)

    async def _attempt(self) -> Retry:
        """One connection, served until it ends; then the session's decision on the next."""
        session = self.session
        session.connecting()
        try:
            await self._connect()
        finally:
            self._ws = None
            self.connected.clear()
            await self._deliver(session.closed(asyncio.get_running_loop().time()))
        return session.next_retry()

    async def _connect(self) -> None:
        h = self._settings.hub
        session = self.session
        expired = self._expired()
        try:
            ssl_context = self._ssl or credentials.client_ssl_context(self._settings)
        except (OSError, ssl.SSLError, ValueError) as exc:
            session.unusable_credentials(
                f"cannot load the node certificate: {exc}: {credentials.REJOIN_HINT}"
            )
            return
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
                session.handshake_accepted()
                await self._serve(ws)
        except InvalidStatus as exc:
            body = exc.response.body.decode(errors="replace").strip()
            session.refused(exc.response.status_code, body, expired=expired)
        except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError, ssl.SSLError) as exc:
            if isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError) and exc.errno:
                reason = os.strerror(exc.errno).lower()
            else:
                reason = f"{type(exc).__name__}: {exc}"
            session.failed(reason, expired=expired)

    async def _wait(self, retry: Retry) -> None:
        if retry.on_new_credentials:
            await self._sleep_until_cert_changes(retry.delay)
        else:
            await asyncio.sleep(retry.delay)

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
        loop = asyncio.get_running_loop()
        # The inventory goes first; only then may the inbox pump write upstream messages.
        await ws.send(self.session.opened(inventory, wall_ms=_wall_ms()))
        up = self.session.stated(loop.time())
        self._ws = ws
        self.connected.set()
        log.info("connected to %s; stated inventory of %d objects", self.url, len(inventory))
        await self._deliver(up)
        tasks = [
            asyncio.create_task(self._read(ws), name="edgehub:read"),
            asyncio.create_task(self._tick(ws), name="edgehub:keepalive"),
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

    async def _read(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        async for frame in ws:
            actions = self.session.receive(frame, loop.time())
            for out in actions.frames:
                await ws.send(out)
            await self._deliver(actions)

    async def _tick(self, ws: ClientConnection) -> None:
        """Keepalives when the session asks for them; return when it gives the link up."""
        loop = asyncio.get_running_loop()
        session = self.session
        while True:
            frames = session.poll(loop.time(), wall_ms=_wall_ms())
            if session.close_reason:
                return
            for frame in frames:
                # Bounded: on a frozen link the write buffer fills and send() would wait forever.
                await asyncio.wait_for(ws.send(frame), timeout=session.heartbeat)
            deadline = session.next_deadline()
            if deadline is None:
                return
            await asyncio.sleep(max(0.0, deadline - loop.time()))

    async def _deliver(self, actions: Actions) -> None:
        """Put the session's routes in the bus inboxes they name."""
        for route in actions.routes:
            if route.module:
                await self._bus.send(route.module, route.message)
            elif route.group:
                for i, module in enumerate(self._bus.modules(route.group)):
                    # each module gets its own copy: a receiver may change what it holds
                    msg = route.message if i == 0 else _fresh(route.message)
                    await self._bus.send(module, msg)
            elif not self._bus.respond(route.message) and route.warn_unclaimed:
                msg = route.message
                log.warning("cloud reported an error for %s: %s", msg.resource, msg.content)


def _fresh(msg: Message) -> Message:
    """The same notice under a new message id."""
    r = msg.route
    return Message.new(source=r.source, group=r.group, operation=r.operation, resource=r.resource)
