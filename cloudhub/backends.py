"""Where cloudhub keeps its state: the one place embedded and Kubernetes mode differ.

A backend opens, in order, the object store, the auth ledger and the Event store, and in
Kubernetes mode the parts a cluster adds (node ownership between replicas, node heartbeats,
the reaper of unowned edge pods). Each part it opens is pushed onto the caller's
:class:`~contextlib.AsyncExitStack` as soon as it is open, so a failure at any later step of
cloudhub's start-up (a port in use, a missing CRD) closes exactly what was opened, in reverse
order, and nothing else decides which mode cloudhub runs in.

The kubernetes client is imported only by :class:`KubeBackend`: an embedded cloudhub never
loads it.
"""

from __future__ import annotations

import logging
import os
import socket
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Protocol

from cloudhub import routes
from cloudhub.auth.ledger import AuthLedger, SqliteLedger
from cloudhub.config import CloudSettings
from cloudhub.fleet.eventstore import EmbeddedEvents, EventStore, KubeEvents
from cloudhub.hub.acked import ACKED_DB_FILE, AckedStore, SqliteAcked
from cloudhub.k8s import cluster_requested
from cloudhub.k8s.lifecycle import NodeLifecycle
from cloudhub.k8s.ownership import NodeOwnership
from cloudhub.k8s.reaper import NodeReaper
from cloudhub.store.base import ObjectStore
from cloudhub.store.embedded import EmbeddedStore
from hive.bus import Bus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cluster:
    """What Kubernetes mode adds: node ownership between replicas and node heartbeats."""

    ownership: NodeOwnership
    lifecycle: NodeLifecycle
    reaper: NodeReaper


@dataclass(frozen=True)
class Backing:
    """The open parts of a backend, closed by the exit stack they were opened on."""

    store: ObjectStore
    #: token use counts, issued and revoked certificates
    ledger: AuthLedger
    #: where recorded Events go
    events: EventStore
    #: what each stock edge last ACKed (:mod:`cloudhub.hub.acked`)
    acked: AckedStore
    #: Kubernetes mode only
    cluster: Cluster | None = None


class Backend(Protocol):
    """Opens a mode's store, ledger, Event store and cluster parts (see the module notes)."""

    #: ``embedded`` or ``kubernetes``, for logs and ``edgectl version``
    name: str

    async def open(self, stack: AsyncExitStack, bus: Bus) -> Backing:
        """Open every part, pushing each one's close onto ``stack`` once it is open.

        Raises:
            ConfigError: the store or the cluster cannot be used (the message says why).
            StoreError: the store cannot be read.
        """


class EmbeddedBackend:
    """SQLite ``store.db`` (objects and Events) and ``auth.db`` in the data dir."""

    name = "embedded"

    def __init__(self, settings: CloudSettings) -> None:
        self._settings = settings

    async def open(self, stack: AsyncExitStack, bus: Bus) -> Backing:
        store = EmbeddedStore(self._settings.store_path, self._settings.store)
        await store.start()
        stack.push_async_callback(store.close)
        ledger = SqliteLedger(self._settings.auth_path)
        await ledger.start()
        stack.push_async_callback(ledger.close)
        events = EmbeddedEvents(store)
        await events.start()
        acked = SqliteAcked(self._settings.data_dir / ACKED_DB_FILE)
        stack.push_async_callback(acked.close)
        return Backing(store=store, ledger=ledger, events=events, acked=acked)


class KubeBackend:
    """The cluster's API: objects and Events there, the ledger in a Secret every replica
    shares (a revocation made through one replica must hold on all, and on replicas started
    later), node ownership by Leases."""

    name = "kubernetes"

    def __init__(self, settings: CloudSettings) -> None:
        self._settings = settings

    async def open(self, stack: AsyncExitStack, bus: Bus) -> Backing:
        # imported here: the kubernetes client is only loaded when a cluster is used
        from cloudhub.auth.kube_ledger import KubeLedger
        from cloudhub.k8s.acked import KubeAcked
        from cloudhub.k8s.leases import LeaseClient
        from cloudhub.k8s.nodelease import NodeHeartbeat
        from cloudhub.k8s.preflight import check_cluster
        from cloudhub.store.kubernetes import KubeStore

        s = self._settings
        store = KubeStore.from_config(s.kubeconfig)
        await store.start()
        stack.push_async_callback(store.close)
        # The namespace, the CRDs and the rights cloudhub uses, else a ConfigError naming
        # what is missing and the ``kubectl apply`` that fixes it.
        await check_cluster(store.api, namespace=s.cluster_namespace)
        ledger = KubeLedger(store.api, namespace=s.cluster_namespace)
        await ledger.start()
        # Closed before the store: it writes through the store's connection.
        stack.push_async_callback(ledger.close)
        events = KubeEvents(store.api)
        await events.start()
        acked = KubeAcked(store.api, namespace=s.cluster_namespace)
        stack.push_async_callback(acked.close)
        identity = s.replica or os.environ.get("POD_NAME") or socket.gethostname()
        ownership = NodeOwnership(
            LeaseClient(store.api, namespace=s.cluster_namespace),
            identity=identity,
            duration_s=s.owner_lease_seconds,
        )
        stack.push_async_callback(ownership.close)
        bus.register(routes.NODELIFECYCLE, routes.LIFECYCLE_GROUP)
        lifecycle = NodeLifecycle(bus=bus, heartbeat=NodeHeartbeat(store.api))
        reaper = NodeReaper(store=store, api=store.api, namespace=s.cluster_namespace)
        log.info("Kubernetes mode: replica %s, node leases in %s", identity, s.cluster_namespace)
        return Backing(
            store=store,
            ledger=ledger,
            events=events,
            acked=acked,
            cluster=Cluster(ownership, lifecycle, reaper),
        )


def backend_for(settings: CloudSettings) -> Backend:
    """The cluster when one is configured (flag, ``KUBECONFIG``, in a pod), else embedded."""
    if cluster_requested(settings.kubeconfig):
        return KubeBackend(settings)
    return EmbeddedBackend(settings)
