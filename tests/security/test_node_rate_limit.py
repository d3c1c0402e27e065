"""A node that floods the cloud is read more slowly, not dropped, and does not slow others."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hive.ratelimit import TokenBucket
from tests.security.conftest import StartCloud, answer_to, join_node, link, send
from wire.messages import Message

pytestmark = pytest.mark.timeout(20)


def _query(name: str) -> Message:
    return Message.new(
        source="metamanager", group="resource", operation="query",
        resource=f"default/configmap/{name}",
    )  # fmt: skip


def _keepalive(content: str = "ping") -> Message:
    return Message.new(
        source="edgehub", group="resource", operation="keepalive", resource="node", content=content
    )


async def test_flooding_node_is_paced_and_every_message_answered(
    start_cloud: StartCloud, tmp_path: Path
) -> None:
    """30 queries at a budget of 40/s (burst 2) all get answers, spread over >= 0.6 s."""
    cloud = await start_cloud(node_rate=40.0, node_burst=2.0)
    edge = await join_node(cloud, tmp_path)
    async with link(cloud, edge) as ws:
        queries = [_query(f"cm-{i}") for i in range(30)]
        started = time.monotonic()
        for q in queries:
            await send(ws, q)
        for q in queries:
            assert (await answer_to(ws, q))["route"]["operation"] == "error"
        assert time.monotonic() - started >= 0.6


async def test_other_node_is_served_promptly_during_a_flood(
    start_cloud: StartCloud, tmp_path: Path
) -> None:
    """While one node is paced, another node's keepalive is answered at once."""
    cloud = await start_cloud(node_rate=20.0, node_burst=1.0)
    noisy = await join_node(cloud, tmp_path, "noisy")
    quiet = await join_node(cloud, tmp_path, "quiet")
    async with link(cloud, noisy) as flood, link(cloud, quiet) as ws:
        for i in range(40):
            await send(flood, _query(f"x-{i}"))
        await asyncio.sleep(0)  # let the hub start on the flood
        ping = _keepalive()
        started = time.monotonic()
        await send(ws, ping)
        assert (await answer_to(ws, ping))["content"] == "pong"
        assert time.monotonic() - started < 0.5


async def test_byte_budget_paces_large_frames(start_cloud: StartCloud, tmp_path: Path) -> None:
    """Frames are also paced by volume: 3 x 40 KB at 200 KB/s (burst 10 KB) take >= 0.3 s."""
    cloud = await start_cloud(node_byte_rate=200_000.0, node_byte_burst=10_000.0)
    edge = await join_node(cloud, tmp_path)
    async with link(cloud, edge) as ws:
        pings = [_keepalive("p" * 40_000) for _ in range(3)]
        started = time.monotonic()
        for p in pings:
            await send(ws, p)
        for p in pings:
            await answer_to(ws, p)
        # read at once, then after 30 KB and 40 KB of debt: 0.15 s + 0.2 s
        assert time.monotonic() - started >= 0.3


@given(
    rate=st.floats(1, 1000),
    burst=st.floats(0, 100),
    costs=st.lists(st.floats(0, 10), min_size=1, max_size=50),
)
def test_bucket_never_lets_more_than_rate_plus_burst_through(
    rate: float, burst: float, costs: list[float]
) -> None:
    """Whoever waits as told spends at most burst + rate * elapsed."""
    bucket = TokenBucket(rate=rate, burst=burst, now=0.0)
    now = 0.0
    for cost in costs:
        now += bucket.reserve(cost, now)
    assert sum(costs) <= burst + rate * now + 1e-6 * (1 + sum(costs))


@given(costs=st.lists(st.floats(0, 10), max_size=50))
def test_zero_rate_means_unlimited(costs: list[float]) -> None:
    """A rate of 0 never asks anyone to wait."""
    bucket = TokenBucket(rate=0, burst=0, now=0.0)
    assert all(bucket.reserve(c, 0.0) == 0 for c in costs)


def test_within_burst_there_is_no_wait() -> None:
    """Up to the burst, work passes at once; the next unit waits 1/rate."""
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    assert [bucket.reserve(1, 0.0) for _ in range(5)] == [0.0] * 5
    assert bucket.reserve(1, 0.0) == pytest.approx(0.1)
