"""cloudhub's figures for ``/metrics``: which module's counter becomes which metric.

Every figure is read at scrape time from the counter the owning module keeps (see
:mod:`hive.metrics`); none is per node (10,000 edges would be 10,000 series per figure): the
hub's figures are sums over its links, pods and devices are counted by phase and state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from cloudhub.auth.ledger import AuthLedger
from cloudhub.certcontroller.controller import CertController
from cloudhub.devicecontroller.controller import DeviceController
from cloudhub.fleet.module import FleetModule
from cloudhub.hub.module import HubModule
from cloudhub.k8s.api import KubeApi
from cloudhub.store.base import ObjectStore
from cloudhub.store.embedded import EmbeddedStore
from hive.metrics import counter, gauge, histogram, labelled

P = "edgebridge_cloud_"


@dataclass
class CloudFigures:
    """The modules whose counters ``/metrics`` reads."""

    hub: HubModule
    fleet: FleetModule
    devices: DeviceController
    certs: CertController
    store: ObjectStore
    ledger: AuthLedger | None = None

    def collect(self) -> Iterable[Metric]:
        hub = self.hub
        sessions = list(hub.sessions.values())
        yield gauge(P + "connected_edges", "Edges with a live link to this cloudhub", len(sessions))
        yield counter(P + "links_opened_total", "Edge links accepted", hub.connections_total)
        yield labelled(
            CounterMetricFamily,
            P + "links_closed_total",
            "Edge links ended, by reason",
            "reason",
            hub.closed_by_reason,
        )
        yield counter(
            P + "links_refused_total",
            "Connections refused at accept (pending-handshake caps)",
            hub.gate.refused,
        )
        t = hub.traffic
        yield labelled(
            CounterMetricFamily,
            P + "frames_total",
            "Frames over edge links",
            "direction",
            {"in": t.frames_in, "out": t.frames_out},
        )
        yield labelled(
            CounterMetricFamily,
            P + "bytes_total",
            "Bytes of text frames over edge links",
            "direction",
            {"in": t.bytes_in, "out": t.bytes_out},
        )
        backlog = in_flight = sent = retries = 0
        for s in sessions:
            d = s.downstream
            if d.wanted or d.in_flight:
                backlog += d.backlog
                in_flight += d.in_flight
            sent += d.sent
            retries += d.retries
        yield gauge(P + "delivery_queue_depth", "Objects still to deliver or unACKed", backlog)
        yield gauge(P + "delivery_in_flight", "Object messages awaiting an ACK", in_flight)
        yield counter(
            P + "delivery_messages_total", "Object messages sent to edges", hub.sent_ended + sent
        )
        yield counter(
            P + "delivery_retries_total",
            "Object messages sent again after an ACK timeout",
            hub.retries_ended + retries,
        )
        yield histogram(
            P + "ack_round_trip_seconds",
            "From sending an object to its ACK (the edge committed it): delivery lag",
            t.ack_round_trip,
        )
        yield labelled(
            CounterMetricFamily,
            P + "inventory_resyncs_total",
            "Deliveries started by diffing the edge's inventory, or in full",
            "kind",
            hub.resyncs,
        )
        if hub.acked is not None:
            yield counter(
                P + "stock_acked_resumes_total",
                "Stock edge links whose delivery started from what they last ACKed",
                hub.acked.used,
            )
            yield counter(
                P + "stock_acked_records_written_total",
                "Records of what stock edges hold, written (one per node per flush)",
                hub.acked.written,
            )
        if hub.workers is not None:
            yield counter(
                P + "link_worker_starts_total",
                "Link worker processes started, restarts included",
                hub.workers.started_total,
            )
        yield from self._store_figures()
        yield counter(
            P + "twin_reports_accepted_total", "Device reports applied", self.devices.applied
        )
        yield labelled(
            CounterMetricFamily,
            P + "twin_reports_refused_total",
            "Device reports refused, by reason",
            "reason",
            self.devices.refused_by,
        )
        yield counter(P + "cert_renewals_total", "Node certificates renewed", self.certs.renewed)
        conflicts = getattr(self.ledger, "conflicts", None)
        if isinstance(conflicts, int):  # the ledger shared by replicas (Kubernetes mode)
            yield counter(
                P + "auth_ledger_conflicts_total",
                "Guarded writes of the shared auth ledger that lost to another replica",
                conflicts,
            )
        yield from self._fleet_figures()

    def _store_figures(self) -> Iterable[Metric]:
        store = self.store
        api = getattr(store, "api", None)
        if isinstance(api, KubeApi):  # Kubernetes mode: the cluster is the store
            yield labelled(
                CounterMetricFamily,
                P + "kube_requests_total",
                "Calls to the Kubernetes API (watches excluded), by HTTP method",
                "method",
                api.requests,
            )
            yield histogram(
                P + "kube_request_seconds",
                "Kubernetes API calls, from call to answer",
                api.request_seconds,
            )
        if isinstance(store, EmbeddedStore):
            yield counter(
                P + "store_changes_total",
                "Object changes committed (one per resourceVersion)",
                store.changes_written,
            )
            yield histogram(
                P + "store_write_seconds",
                "Store writes (apply, delete, status) from call to commit",
                store.write_seconds,
            )

    def _fleet_figures(self) -> Iterable[Metric]:
        fleet = self.fleet
        view = fleet.view
        yield gauge(P + "nodes", "Nodes known to the store", len(view.nodes))
        yield labelled(
            GaugeMetricFamily,
            P + "pods",
            "Pods by phase",
            "phase",
            {k: v for k, v in view.pod_phases.items() if v},
        )
        yield labelled(
            GaugeMetricFamily,
            P + "devices",
            "Devices by state",
            "state",
            {k: v for k, v in view.device_states.items() if v},
        )
        yield gauge(
            P + "devices_in_sync",
            "Devices whose every desired value is observed and reported",
            view.devices_in_sync,
        )
        yield counter(P + "events_recorded_total", "Kubernetes Events recorded", fleet.recorded)
        if fleet.watch_lag.n:  # Kubernetes mode: writes carry the API server's timestamps
            yield histogram(
                P + "watch_lag_seconds",
                "From a write's API server timestamp (1 s precision) to its watch event",
                fleet.watch_lag,
            )
