"""The ``nodelifecycle`` module (Kubernetes mode): node heartbeats for connected edges.

A kubelet proves its node alive by renewing ``kube-node-lease/{node}``; Kubernetes' node
lifecycle controller marks a node Unknown and taints it when renewals stop. cloudhub does
this for each edge it serves: renew while the edge's link is up, stop when it goes. The
cluster then sees an edge that went away exactly as it sees any node that went away. All the
connected nodes' leases are renewed in one pass per period
(:class:`~cloudhub.k8s.renewals.RenewalSchedule`), not by a timer each.

The hub tells this module about presence (the same reports edgecontroller gets). Only the
replica that owns a node has its link, so only that replica renews its lease.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

from cloudhub import routes
from cloudhub.k8s.nodelease import NodeHeartbeat
from cloudhub.k8s.renewals import RenewalSchedule, wait_due
from hive.backoff import backoff
from hive.bus import Bus
from wire.errors import NotFound, StoreError
from wire.resources import split_node_prefix

log = logging.getLogger(__name__)


class NodeLifecycle:
    """The node leases of connected nodes, renewed together in one pass per period."""

    name = routes.NODELIFECYCLE
    group = routes.LIFECYCLE_GROUP
    enabled = True

    def __init__(self, *, bus: Bus, heartbeat: NodeHeartbeat) -> None:
        self._bus = bus
        self._heartbeat = heartbeat
        self._schedule = RenewalSchedule(every=heartbeat.renew_interval)
        #: retry delays of nodes whose last renewal failed
        self._retries: dict[str, Iterator[float]] = {}
        self._wake = asyncio.Event()
        #: lease renewals made, for the bench's API-cost figure
        self.renewals = 0

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._renew_all(), name="nodelifecycle:renewals")
            tg.create_task(self._follow_presence(), name="nodelifecycle:presence")

    async def _follow_presence(self) -> None:
        while True:
            msg = await self._bus.receive(self.name)
            report = msg.content
            if not isinstance(report, routes.NodeStatusReport):
                continue
            node, _ = split_node_prefix(msg.resource)
            if report.online:
                if node not in self._schedule:
                    # renewed at once: a node that just connected is alive now
                    self._schedule.add(node, at=time.monotonic())
                    self._wake.set()
            else:
                self._schedule.discard(node)
                self._retries.pop(node, None)
                self._heartbeat.forget(node)

    async def _renew_all(self) -> None:
        """Sleep until leases are due, renew them together, repeat."""
        while True:
            due = await wait_due(self._schedule, self._wake)
            results = await asyncio.gather(
                *(self._heartbeat.renew_lease(node) for node in due), return_exceptions=True
            )
            now = time.monotonic()
            for node, result in zip(due, results, strict=True):
                if node in self._schedule:  # not disconnected meanwhile
                    self._settle(node, result, now)

    def _settle(self, node: str, result: BaseException | None, now: float) -> None:
        if result is None:
            self.renewals += 1
            self._retries.pop(node, None)
            self._schedule.renewed(node, now)
        elif isinstance(result, NotFound):
            log.info("node %s was deleted; its node lease is no longer renewed", node)
            self._schedule.discard(node)
            self._retries.pop(node, None)
        elif isinstance(result, Exception):
            delays = self._retries.setdefault(node, backoff(cap=self._heartbeat.renew_interval))
            delay = next(delays)
            if isinstance(result, StoreError):
                log.warning(
                    "renewing the node lease of %s failed: %s; retry in %.1fs", node, result, delay
                )
            else:
                log.error("renewing the node lease of %s failed", node, exc_info=result)
            self._schedule.add(node, at=now + delay)
        else:
            raise result  # cancellation
