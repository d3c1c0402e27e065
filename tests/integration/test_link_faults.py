"""A cut link reconnects fast and converges; a half-open link is noticed on both sides.

When the backoff starts over (after a link that stayed up) is a decision of the pure
``wire.session``: tested in ``tests/wire/test_session_reconnect.py`` and, through the pump, in
``tests/edgecore/test_edgehub_pump.py``, without real time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.integration.manifests import bundle, configmap
from tests.support.procs import Cloud, Edge, MakeEdge, wait_until
from tests.support.proxy import FaultProxy

pytestmark = pytest.mark.timeout(60)

CM = "/api/v1/namespaces/default/configmaps/web-config"
POD = "/api/v1/namespaces/default/pods/web"
HEARTBEAT = 0.5


def _off_loop(check: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    """``check`` run in a thread: edgectl and the local API block, and the proxy runs on this
    loop; blocked for 2 heartbeats, it froze the link on a busy machine and both sides rightly
    dropped it as half-open."""
    return lambda: asyncio.to_thread(check)


async def _through_proxy(cloud: Cloud, make_edge: MakeEdge, proxy: FaultProxy) -> Edge:
    await proxy.start("127.0.0.1", cloud.ws_port)
    edge: Edge = make_edge(heartbeat=HEARTBEAT)
    # in a thread: join checks the websocket port through the proxy, which runs on this loop
    await asyncio.to_thread(edge.join, cloud, ws_port=proxy.port)
    await edge.start()
    await asyncio.to_thread(cloud.apply, bundle())
    await wait_until(_off_loop(lambda: edge.has(CM) and cloud.node_ready("edge-1")))
    return edge


async def test_cut_link_reconnects_and_converges(cloud: Cloud, make_edge: MakeEdge) -> None:
    """Edits made while the link is cut reach the edge after it comes back."""
    async with FaultProxy() as proxy:
        edge = await _through_proxy(cloud, make_edge, proxy)
        proxy.refuse()
        proxy.cut()
        await wait_until(_off_loop(lambda: not cloud.node_ready("edge-1")))
        await asyncio.to_thread(cloud.apply, configmap(value="while-cut"))
        await asyncio.to_thread(cloud.edgectl, "delete", "secret", "web-secret")
        proxy.accept()
        started = time.monotonic()
        await wait_until(_off_loop(lambda: edge.get(CM)[1]["data"]["LEVEL"] == "while-cut"))
        await wait_until(
            _off_loop(lambda: edge.gone("/api/v1/namespaces/default/secrets/web-secret"))
        )
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
        offline = _off_loop(lambda: not cloud.node_ready("edge-1"))
        await wait_until(offline, timeout=10, interval=0.05)
        cloud_noticed = time.monotonic() - frozen_at
        await wait_until(lambda: "nothing heard from the cloud" in edge.proc.text(), timeout=10)
        edge_noticed = time.monotonic() - frozen_at
        # 2 heartbeats plus the time edgectl takes to run (a process start, ~0.5 s)
        assert cloud_noticed < 2 * HEARTBEAT + 2.0, cloud_noticed
        assert edge_noticed < 2 * HEARTBEAT + 2.0, edge_noticed
        assert "closing half-open link" in cloud.proc.text()
        proxy.thaw()
        await wait_until(_off_loop(lambda: cloud.node_ready("edge-1")), timeout=15)
        await asyncio.to_thread(cloud.apply, configmap(value="after-thaw"))
        await wait_until(_off_loop(lambda: edge.get(CM)[1]["data"]["LEVEL"] == "after-thaw"))
