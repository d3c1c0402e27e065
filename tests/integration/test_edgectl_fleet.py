"""edgectl watching and describing a live fleet: real cloudhub, edgecore and edgectl processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.procs import Cloud, MakeEdge, read_row, start_edgectl, wait_until

pytestmark = pytest.mark.timeout(90)


async def test_watch_and_describe_follow_an_edge_coming_and_going(
    cloud: Cloud, make_edge: MakeEdge, tmp_path: Path
) -> None:
    """get nodes -w prints the node online, then offline when its edgecore stops; describe
    shows its state and the NodeReady/NodeNotReady events."""
    edge = make_edge("edge-1", heartbeat=0.5)
    edge.join(cloud)
    await edge.start()
    await wait_until(lambda: cloud.node_ready("edge-1"), timeout=20)
    server = f"https://127.0.0.1:{cloud.https_port}"
    watch = await start_edgectl(
        "get", "nodes", "-w", "--server", server, "--data-dir", str(cloud.dir)
    )
    try:

        async def row() -> list[str]:
            return await read_row(watch, 20)

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
