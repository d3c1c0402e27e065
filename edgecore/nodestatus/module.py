"""The ``nodestatus`` module: on every (re)connect, report this node's facts to the cloud.

KubeEdge's edged reports node status every 10 s and in full every 5 minutes. The facts here
(capacity, OS, kernel, addresses) change rarely, so edgebridge sends them when the link comes
up and then every ``interval`` seconds; liveness itself is the link's keepalive, not this.
The report is not durable: a lost one is simply sent again on the next connect.
"""

from __future__ import annotations

import asyncio
import logging

from edgecore.modules import EDGED_GROUP, EDGEHUB, NODESTATUS
from edgecore.nodestatus.facts import node_labels, node_status
from hive.bus import Bus
from wire.messages import Message, Operation
from wire.session import CONNECTED, DISCONNECTED

log = logging.getLogger(__name__)

#: seconds between full reports while connected (KubeEdge: 5 minutes)
DEFAULT_INTERVAL = 300.0


class NodeStatusReporter:
    """Sends ``update null/nodestatus/{node}`` upstream when told the cloud is connected."""

    name = NODESTATUS
    group = EDGED_GROUP
    enabled = True

    def __init__(
        self, *, bus: Bus, node_name: str, cloud_host: str, interval: float = DEFAULT_INTERVAL
    ) -> None:
        self._bus = bus
        self._node = node_name
        self._cloud_host = cloud_host
        self._interval = interval
        self._connected = False
        self.sent = 0

    async def run(self) -> None:
        while True:
            try:  # asyncio.timeout: 3.11's wait_for can swallow a cancellation
                async with asyncio.timeout(self._interval):
                    msg = await self._bus.receive(self.name)
            except TimeoutError:
                if self._connected:
                    await self._report()
                continue
            if msg.operation == CONNECTED:
                self._connected = True
                await self._report()
            elif msg.operation == DISCONNECTED:
                self._connected = False
            elif msg.operation == Operation.ERROR:
                log.warning("cloud refused node status: %s", msg.content)

    async def _report(self) -> None:
        facts = await asyncio.to_thread(node_status, cloud_host=self._cloud_host)
        await self._bus.send(
            EDGEHUB,
            Message.new(
                source=self.name,
                group="resource",
                operation=Operation.UPDATE,
                resource=f"null/nodestatus/{self._node}",
                content={"status": facts, "labels": node_labels()},
            ),
        )
        self.sent += 1
