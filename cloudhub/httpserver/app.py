"""Assembles the HTTPS application and starts it.

The join endpoints and the admin API share one aiohttp application (one port, one TLS
context). Its dependencies come in as arguments, not globals: the :class:`~cloudhub.pki.Authority`
for certificates and credentials, the :class:`~cloudhub.store.base.ObjectStore` for objects, and
a :class:`~cloudhub.routes.Presence` that knows which nodes are connected right now (the
websocket hub implements it; the admin API only reads it to show node state).

Request bodies are capped at :data:`MAX_BODY_BYTES`: the largest thing anyone sends is a batch
of manifests, and an uncapped body is a free memory exhaustion for anyone who can reach the port.

The port is public (edges join through it), so connections are capped per source address and in
total at accept time (:class:`~cloudhub.limits.ConnectionGate`), and a TLS handshake gets
:data:`TLS_HANDSHAKE_TIMEOUT` seconds: a peer opening sockets by the thousand cannot use up the
process's file descriptors.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client.core import Metric

from cloudhub.auth.issuer import CertIssuer
from cloudhub.auth.ledger import MemoryLedger
from cloudhub.auth.revocation import Revocations
from cloudhub.cloudstream.relay import StreamOpener
from cloudhub.httpserver.admin import AdminApi, admin_middleware
from cloudhub.httpserver.join import JoinApi
from cloudhub.httpserver.metrics import metrics_handler
from cloudhub.httpserver.streams import StreamApi
from cloudhub.limits import ConnectionGate
from cloudhub.pki import Authority
from cloudhub.routes import Presence
from cloudhub.store.base import ObjectStore
from wire.errors import ConfigError

if TYPE_CHECKING:
    from cloudhub.fleet.module import FleetModule
    from cloudhub.ui.pages import FleetPages

logger = logging.getLogger(__name__)

#: Largest request body accepted, bytes (413 above it).
MAX_BODY_BYTES = 8 * 1024 * 1024
#: Seconds in-flight requests get to finish when the server stops.
SHUTDOWN_GRACE = 2.0
#: Seconds a client gets to complete the TLS handshake.
TLS_HANDSHAKE_TIMEOUT = 10.0
#: Open connections per source address (edgectl and joining edges need one or two each).
MAX_CONNECTIONS_PER_IP = 64
#: Open connections in total.
MAX_CONNECTIONS = 1024


def make_app(
    *,
    authority: Authority,
    store: ObjectStore,
    presence: Presence,
    issuer: CertIssuer | None = None,
    streams: StreamOpener | None = None,
    fleet: FleetModule | None = None,
    metrics: Callable[[], Iterable[Metric]] | None = None,
    pages: FleetPages | None = None,
) -> web.Application:
    """The HTTPS application: ``/ca.crt``, ``/edge.crt``, ``/healthz`` and ``/admin/v1/...``.

    The store must already be started; the application does not own it. Without an
    ``issuer``, certificates and token uses are recorded in memory only (tests). With
    ``streams``, pods' logs and exec are served too (:mod:`cloudhub.httpserver.streams`).
    """
    if issuer is None:
        ledger = MemoryLedger()
        issuer = CertIssuer(authority=authority, ledger=ledger, revocations=Revocations(ledger))
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[admin_middleware(authority)],
    )
    JoinApi(authority=authority, store=store, issuer=issuer).register(app.router)
    admin = AdminApi(
        authority=authority,
        store=store,
        presence=presence,
        revoker=issuer,
        events=fleet.events if fleet is not None else None,
    )
    admin.register(app.router)
    app.on_shutdown.append(lambda _app: _close_streams(admin))
    if streams is not None:
        StreamApi(
            store=store, opener=streams, authority=authority, revocations=issuer.revocations
        ).register(app.router)
    app.router.add_get("/healthz", _healthz)
    if metrics is not None:
        app.router.add_get("/metrics", metrics_handler(authority, metrics), allow_head=False)
    if pages is not None:
        app.add_subapp("/ui", pages.app())
        app.router.add_get("/ui", _to_fleet_page, allow_head=False)
    return app


async def _close_streams(admin: AdminApi) -> None:
    """Open watch streams end before the server waits for its requests to finish."""
    admin.streams.close()


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _to_fleet_page(request: web.Request) -> web.Response:
    raise web.HTTPMovedPermanently(
        "/ui/" + (f"?{request.query_string}" if request.query_string else "")
    )


async def serve_https(
    app: web.Application,
    *,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    handshake_timeout: float = TLS_HANDSHAKE_TIMEOUT,
) -> web.AppRunner:
    """Start ``app`` on ``host:port`` (``port`` 0 picks a free one) and return its runner.

    Stop it with ``await runner.cleanup()``; read the bound port with :func:`bound_port`.

    Raises:
        ConfigError: the address cannot be bound (port in use, bad address).
    """
    # A short shutdown grace: admin calls are quick, and a hung client must not hold up exit.
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE)
    await runner.setup()
    # Nothing marks an HTTPS connection authenticated: the caps count open connections.
    gate = ConnectionGate(
        name="https",
        max_pending=MAX_CONNECTIONS,
        max_pending_per_ip=MAX_CONNECTIONS_PER_IP,
        log_unfinished=False,
    )
    try:
        sock = gate.listen(host, port)
    except OSError as exc:
        await runner.cleanup()
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot listen on {host}:{port} (HTTPS): {reason}") from exc
    site = _GatedSite(runner, sock, ssl_context=ssl_context, handshake_timeout=handshake_timeout)
    try:
        await site.start()
    except OSError as exc:
        sock.close()
        await runner.cleanup()
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot listen on {host}:{port} (HTTPS): {reason}") from exc
    logger.info("HTTPS (join + admin API) listening on %s:%d", host, bound_port(runner))
    return runner


class _GatedSite(web.SockSite):
    """aiohttp's SockSite with a bounded TLS handshake (aiohttp leaves asyncio's 60 s)."""

    def __init__(
        self,
        runner: web.AppRunner,
        sock: socket.socket,
        *,
        ssl_context: ssl.SSLContext | None,
        handshake_timeout: float,
    ) -> None:
        super().__init__(runner, sock, ssl_context=ssl_context)
        self._listen_sock = sock
        self._handshake_timeout = handshake_timeout

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        if server is None:
            raise RuntimeError("runner is not set up")
        self._server = await asyncio.get_running_loop().create_server(
            server,
            sock=self._listen_sock,
            ssl=self._ssl_context,
            backlog=self._backlog,
            ssl_handshake_timeout=self._handshake_timeout if self._ssl_context else None,
        )


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port a started runner listens on (the first one, if several)."""
    addresses = runner.addresses
    if not addresses:
        raise RuntimeError("runner is not listening")
    port: int = addresses[0][1]
    return port
