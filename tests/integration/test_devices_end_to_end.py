"""Devices end to end: a mapper's reports reach the cloud, desired values reach the mapper."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import Cloud, Edge, MakeEdge, Mapper, twin, wait_until

pytestmark = pytest.mark.timeout(90)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "devices"


async def _setup(
    cloud: Cloud, make_edge: MakeEdge, tmp_path: Path, **edge_kw: Any
) -> tuple[Edge, Mapper]:
    cloud.edgectl("apply", "-f", str(EXAMPLES / "thermostat-model.yaml"))
    cloud.edgectl("apply", "-f", str(EXAMPLES / "thermostat-device.yaml"))
    edge: Edge = make_edge(**edge_kw)
    edge.join(cloud)
    await edge.start()
    await wait_until(
        lambda: edge.has(
            "/apis/devices.kubeedge.io/v1beta1/namespaces/default/devices/thermostat-1"
        )
    )
    mapper = Mapper(tmp_path, edge)
    mapper.start()
    return edge, mapper


def reported(cloud: Cloud, prop: str) -> str | None:
    return twin(cloud.get_json("devices", "thermostat-1"), prop).get("reported", {}).get("value")  # type: ignore[no-any-return]


async def test_reports_reach_cloud_and_desired_reaches_mapper(
    cloud: Cloud, make_edge: MakeEdge, tmp_path: Path
) -> None:
    """Reported values show in status.twins; a desired set with edgectl is applied and observed."""
    _edge, mapper = await _setup(cloud, make_edge, tmp_path)
    try:
        await wait_until(lambda: reported(cloud, "temperature") is not None, timeout=15)
        out = cloud.edgectl("twin", "set", "thermostat-1", "setpoint=21.5")
        assert "setpoint=21.5" in out
        await wait_until(lambda: reported(cloud, "setpoint") == "21.5", timeout=10)
        dev = cloud.get_json("devices", "thermostat-1")
        assert twin(dev, "setpoint")["observedDesired"]["value"] == "21.5"
        table = cloud.edgectl("get", "devices")
        assert "setpoint" in table and "yes" in table
    finally:
        mapper.proc.stop()


async def test_desired_value_outside_model_range_is_refused(
    cloud: Cloud, make_edge: MakeEdge, tmp_path: Path
) -> None:
    """A desired value above the model's maximum is refused by edgectl with a clear line."""
    cloud.edgectl("apply", "-f", str(EXAMPLES / "thermostat-model.yaml"))
    cloud.edgectl("apply", "-f", str(EXAMPLES / "thermostat-device.yaml"))
    res = cloud.run_edgectl("twin", "set", "thermostat-1", "setpoint=99")
    assert res.returncode != 0
    assert "setpoint" in res.stderr and "35" in res.stderr
    res = cloud.run_edgectl("twin", "set", "thermostat-1", "temperature=20")
    assert res.returncode != 0 and "ReadOnly" in res.stderr


async def test_offline_reports_and_desired_converge_after_reconnect(
    cloud: Cloud, make_edge: MakeEdge, tmp_path: Path
) -> None:
    """With the link down, reports queue at the edge and a desired set meanwhile still arrives."""
    from tests.support.proxy import FaultProxy

    async with FaultProxy() as proxy:
        await proxy.start("127.0.0.1", cloud.ws_port)
        cloud.edgectl("apply", "-f", str(EXAMPLES / "thermostat-model.yaml"))
        cloud.edgectl("apply", "-f", str(EXAMPLES / "thermostat-device.yaml"))
        edge: Edge = make_edge()
        # in a thread: join checks the websocket port through the proxy on this loop
        await asyncio.to_thread(edge.join, cloud, ws_port=proxy.port)
        await edge.start()
        mapper = Mapper(tmp_path, edge)
        mapper.start()
        try:
            # edgectl in a thread: the proxy runs on this loop and must keep relaying meanwhile
            await wait_until(
                lambda: asyncio.to_thread(lambda: reported(cloud, "temperature") is not None),
                timeout=15,
            )
            proxy.refuse()
            proxy.cut()
            await wait_until(lambda: not cloud.node_ready("edge-1"))
            # the edge keeps answering the mapper locally while offline
            before = reported(cloud, "temperature")
            cloud.edgectl("twin", "set", "thermostat-1", "setpoint=23")
            edge.proc.kill9()  # and survives a crash while offline
            await edge.start()
            proxy.accept()
            await wait_until(
                lambda: asyncio.to_thread(lambda: reported(cloud, "setpoint") == "23"), timeout=20
            )
            await wait_until(
                lambda: asyncio.to_thread(lambda: reported(cloud, "temperature") != before),
                timeout=10,
            )
        finally:
            mapper.proc.stop()
