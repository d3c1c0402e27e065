"""cloudhub's composition: the one place its modules are created and wired together.

::

    store (SQLite store.db | Kubernetes) ──list+watch──> edgecontroller ──bus──> cloudhub (hub)
                                          <──status────                <──bus── │ wss :10000
    httpserver (HTTPS :10002): join (/ca.crt, /edge.crt), the admin API used by edgectl,
        /metrics (cloudhub.figures) and the fleet page /ui/ (cloudhub.ui)
    fleet: follows nodes, pods and devices for the page and the metrics; records Events
        (told of node links by the hub, of refused twin reports by devicecontroller)
    certcontroller: renews node certificates over the link, revokes deleted nodes' certificates
    cloudstream: pods' logs and exec (admin API, kubelet-shaped endpoints) relayed over links
    auth ledger (auth.db; the Secret edgebridge-auth in Kubernetes mode, shared by replicas):
        token use counts, issued and revoked certificates

Modules never import each other; they share only the bus. The HTTPS server reads presence
from the hub through the small ``Presence`` protocol; the hub and the join/admin endpoints
share the :class:`~cloudhub.auth.revocation.Revocations` set, so a revocation made through the
admin API closes the node's live link and refuses its next handshake.

Embedded or Kubernetes mode is decided once, by :func:`cloudhub.backends.backend_for`; the
backend opens the store, the ledger, the Event store and (on a cluster) node ownership and
heartbeats. Everything :func:`start` opens goes on one :class:`~contextlib.AsyncExitStack`, so
a start that fails part-way and :meth:`CloudApp.stop` close the same things in the same order.
"""

from __future__ import annotations

import logging
import ssl
from contextlib import AsyncExitStack
from dataclasses import dataclass

from aiohttp import web

from cloudhub import routes
from cloudhub.auth.issuer import CertIssuer
from cloudhub.auth.revocation import Revocations
from cloudhub.backends import Cluster, backend_for
from cloudhub.certcontroller.controller import CertController
from cloudhub.cloudstream.relay import CloudStream
from cloudhub.config import CloudSettings
from cloudhub.devicecontroller.controller import DeviceController
from cloudhub.edgecontroller.controller import EdgeController
from cloudhub.edgecontroller.kubelet import KubeletEndpoint
from cloudhub.figures import CloudFigures
from cloudhub.fleet.module import FleetModule
from cloudhub.httpserver.app import bound_port, make_app, serve_https
from cloudhub.hub.module import HubModule, WorkerTls
from cloudhub.pki import Authority
from cloudhub.store.base import ObjectStore
from cloudhub.tuning import freeze_after_bursts, tune_process
from cloudhub.ui.pages import FleetPages
from hive.bus import Bus
from hive.datadir import lock_data_dir
from hive.module import Runner
from wire.errors import ConfigError

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
    fleet: FleetModule
    #: what stops everything :func:`start` started, in reverse order
    resources: AsyncExitStack
    cluster: Cluster | None = None
    #: the relay of pods' logs and exec streams
    cloudstream: CloudStream | None = None

    @property
    def ws_port(self) -> int:
        return self.hub.port

    @property
    def https_port(self) -> int:
        return bound_port(self.https)

    async def stop(self) -> None:
        """Close the HTTPS port, stop the modules (the hub closes its links and listener),
        then close the ledger, the store and the data dir's lock, in that order."""
        await self.resources.aclose()


def kubelet_endpoint(settings: CloudSettings, https_port: int) -> KubeletEndpoint | None:
    """Where the API server reaches this cloudhub's kubelet endpoints (None: not known, then
    ``kubectl logs/exec`` cannot reach edge pods; said once in the log)."""
    address = settings.kubelet_address
    if address is None:
        log.warning(
            "no --stream-address, $POD_IP or --advertise-address: edge Nodes do not name a "
            "kubelet endpoint, so kubectl logs/exec cannot reach edge pods"
        )
        return None
    return KubeletEndpoint(address, https_port)


def https_context(authority: Authority, settings: CloudSettings) -> ssl.SSLContext:
    """The HTTPS port's TLS: our CA for node certificates, plus the API server's kubelet
    client CA when given.

    Raises:
        ConfigError: the kubelet client CA file cannot be read.
    """
    ctx = authority.https_ssl_context()
    if settings.kubelet_client_ca is not None:
        try:
            ctx.load_verify_locations(cafile=str(settings.kubelet_client_ca))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load --kubelet-client-ca {settings.kubelet_client_ca}: {exc}"
            ) from exc
    return ctx


async def start(settings: CloudSettings) -> CloudApp:
    """Own the data dir, create or load the CA, open the store, bind both ports, start the
    modules.

    Everything is opened on one exit stack: if a step fails, whatever the steps before it
    opened (the data dir's lock, the store, the wss listener and its link workers) is closed
    again before the error propagates.

    Raises:
        DataDirInUse: another cloudhub serves this data dir (the message names its pid).
        ConfigError: unwritable data dir, port in use, bad store.
    """
    stack = AsyncExitStack()
    try:
        return await _start(settings, stack)
    except BaseException:
        await stack.aclose()
        raise


async def _start(settings: CloudSettings, stack: AsyncExitStack) -> CloudApp:
    # Before anything in the data dir is read or written: a second cloudhub on it would
    # write store.db with its own idea of the next resourceVersion.
    stack.callback(lock_data_dir(settings.data_dir, owner="cloudhub serve").release)
    tune_process()
    authority = Authority.load_or_create(settings.data_dir, advertise=settings.advertise)
    bus = Bus()
    backend = backend_for(settings)
    backing = await backend.open(stack, bus)
    store, ledger, cluster = backing.store, backing.ledger, backing.cluster
    revocations = Revocations(ledger)
    await revocations.load()
    issuer = CertIssuer(
        authority=authority,
        ledger=ledger,
        revocations=revocations,
        validity=settings.node_cert_validity,
    )
    bus.register(routes.HUB, "hub")
    bus.register(routes.EDGECONTROLLER, "resource")
    bus.register(routes.DEVICECONTROLLER, "device")
    bus.register(routes.CERTCONTROLLER, "certificate")
    bus.register(routes.CLOUDSTREAM, routes.LIFECYCLE_GROUP)
    bus.register(routes.FLEET, routes.LIFECYCLE_GROUP)
    fleet = FleetModule(bus=bus, store=store, events=backing.events)
    hub = HubModule(
        bus=bus,
        settings=settings.hub,
        ssl_context=authority.mtls_ssl_context(),
        revocations=revocations,
        owners=cluster.ownership if cluster else None,
        worker_tls=WorkerTls(
            server_cert=authority.server_cert_path,
            server_key=authority.server_key_path,
            ca_cert=authority.ca_cert_path,
        ),
        acked=backing.acked,
    )
    if cluster is not None:
        cluster.ownership.on_lost = lambda node: hub.drop(
            node, "ownership moved to another replica"
        )
    # With a cluster, a starting replica must not mark other replicas' edges offline, and a
    # node that moved between replicas must not be marked offline by the one it left: node
    # liveness is the node lease's business there.
    cloudstream = CloudStream(bus=bus, is_online=lambda node: node in hub.sessions)
    controller = EdgeController(
        bus=bus,
        store=store,
        mark_offline_on_start=cluster is None,
        write_offline=cluster is None,
    )
    devices = DeviceController(bus=bus, store=store)
    certs = CertController(
        bus=bus, store=store, issuer=issuer, refresh_interval=settings.auth_refresh_interval
    )
    figures = CloudFigures(
        hub=hub, fleet=fleet, devices=devices, certs=certs, store=store, ledger=ledger
    )
    runner = Runner()
    stack.push_async_callback(runner.stop)
    try:
        await hub.listen()
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {settings.hub.bind}:{settings.hub.ws_port} (wss): {exc.strerror}"
        ) from exc
    # The hub closes its listener and link workers when its run ends, so it runs from here
    # on: a later failure (the HTTPS port in use) stops it, and them, with the runner.
    runner.start_module(hub)
    https = await serve_https(
        make_app(
            authority=authority,
            store=store,
            presence=hub,
            issuer=issuer,
            streams=cloudstream,
            fleet=fleet,
            metrics=figures.collect,
            pages=FleetPages(authority=authority, fleet=fleet, presence=hub),
        ),
        host=settings.hub.bind,
        port=settings.https_port,
        ssl_context=https_context(authority, settings),
        handshake_timeout=settings.hub.handshake_timeout,
    )
    stack.push_async_callback(https.cleanup)
    # The port is known only now, and the controller must have it before it writes a Node.
    if cluster is not None:
        controller.kubelet = kubelet_endpoint(settings, bound_port(https))
    runner.start_module(controller)
    runner.start_module(devices)
    runner.start_module(certs)
    runner.start_module(cloudstream)
    if hub.acked is not None:
        runner.start_module(hub.acked)
    runner.start_module(fleet)
    if cluster is not None:
        runner.start_module(cluster.lifecycle)
        runner.start_module(cluster.reaper)
    runner.spawn(
        "gc-tuning",
        lambda: freeze_after_bursts(
            lambda: hub.connections_total,
            lambda: hub.closed_total,
            lambda: len(hub.sessions),
        ),
    )
    log.info(
        "cloudhub ready (%s store): CA sha256 %s, data in %s, node certificates valid %s",
        backend.name,
        authority.ca_hash,
        settings.data_dir,
        settings.node_cert_validity,
    )
    return CloudApp(
        settings=settings,
        authority=authority,
        store=store,
        bus=bus,
        hub=hub,
        controller=controller,
        runner=runner,
        https=https,
        issuer=issuer,
        fleet=fleet,
        resources=stack,
        cluster=cluster,
        cloudstream=cloudstream,
    )
