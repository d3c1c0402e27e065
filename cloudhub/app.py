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
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
from dataclasses import dataclass

from aiohttp import web

from cloudhub import routes
from cloudhub.auth.issuer import CertIssuer
from cloudhub.auth.ledger import AuthLedger, SqliteLedger
from cloudhub.auth.revocation import Revocations
from cloudhub.certcontroller.controller import CertController
from cloudhub.cloudstream.kubelet import KubeletEndpoint
from cloudhub.cloudstream.relay import CloudStream
from cloudhub.config import CloudSettings
from cloudhub.devicecontroller.controller import DeviceController
from cloudhub.edgecontroller.controller import EdgeController
from cloudhub.figures import CloudFigures
from cloudhub.fleet.eventstore import EmbeddedEvents, EventStore, KubeEvents
from cloudhub.fleet.module import FleetModule
from cloudhub.httpserver.app import bound_port, make_app, serve_https
from cloudhub.hub.acked import open_acked
from cloudhub.hub.module import HubModule, WorkerTls
from cloudhub.k8s import cluster_requested
from cloudhub.k8s.lifecycle import NodeLifecycle
from cloudhub.k8s.ownership import NodeOwnership
from cloudhub.k8s.reaper import NodeReaper
from cloudhub.pki import Authority
from cloudhub.store.base import ObjectStore
from cloudhub.store.embedded import EmbeddedStore
from cloudhub.tuning import freeze_after_bursts, tune_process
from cloudhub.ui.pages import FleetPages
from hive.bus import Bus
from hive.datadir import DataDirLock, lock_data_dir
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
    fleet: FleetModule
    cluster: Cluster | None = None
    #: the relay of pods' logs and exec streams
    cloudstream: CloudStream | None = None
    #: this process's ownership of the data dir, released last
    lock: DataDirLock | None = None

    @property
    def ws_port(self) -> int:
        return self.hub.port

    @property
    def https_port(self) -> int:
        return bound_port(self.https)

    async def stop(self) -> None:
        await self.runner.stop()
        if self.cluster is not None:
            await self.cluster.ownership.close()
        await self.https.cleanup()
        # the ledger first: on Kubernetes it writes through the store's connection
        await self.issuer.ledger.close()
        await self.store.close()
        if self.lock is not None:
            self.lock.release()


def open_store(settings: CloudSettings) -> ObjectStore:
    """The cluster when one is configured (flag, ``KUBECONFIG``, in a pod), else embedded."""
    if cluster_requested(settings.kubeconfig):
        # imported here: the kubernetes client is only loaded when a cluster is used
        from cloudhub.store.kubernetes import KubeStore

        return KubeStore.from_config(settings.kubeconfig)
    return EmbeddedStore(settings.store_path)


def open_events(store: ObjectStore) -> EventStore:
    """Where recorded Events go: ``store.db`` beside the objects, or the cluster."""
    if isinstance(store, EmbeddedStore):
        return EmbeddedEvents(store)
    from cloudhub.store.kubernetes import KubeStore

    assert isinstance(store, KubeStore)
    return KubeEvents(store.api)


def open_ledger(settings: CloudSettings, store: ObjectStore) -> AuthLedger:
    """Where token uses and certificates are remembered: ``auth.db``, or on a cluster one
    Secret every replica shares (a revocation made through one replica must hold on all, and
    on replicas started later)."""
    if cluster_requested(settings.kubeconfig):
        from cloudhub.auth.kube_ledger import KubeLedger
        from cloudhub.store.kubernetes import KubeStore

        assert isinstance(store, KubeStore)
        return KubeLedger(store.api, namespace=settings.cluster_namespace)
    return SqliteLedger(settings.auth_path)


async def check_cluster(settings: CloudSettings, store: ObjectStore) -> None:
    """On a cluster: the namespace (created if allowed), the CRDs and the rights cloudhub
    uses, else a ConfigError naming what is missing and the ``kubectl apply`` that fixes it."""
    if not cluster_requested(settings.kubeconfig):
        return
    from cloudhub.k8s.preflight import check_cluster as check
    from cloudhub.store.kubernetes import KubeStore

    assert isinstance(store, KubeStore)
    await check(store.api, namespace=settings.cluster_namespace)


@dataclass
class Cluster:
    """What Kubernetes mode adds: node ownership between replicas and node heartbeats."""

    ownership: NodeOwnership
    lifecycle: NodeLifecycle
    reaper: NodeReaper

    @classmethod
    def build(cls, settings: CloudSettings, store: ObjectStore, bus: Bus) -> Cluster:
        from cloudhub.k8s.leases import LeaseClient
        from cloudhub.k8s.nodelease import NodeHeartbeat
        from cloudhub.store.kubernetes import KubeStore

        assert isinstance(store, KubeStore)
        identity = settings.replica or os.environ.get("POD_NAME") or socket.gethostname()
        ownership = NodeOwnership(
            LeaseClient(store.api, namespace=settings.cluster_namespace),
            identity=identity,
            duration_s=settings.owner_lease_seconds,
        )
        bus.register(routes.NODELIFECYCLE, routes.LIFECYCLE_GROUP)
        lifecycle = NodeLifecycle(bus=bus, heartbeat=NodeHeartbeat(store.api))
        reaper = NodeReaper(store=store, api=store.api, namespace=settings.cluster_namespace)
        log.info(
            "Kubernetes mode: replica %s, node leases in %s", identity, settings.cluster_namespace
        )
        return cls(ownership, lifecycle, reaper)


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

    Raises:
        DataDirInUse: another cloudhub serves this data dir (the message names its pid).
        ConfigError: unwritable data dir, port in use, bad store.
    """
    # Before anything in the data dir is read or written: a second cloudhub on it would
    # write store.db with its own idea of the next resourceVersion.
    lock = lock_data_dir(settings.data_dir, owner="cloudhub serve")
    try:
        app = await _start(settings)
    except BaseException:
        lock.release()
        raise
    app.lock = lock
    return app


async def _start(settings: CloudSettings) -> CloudApp:
    tune_process()
    authority = Authority.load_or_create(settings.data_dir, advertise=settings.advertise)
    store = open_store(settings)
    try:
        await store.start()
        await check_cluster(settings, store)
        ledger = open_ledger(settings, store)
        await ledger.start()
    except BaseException:
        await store.close()
        raise
    revocations = Revocations(ledger)
    events = open_events(store)
    try:
        await revocations.load()
        await events.start()
    except BridgeError:
        await ledger.close()
        await store.close()
        raise
    issuer = CertIssuer(
        authority=authority,
        ledger=ledger,
        revocations=revocations,
        validity=settings.node_cert_validity,
    )
    bus = Bus()
    bus.register(routes.HUB, "hub")
    bus.register(routes.EDGECONTROLLER, "resource")
    bus.register(routes.DEVICECONTROLLER, "device")
    bus.register(routes.CERTCONTROLLER, "certificate")
    bus.register(routes.CLOUDSTREAM, routes.LIFECYCLE_GROUP)
    bus.register(routes.FLEET, routes.LIFECYCLE_GROUP)
    fleet = FleetModule(bus=bus, store=store, events=events)
    cluster = (
        Cluster.build(settings, store, bus) if cluster_requested(settings.kubeconfig) else None
    )
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
        acked=open_acked(settings, store),
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
    try:
        await hub.listen()
    except OSError as exc:
        await store.close()
        await ledger.close()
        raise ConfigError(
            f"cannot listen on {settings.hub.bind}:{settings.hub.ws_port} (wss): {exc.strerror}"
        ) from exc
    devices = DeviceController(bus=bus, store=store)
    certs = CertController(
        bus=bus, store=store, issuer=issuer, refresh_interval=settings.auth_refresh_interval
    )
    figures = CloudFigures(
        hub=hub, fleet=fleet, devices=devices, certs=certs, store=store, ledger=ledger
    )
    try:
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
    except ConfigError:
        await store.close()
        await ledger.close()
        raise
    if cluster is not None:
        controller.kubelet = kubelet_endpoint(settings, bound_port(https))
    runner = Runner()
    runner.start_module(controller)
    runner.start_module(devices)
    runner.start_module(certs)
    runner.start_module(cloudstream)
    runner.start_module(hub)
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
        "cloudhub ready: CA sha256 %s, data in %s, node certificates valid %s",
        authority.ca_hash,
        settings.data_dir,
        settings.node_cert_validity,
    )
    return CloudApp(
        settings,
        authority,
        store,
        bus,
        hub,
        controller,
        runner,
        https,
        issuer,
        fleet,
        cluster,
        cloudstream,
    )
