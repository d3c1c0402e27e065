"""edgecore's figures for ``/metrics`` on the local API: which module's counter is which metric.

Read at scrape time from the counters the modules keep (see :mod:`hive.metrics`); the outbox
figures need a read of the twin database, done by :meth:`EdgeFigures.refresh` just before.
``prometheus_client`` is imported at the first scrape, not when edgecore starts (~1 MiB an
edge nobody scrapes does not need).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgecore.certmanager.module import CertManager
from edgecore.devicetwin.module import TwinModule
from edgecore.edgehub.module import EdgeHub
from edgecore.eventbus.module import EventBus
from edgecore.metamanager.module import MetaManager
from edgecore.metastore import MetaStore
from wire.errors import StoreError

if TYPE_CHECKING:
    from prometheus_client.core import Metric

P = "edgebridge_edge_"


@dataclass
class EdgeFigures:
    """The modules whose counters ``/metrics`` reads."""

    hub: EdgeHub
    meta: MetaManager
    store: MetaStore
    twin: TwinModule
    eventbus: EventBus
    certs: CertManager
    outbox_rows: int = 0
    #: unix ms of the oldest outbox row, None when empty
    outbox_oldest: int | None = None

    async def refresh(self) -> None:
        """Read what only the database knows (the outbox)."""
        try:
            self.outbox_rows, self.outbox_oldest = await self.twin.store.outbox_figures()
        except StoreError:
            self.outbox_rows, self.outbox_oldest = 0, None

    def collect(self) -> Iterable[Metric]:
        from prometheus_client.core import CounterMetricFamily

        from hive.metrics import counter, gauge, labelled

        yield gauge(
            P + "cloud_connected",
            "1 while the link to the cloud is up",
            self.hub.connected.is_set(),
        )
        yield counter(P + "cloud_links_total", "Links to the cloud opened", self.hub.connections)
        yield counter(P + "meta_batches_total", "Cache transactions committed", self.meta.batches)
        yield counter(
            P + "meta_messages_total", "Cloud messages stored in the cache", self.meta.stored
        )
        yield counter(
            P + "twin_sent_total", "Twin messages handed to the cloud link", self.twin.sent
        )
        yield counter(
            P + "twin_outbox_folded_total", "Outbox rows folded while offline", self.twin.folded
        )
        yield gauge(
            P + "twin_outbox_rows", "Twin reports not yet ACKed by the cloud", self.outbox_rows
        )
        age = (
            0.0 if self.outbox_oldest is None else max(0.0, time.time() - self.outbox_oldest / 1000)
        )
        yield gauge(P + "twin_outbox_oldest_seconds", "Age of the oldest outbox row", age)
        stats = self.eventbus.stats()
        yield labelled(
            CounterMetricFamily,
            P + "mqtt_messages_total",
            "MQTT messages, by what happened to them",
            "result",
            {
                k: stats[k]
                for k in ("received", "published", "ignored", "dropped", "dropped_qos0", "deferred")
            },
        )
        yield gauge(P + "mqtt_outbox", "MQTT publishes waiting for the broker", stats["pending"])
        yield counter(
            P + "mqtt_connections_total", "Connections made to the broker", stats["connections"]
        )
        broker = self.eventbus.broker
        if broker is not None:
            yield gauge(P + "mosquitto_up", "1 while the supervised mosquitto runs", broker.running)
            yield counter(
                P + "mosquitto_restarts_total", "Restarts of a dead mosquitto", broker.restarts
            )
        yield counter(P + "cert_renewals_total", "Node certificate renewals", self.certs.renewals)
