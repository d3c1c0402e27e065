"""Where a link enters: the wss listener, and who may open a link.

The listener binds the wss port and accepts edges in one of two ways:

- in this process: websockets terminates TLS and the upgrade, :meth:`HubServer._admit`
  identifies the peer during the upgrade (:func:`~cloudhub.hub.handshake.identify`), and the
  link is a :class:`~cloudhub.hub.links.WebsocketLink`;
- in link worker processes (``link_workers`` > 0, :mod:`cloudhub.linkworker`): they accept on
  the same socket, terminate TLS and relay frames; :meth:`HubServer._admit_relayed` makes the
  same checks on the upgrade a worker forwards, and the link is a
  :class:`~cloudhub.linkworker.pool.RelayedLink`.

Either way an admitted link is handed to ``serve`` (the hub's
:meth:`~cloudhub.hub.module.HubModule.serve_link`) with the
:class:`~cloudhub.hub.handshake.Peer` the certificate names.
Connections that have not authenticated yet are capped per address and in total at accept
(:class:`~cloudhub.limits.ConnectionGate`); TLS and the upgrade each get
``handshake_timeout``; a revoked certificate is refused at the upgrade.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from cloudhub.auth.revocation import RevocationCheck
from cloudhub.config import HubSettings
from cloudhub.hub.handshake import Peer, identify, identify_parts, refuse
from cloudhub.hub.links import HubConnection, Link, WebsocketLink
from cloudhub.limits import ConnectionGate
from cloudhub.linkworker.pool import Hello, LinkWorkers
from cloudhub.linkworker.worker import WorkerConfig
from hive import logs
from wire.errors import AuthError

log = logging.getLogger(__name__)

#: what the server does with an admitted link: serve it until it ends
ServeLink = Callable[[Link, Peer], Coroutine[Any, Any, None]]


@dataclass(frozen=True, slots=True)
class WorkerTls:
    """The files link workers build the wss TLS context from (server cert, key, CA)."""

    server_cert: Path
    server_key: Path
    ca_cert: Path


class HubServer:
    """The wss listener: binds, admits links and hands each to ``serve``."""

    def __init__(
        self,
        *,
        settings: HubSettings,
        ssl_context: ssl.SSLContext,
        serve: ServeLink,
        revocations: RevocationCheck | None = None,
        worker_tls: WorkerTls | None = None,
    ) -> None:
        self._settings = settings
        self._ssl = ssl_context
        self._serve = serve
        self._revocations = revocations
        #: what link workers build their TLS context from (``settings.link_workers`` > 0)
        self._worker_tls = worker_tls
        #: caps connections that have not shown a valid node certificate yet
        self.gate = ConnectionGate(
            name="wss",
            max_pending=settings.max_pending_handshakes,
            max_pending_per_ip=settings.max_pending_per_ip,
        )
        #: the link worker processes, when TLS is terminated outside this process
        self.workers: LinkWorkers | None = None
        self.port = 0
        self._server: Server | None = None
        #: the listening socket while link workers accept on it
        self._listener: socket.socket | None = None
        #: peers admitted at the upgrade, by connection, until their handler takes them
        self._peers: dict[int, Peer] = {}

    async def listen(self) -> None:
        """Bind the wss server.

        Raises:
            OSError: the address cannot be bound, or a link worker could not be started.
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
                process_request=self._admit,
                create_connection=HubConnection,
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
                send_timeout=s.send_timeout,
                max_pending_handshakes=s.max_pending_handshakes,
                max_pending_per_ip=s.max_pending_per_ip,
                verbose=log.isEnabledFor(logging.DEBUG),
                log_format=logs.current_format(),
            ),
            admit=self._admit_relayed,
            serve=self._serve,
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

    async def run_workers(self) -> None:
        """Supervise the link workers until cancelled (call only when :attr:`workers` is set:
        a listener of this process needs no task of its own, websockets runs it)."""
        assert self.workers is not None
        await self.workers.run()

    async def close(self) -> None:
        """Stop accepting (the links already open are the sessions' to close)."""
        if self._server is not None:
            self._server.close(close_connections=False)
        if self.workers is not None:
            await self.workers.stop()
        if self._listener is not None:
            self._listener.close()

    def _is_revoked(self, serial: int) -> bool:
        return self._revocations is not None and self._revocations.is_revoked(serial)

    def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        """websockets' upgrade hook: identify the peer, or refuse with 403 and the reason."""
        try:
            self._peers[id(connection)] = identify(connection, request, is_revoked=self._is_revoked)
        except AuthError as exc:
            return refuse(connection, exc)
        self.gate.authenticated(connection.transport.get_extra_info("socket"))
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        """websockets' handler for a link this process terminated."""
        await self._serve(WebsocketLink(ws), self._peers.pop(id(ws)))

    def _admit_relayed(self, hello: Hello) -> Peer:
        """A link worker's upgrade request: who the peer is (the checks :meth:`_admit` makes
        for a link of this process).

        Raises:
            AuthError: refused; the worker answers 403 with the reason.
        """
        return identify_parts(hello.der, hello.headers, hello.path, is_revoked=self._is_revoked)


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
