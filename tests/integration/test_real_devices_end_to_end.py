"""A Modbus device end to end: cloud -> edge -> mapper -> pymodbus server, and back.

Real processes (cloudhub, edgecore with its mosquitto, ``python -m devices``) and a real Modbus
TCP server (pymodbus's, in the test's loop): reports reach the cloud, ``edgectl twin set``
writes the register, drift at the device is written back, a device switched off goes offline
in the cloud and comes back by itself, and all of it keeps working while the cloud is away.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fielddevices import ModbusDevice, ModbusDeviceProcess, device_objects
from tests.support.procs import Cloud, Edge, MakeEdge, Mapper, twin, wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def plc() -> AsyncIterator[ModbusDevice]:
    # its own process: the test's blocking edgectl calls must not stall the device
    dev = ModbusDeviceProcess(holding=[215, 20])
    await dev.start()
    yield dev
    await dev.stop()


def manifests(port: int) -> str:
    model, device = device_objects(
        "plc-1",
        "modbus",
        {"ip": "127.0.0.1", "port": port},
        [
            {
                "name": "temperature",
                "type": "FLOAT",
                "access": "ReadOnly",
                "visitor": {"register": "HoldingRegister", "offset": 0, "limit": 1, "scale": 0.1},
                "cycle": 300,
            },
            {
                "name": "setpoint",
                "type": "INT",
                "visitor": {"register": "HoldingRegister", "offset": 1, "limit": 1},
                "cycle": 300,
            },
        ],
    )
    return json.dumps(model) + "\n" + json.dumps(device)


def status(cloud: Cloud) -> dict[str, Any]:
    found: dict[str, Any] = cloud.get_json("devices", "plc-1").get("status") or {}
    return found


def reported(cloud: Cloud, prop: str) -> str | None:
    value = twin(cloud.get_json("devices", "plc-1"), prop).get("reported", {}).get("value")
    return value if isinstance(value, str) else None


async def _registers(plc: ModbusDevice, want: list[int]) -> bool:
    return await plc.peek(0, 2) == want


async def test_modbus_device_through_cloud_edge_and_mapper(
    cloud: Cloud, make_edge: MakeEdge, plc: ModbusDevice, tmp_path: Path
) -> None:
    """Reports, writes, drift, a device restart and a cloud outage, end to end."""
    for doc in manifests(plc.port).splitlines():
        cloud.apply(doc)
    edge: Edge = make_edge()
    edge.join(cloud)
    await edge.start()
    mapper = Mapper(tmp_path, edge)
    mapper.start()
    try:
        await wait_until(lambda: reported(cloud, "temperature") == "21.5", timeout=20)
        assert status(cloud).get("state") == "online"

        # a desired value from the cloud is written to the register and reported back
        cloud.edgectl("twin", "set", "plc-1", "setpoint=77")
        await wait_until(lambda: _registers(plc, [215, 77]), timeout=10)
        await wait_until(lambda: reported(cloud, "setpoint") == "77", timeout=10)

        # someone changes the register at the device: the mapper puts the desired value back
        await plc.poke(1, [5])
        await wait_until(lambda: _registers(plc, [215, 77]), timeout=10)

        # the device is switched off and on again: offline in the cloud, then online
        await plc.stop()
        await wait_until(lambda: status(cloud).get("state") == "offline", timeout=10)
        assert f"127.0.0.1:{plc.port}" in status(cloud)["stateReason"]  # says why
        await plc.start()
        await wait_until(lambda: status(cloud).get("state") == "online", timeout=15)
        assert not status(cloud).get("stateReason")

        # the cloud goes away; the edge and the mapper keep serving the device
        cloud.proc.stop()
        await plc.stop()
        await plc.start()  # a power cycle: the registers start over at [215, 20]
        await plc.poke(0, [230])
        await plc.poke(1, [9])  # drift while the cloud is away: enforced from the edge's twin
        await wait_until(lambda: _registers(plc, [230, 77]), timeout=15)
        await cloud.start()
        await wait_until(lambda: reported(cloud, "temperature") == "23", timeout=30)
        await wait_until(lambda: status(cloud).get("state") == "online", timeout=10)
        assert reported(cloud, "setpoint") == "77"
    finally:
        mapper.proc.stop()


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "devices"


async def test_mapper_follows_devices_added_changed_and_deleted(
    cloud: Cloud, make_edge: MakeEdge, tmp_path: Path
) -> None:
    """A mapper started before any Device serves one applied later, and stops on delete."""
    edge: Edge = make_edge()
    edge.join(cloud)
    await edge.start()
    mapper = Mapper(tmp_path, edge)
    mapper.start()
    try:
        cloud.edgectl("apply", "-f", str(EXAMPLES / "thermostat-model.yaml"))
        cloud.edgectl("apply", "-f", str(EXAMPLES / "thermostat-device.yaml"))

        def thermostat(prop: str) -> str | None:
            dev = cloud.get_json("devices", "thermostat-1")
            value = twin(dev, prop).get("reported", {}).get("value")
            return value if isinstance(value, str) else None

        await wait_until(lambda: thermostat("temperature") is not None, timeout=20)
        # a changed manifest (a new visitor) is picked up: the driver is rebuilt
        doc = (EXAMPLES / "thermostat-device.yaml").read_text().replace("noise: 0.05", "noise: 0")
        cloud.apply(doc)
        served = "thermostat-1: serving over virtual"
        await wait_until(lambda: mapper.proc.text().count(served) == 2, timeout=15)
        cloud.edgectl("delete", "devices", "thermostat-1")
        await wait_until(lambda: "no longer bound to this edge" in mapper.proc.text(), timeout=15)
    finally:
        mapper.proc.stop()
