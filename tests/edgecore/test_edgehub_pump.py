"""edgehub as a pump: a real cloudhub in this process, behind a fault proxy, and a real bus.

The decisions are tested without I/O in ``tests/wire/test_session_*``; these check that the
pump does what the session says: the inventory first, routes into the right inboxes, answers
back to their module, and the clock it gives the session for the backoff reset.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cloudhub.app import CloudApp
from edgecore.config import EdgeSettings
from edgecore.edgehub.module import EDGEHUB, EDGESTREAM, METAMANAGER, EdgeHub
from hive.bus import Bus
from tests.support.inproc import join_node, start_cloud
from tests.support.procs import wait_until
from tests.support.proxy import FaultProxy
from wire.messages import Message

pytestmark = pytest.mark.timeout(60)

HEARTBEAT = 0.25
_RETRY = re.compile(r"(?:reconnecting|retrying) in ([0-9.]+)s")


class Edge:
    """An EdgeHub on a real bus with stand-in inboxes for the modules it talks to."""

    def __init__(self, settings: EdgeSettings) -> None:
        self.bus = Bus()
        self.bus.register(EDGEHUB, "hub")
        for name in (METAMANAGER, EDGESTREAM, "twin"):
            self.bus.register(name, name)
        self.inventories = 0

        async def inventory() -> dict[str, str]:
            self.inventories += 1
            return {}

        self.hub = EdgeHub(bus=self.bus, settings=settings, inventory=inventory)

    async def next(self, module: str, operation: str, timeout: float = 10.0) -> Message:
        """The next message for ``module`` with ``operation`` (others are skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.bus.receive(module)
                if msg.operation == operation:
                    return msg


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[CloudApp]:
    app = await start_cloud(tmp_path / "cloud")
    try:
        yield app
    finally:
        await app.stop()


@pytest.fixture
async def proxy(cloud: CloudApp) -> AsyncIterator[FaultProxy]:
    async with FaultProxy("127.0.0.1", cloud.ws_port) as p:
        yield p


@pytest.fixture
async def edge(cloud: CloudApp, proxy: FaultProxy, tmp_path: Path) -> AsyncIterator[Edge]:
    settings = await join_node(cloud, "edge-1", tmp_path / "edge-1")
    settings.hub.ws_port = proxy.port
    settings.hub.heartbeat = HEARTBEAT
    settings.hub.reconnect_initial = 0.1
    e = Edge(settings)
    task = asyncio.create_task(e.hub.run(), name="test:edgehub")
    try:
        yield e
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _delays(caplog: pytest.LogCaptureFixture) -> list[float]:
    return [
        float(m)
        for r in caplog.records
        if r.name == "edgecore.edgehub.module"
        for m in _RETRY.findall(r.getMessage())
    ]


async def test_link_routes_both_ways(cloud: CloudApp, edge: Edge) -> None:
    """The twin hears ``connected``; the cloud's Node insert reaches metamanager; the cloud's
    answer to an upstream message goes back to the module that sent it."""
    await edge.next("twin", "connected")
    assert edge.inventories == 1 and edge.hub.connections == 1
    node = await edge.next(METAMANAGER, "insert")
    assert node.resource.endswith("node/edge-1")
    asked = Message.new(source="twin", group="resource", operation="explode", resource="x")
    await edge.bus.send(EDGEHUB, asked)
    answer = await edge.next("twin", "error")
    assert answer.parent_id == asked.id


async def test_backoff_starts_over_after_a_link_that_stayed_up(
    cloud: CloudApp, proxy: FaultProxy, edge: Edge, caplog: pytest.LogCaptureFixture
) -> None:
    """After an outage grew the delays, a link the session counts as stable resets them: the
    next cut is retried within the first delay. Waits on conditions only."""
    caplog.set_level(logging.INFO, logger="edgecore.edgehub.module")
    await edge.next("twin", "connected")
    proxy.refuse()
    proxy.cut()
    await wait_until(lambda: max(_delays(caplog), default=0.0) >= 0.4, timeout=20)
    proxy.accept()
    await edge.next("twin", "connected", timeout=20)
    loop = asyncio.get_running_loop()
    await wait_until(lambda: edge.hub.session.stable(loop.time()), timeout=10)
    seen = len(_delays(caplog))
    proxy.cut()
    await edge.next("twin", "disconnected")
    await wait_until(lambda: len(_delays(caplog)) > seen)
    assert _delays(caplog)[seen] <= 0.1, _delays(caplog)
    await edge.next("twin", "connected", timeout=10)
