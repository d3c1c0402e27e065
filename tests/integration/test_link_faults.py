"""A cut link reconnects fast and converges; a half-open link is noticed on both sides."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from tests.integration.manifests import bundle, configmap
from tests.support.procs import Cloud, Edge, MakeEdge, wait_until
from tests.support.proxy import FaultProxy

pytestmark = pytest.mark.timeout(60)

CM = "/api/v1/namespaces/default/configmaps/web-config"
POD = "/api/v1/namespaces/default/pods/web"
HEARTBEAT = 0.5
_RETRY = re.compile(r"(?:reconnecting|retrying) in ([0-9.]+)s")


def _retry_delays(edge: Edge) -> list[float]:
    """The reconnect delays the edge logged, in order."""
    return [float(d) for d in _RETRY.findall(edge.proc.text())]


def _links(edge: Edge) -> int:
    """How many links to the cloud the edge logged as up."""
    return edge.proc.text().count("edgehub.module: connected to ")


async def _through_proxy(cloud: Cloud, make_edge: MakeEdge, proxy: FaultProxy) -> Edge:
    await proxy.start("127.0.0.1", cloud.ws_port)
    edge: Edge = make_edge(heartbeat=HEARTBEAT)
    # in a thread: join checks the websocket port through the proxy, which runs on this loop
    await asyncio.to_thread(edge.join, cloud, ws_port=proxy.port)
    await edge.start()
    cloud.apply(bundle())
    await wait_until(lambda: edge.has(CM) and cloud.node_ready("edge-1"))
    return edge


async def test_cut_link_reconnects_and_converges(cloud: Cloud, make_edge: MakeEdge) -> None:
    """Edits made while the link is cut reach the edge after it comes back."""
    async with FaultProxy() as proxy:
        edge = await _through_proxy(cloud, make_edge, proxy)
        proxy.refuse()
        proxy.cut()
        await wait_until(lambda: not cloud.node_ready("edge-1"))
        cloud.apply(configmap(value="while-cut"))
        cloud.edgectl("delete", "secret", "web-secret")
        proxy.accept()
        started = time.monotonic()
        await wait_until(lambda: edge.get(CM)[1]["data"]["LEVEL"] == "while-cut")
        await wait_until(lambda: edge.gone("/api/v1/namespaces/default/secrets/web-secret"))
        # backoff is capped and its first tries are sub-second: well under KubeEdge's 30 s
        assert time.monotonic() - started < 10


async def test_half_open_link_detected_within_two_heartbeats(
    cloud: Cloud, make_edge: MakeEdge
) -> None:
    """With traffic frozen but sockets up, cloud and edge both drop the link in ~2 heartbeats."""
    async with FaultProxy() as proxy:
        edge = await _through_proxy(cloud, make_edge, proxy)
        frozen_at = time.monotonic()
        proxy.freeze()
        await wait_until(lambda: not cloud.node_ready("edge-1"), timeout=10, interval=0.05)
        cloud_noticed = time.monotonic() - frozen_at
        await wait_until(lambda: "nothing heard from the cloud" in edge.proc.text(), timeout=10)
        edge_noticed = time.monotonic() - frozen_at
        # 2 heartbeats plus the time edgectl takes to run (a process start, ~0.5 s)
        assert cloud_noticed < 2 * HEARTBEAT + 2.0, cloud_noticed
        assert edge_noticed < 2 * HEARTBEAT + 2.0, edge_noticed
        assert "closing half-open link" in cloud.proc.text()
        proxy.thaw()
        await wait_until(lambda: cloud.node_ready("edge-1"), timeout=15)
        cloud.apply(configmap(value="after-thaw"))
        await wait_until(lambda: edge.get(CM)[1]["data"]["LEVEL"] == "after-thaw")


async def test_backoff_starts_over_after_a_link_that_stayed_up(
    cloud: Cloud, make_edge: MakeEdge
) -> None:
    """After an outage long enough for the retry delays to grow, a link that stayed up two
    heartbeats resets them: the next cut is retried within the first, sub-second delay."""
    async with FaultProxy() as proxy:
        edge = await _through_proxy(cloud, make_edge, proxy)
        proxy.refuse()
        proxy.cut()
        await wait_until(lambda: max(_retry_delays(edge), default=0.0) >= 2.0, timeout=30)
        links = _links(edge)
        proxy.accept()
        # The edge's own "connected" line, not the cloud's Ready: the reset counts the link's
        # age from the edge's side, which may log a moment after the cloud marks the node.
        await wait_until(lambda: _links(edge) > links, timeout=30)
        await wait_until(lambda: cloud.node_ready("edge-1"), timeout=30)
        seen = len(_retry_delays(edge))
        # the behaviour under test: the link stays up for longer than two heartbeats
        await asyncio.sleep(3 * HEARTBEAT)
        proxy.cut()
        await wait_until(lambda: len(_retry_delays(edge)) > seen)
        assert _retry_delays(edge)[seen] <= 0.5, _retry_delays(edge)
        cloud.apply(configmap(value="after-second-cut"))
        await wait_until(lambda: edge.get(CM)[1]["data"]["LEVEL"] == "after-second-cut", timeout=5)
