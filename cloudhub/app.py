"""cloudhub's composition: the one place its modules are created and wired together.

::

    store (SQLite store.db | Kubernetes) ──list+watch──> edgecontroller ──bus──> cloudhub (hub)
                                          <──status────                <──bus── │ wss :10000
    httpserver (HTTPS :10002): join (/ca.crt, /edge.crt) and the admin API used by edgectl
    certcontroller: renews node certificates over the link, revokes deleted nodes' certificates
    auth ledger (auth.db): token use counts, issued and revoked certificates

Modules never import each other; they share only the bus. The HTTPS server reads presence
from the hub through the small ``Presence`` protocol; the hub and the join/admin endpoints
share the :class:`~cloudhub.auth.revocation.Revocations` set, so a revocation made through the
admin API closes the node's live link and refuses its next handshake.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web

from cloudhub import routes
from cloudhub.auth.issuer import CertIssuer
from cloudhub.auth.ledger import SqliteLedger
from cloudhub.auth.revocation import Revocations
from cloudhub.certcontroller.controller import CertController
from cloudhub.config import CloudSettings
from cloudhub.devicecontroller.controller import DeviceController
from cloudhub.edgecontroller.controller import EdgeController
from cloudhub.httpserver.app import bound_port, make_app, serve_https
from cloudhub.hub.module import HubModule
from cloudhub.pki import Authority
from cloudhub.store.base import ObjectStore
from cloudhub.store.embedded import EmbeddedStore
from hive.bus import Bus
from hive.module import Runner
from wire.errors import BridgeError, ConfigError

log = logging.getLogger(__name__)


@dataclass
class CloudApp:
    """A running cloudhub."""

    settings: CloudSettings
    authority: Authority
    store: ObjectStore
    bus: Bus
    hub: HubModule
    controller: EdgeController
    runner: Runner
    https: web.AppRunner
    issuer: CertIssuer

    @property
    def ws_port(self) -> int:
        return self.hub.port

    @property
    def https_port(self) -> int:
        return bound_port(self.https)

    async def stop(self) -> None:
        await self.runner.stop()
        await self.https.cleanup()
        await self.store.close()
        await self.issuer.ledger.close()


def open_store(settings: CloudSettings) -> ObjectStore:
    """The embedded store unless a Kubernetes config was given."""
    if settings.kubeconfig is not None:
        raise ConfigError("the Kubernetes backend is not available in this build")
    return EmbeddedStore(settings.store_path)


async def start(settings: CloudSettings) -> CloudApp:
    """Create or load the CA, open the store, bind both ports, start the modules.

    Raises:
        ConfigError: unreadable data dir, port in use, bad store.
    """
    authority = Authority.load_or_create(settings.data_dir, advertise=settings.advertise)
    ledger = SqliteLedger(settings.auth_path)
    await ledger.start()
    revocations = Revocations(ledger)
    try:
        await revocations.load()
    except BridgeError:
        await ledger.close()
        raise
    issuer = CertIssuer(
        authority=authority,
        ledger=ledger,
        revocations=revocations,
        validity=settings.node_cert_validity,
    )
    store = open_store(settings)
    try:
        await store.start()
    except BaseException:
        await ledger.close()
        raise
    bus = Bus()
    bus.register(routes.HUB, "hub")
    bus.register(routes.EDGECONTROLLER, "resource")
    bus.register(routes.DEVICECONTROLLER, "device")
    bus.register(routes.CERTCONTROLLER, "certificate")
    hub = HubModule(
        bus=bus,
        settings=settings.hub,
        ssl_context=authority.mtls_ssl_context(),
        revocations=revocations,
    )
    controller = EdgeController(bus=bus, store=store)
    try:
        await hub.listen()
    except OSError as exc:
        await store.close()
        await ledger.close()
        raise ConfigError(
            f"cannot listen on {settings.hub.bind}:{settings.hub.ws_port} (wss): {exc.strerror}"
        ) from exc
    try:
        https = await serve_https(
            make_app(authority=authority, store=store, presence=hub, issuer=issuer),
            host=settings.hub.bind,
            port=settings.https_port,
            ssl_context=authority.https_ssl_context(),
            handshake_timeout=settings.hub.handshake_timeout,
        )
    except ConfigError:
        await store.close()
        await ledger.close()
        raise
    runner = Runner()
    runner.start_module(controller)
    runner.start_module(DeviceController(bus=bus, store=store))
    runner.start_module(
        CertController(
            bus=bus, store=store, issuer=issuer, refresh_interval=settings.auth_refresh_interval
        )
    )
    runner.start_module(hub)
    log.info(
        "cloudhub ready: CA sha256 %s, data in %s, node certificates valid %s",
        authority.ca_hash,
        settings.data_dir,
        settings.node_cert_validity,
    )
    return CloudApp(settings, authority, store, bus, hub, controller, runner, https, issuer)
