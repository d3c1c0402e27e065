"""edgectl watching and describing a live fleet: real cloudhub, edgecore and edgectl processes."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.support.procs import Cloud, wait_until

pytestmark = pytest.mark.timeout(90)


async def test_watch_and_describe_follow_an_edge_coming_and_going(
    cloud: Cloud, make_edge, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """get nodes -w prints the node online, then offline when its edgecore stops; describe
    shows its state and the NodeReady/NodeNotReady events."""
    edge = make_edge("edge-1", heartbeat=0.5)
    edge.join(cloud)
    await edge.start()
    await wait_until(lambda: cloud.node_ready("edge-1"), timeout=20)
    watch = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edgectl",
        "get",
        "nodes",
        "-w",
        "--server",
        f"https://127.0.0.1:{cloud.https_port}",
        "--data-dir",
        str(cloud.dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert watch.stdout is not None
    try:

        async def row() -> list[str]:
            line = await asyncio.wait_for(watch.stdout.readline(), 20)  # type: ignore[union-attr]
            assert line, "edgectl get -w ended"
            return line.decode().split()

        assert (await row())[:2] == ["NAME", "STATUS"]
        assert (await row())[:2] == ["edge-1", "online"]
        described = cloud.edgectl("describe", "node", "edge-1")
        assert "Status:       online" in described
        await wait_until(lambda: "NodeReady" in cloud.edgectl("describe", "node", "edge-1"))

        edge.proc.stop()
        while (cells := await row())[:2] != ["edge-1", "offline"]:
            assert cells[0] == "edge-1", cells
    finally:
        watch.terminate()
        await watch.wait()
    await wait_until(lambda: "NodeNotReady" in cloud.edgectl("describe", "node", "edge-1"))
    events = cloud.edgectl("get", "events")
    assert "node/edge-1" in events and "NodeNotReady" in events
