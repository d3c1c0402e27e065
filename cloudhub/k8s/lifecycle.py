"""The ``nodelifecycle`` module (Kubernetes mode): node heartbeats for connected edges.

A kubelet proves its node alive by renewing ``kube-node-lease/{node}``; Kubernetes' node
lifecycle controller marks a node Unknown and taints it when renewals stop. cloudhub does
this for each edge it serves: renew while the edge's link is up, stop when it goes. The
cluster then sees an edge that went away exactly as it sees any node that went away.

The hub tells this module about presence (the same reports edgecontroller gets). Only the
replica that owns a node has its link, so only that replica renews its lease.
"""

from __future__ import annotations

import asyncio
import logging

from cloudhub import routes
from cloudhub.k8s.nodelease import NodeHeartbeat
from hive.backoff import backoff
from hive.bus import Bus
from wire.errors import NotFound, StoreError
from wire.resources import split_node_prefix

log = logging.getLogger(__name__)


class NodeLifecycle:
    """One renewal task per connected node."""

    name = routes.NODELIFECYCLE
    group = routes.LIFECYCLE_GROUP
    enabled = True

    def __init__(self, *, bus: Bus, heartbeat: NodeHeartbeat) -> None:
        self._bus = bus
        self._heartbeat = heartbeat
        self._renewers: dict[str, asyncio.Task[None]] = {}
        #: lease renewals made, for the bench's API-cost figure
        self.renewals = 0

    async def run(self) -> None:
        try:
            while True:
                msg = await self._bus.receive(self.name)
                report = msg.content
                if not isinstance(report, routes.NodeStatusReport):
                    continue
                node, _ = split_node_prefix(msg.resource)
                if report.online:
                    self._start(node)
                else:
                    await self._stop(node)
        finally:
            for node in list(self._renewers):
                await self._stop(node)

    def _start(self, node: str) -> None:
        if node not in self._renewers:
            self._renewers[node] = asyncio.create_task(self._renew(node), name=f"lease:{node}")

    async def _stop(self, node: str) -> None:
        task = self._renewers.pop(node, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._heartbeat.forget(node)

    async def _renew(self, node: str) -> None:
        delays = backoff(cap=self._heartbeat.renew_interval)
        while True:
            try:
                await self._heartbeat.renew_lease(node)
                self.renewals += 1
                delays = backoff(cap=self._heartbeat.renew_interval)
                await asyncio.sleep(self._heartbeat.renew_interval)
            except NotFound:
                log.info("node %s was deleted; its node lease is no longer renewed", node)
                self._renewers.pop(node, None)
                return
            except StoreError as exc:
                delay = next(delays)
                log.warning(
                    "renewing the node lease of %s failed: %s; retry in %.1fs", node, exc, delay
                )
                await asyncio.sleep(delay)
