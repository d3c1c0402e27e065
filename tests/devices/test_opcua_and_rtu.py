"""The mapper against asyncua's OPC UA server and pymodbus's RTU server on a pseudo-terminal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from asyncua import ua

from tests.support.fielddevices import ModbusRtuDevice, OpcUaDevice, device_objects
from tests.support.procs import wait_until

if TYPE_CHECKING:
    from tests.devices.conftest import FakeEdge, MapperFactory

pytestmark = pytest.mark.timeout(40)


def actual(payload: Any, prop: str) -> str | None:
    entry = payload.get("twin", {}).get(prop) if isinstance(payload, dict) else None
    return entry["actual"]["value"] if entry and "actual" in entry else None


def delta(props: dict[str, str]) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "timestamp": int(time.time() * 1000), "delta": props}


# ----------------------------------------------------------------------------- OPC UA


@pytest.fixture
async def opcua() -> AsyncIterator[OpcUaDevice]:
    dev = OpcUaDevice(
        {
            "temperature": (21.5, ua.VariantType.Double),
            "setpoint": (20.0, ua.VariantType.Float),
            "mode": (3, ua.VariantType.Int32),
            "enabled": (False, ua.VariantType.Boolean),
        }
    )
    await dev.start()
    yield dev
    await dev.stop()


def opcua_objects(url: str, **extra: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    return device_objects(
        "ua-1",
        "opcua",
        {"url": url, "securityPolicy": "None", "securityMode": "None", **extra},
        [
            {"name": "temperature", "type": "DOUBLE", "access": "ReadOnly",
             "visitor": {"nodeID": "ns=2;s=temperature"}},
            {"name": "setpoint", "type": "FLOAT", "visitor": {"nodeID": "ns=2;s=setpoint"}},
            {"name": "mode", "type": "INT", "visitor": {"nodeID": "ns=2;s=mode"}},
            {"name": "enabled", "type": "BOOLEAN", "visitor": {"nodeID": "ns=2;s=enabled"}},
        ],
    )  # fmt: skip


async def test_opcua_nodes_are_read_written_and_bad_ones_do_not_stop_the_rest(
    edge: FakeEdge,
    opcua: OpcUaDevice,
    start_mapper: MapperFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nodes are reported by type and written in their own variant types; a nodeID the server
    lacks and a value the node cannot hold are one log line each, the rest goes on."""
    caplog.set_level(logging.WARNING, logger="devices")
    t = "$hw/events/device/ua-1"
    model, device = opcua_objects(opcua.url)
    model["spec"]["properties"].append({"name": "ghost", "type": "INT", "accessMode": "ReadOnly"})
    device["spec"]["properties"].append(
        {"name": "ghost", "visitors": {"configData": {"nodeID": "ns=2;s=nothing"}}}
    )
    start_mapper(model, device)
    report = await edge.wait_for(f"{t}/twin/update", lambda p: "enabled" in p["twin"])
    assert (actual(report, "temperature"), actual(report, "setpoint")) == ("21.5", "20")
    assert (actual(report, "mode"), actual(report, "enabled")) == ("3", "false")
    await wait_until(lambda: "BadNodeIdUnknown" in caplog.text)
    await edge.publish(
        f"{t}/twin/update/delta", delta({"setpoint": "22.5", "mode": "7", "enabled": "true"})
    )
    await edge.wait_for(
        f"{t}/twin/update",
        lambda p: actual(p, "setpoint") == "22.5" and actual(p, "mode") == "7",
    )
    assert await opcua.value("setpoint") == pytest.approx(22.5)
    assert await opcua.value("mode") == 7 and await opcua.value("enabled") is True
    await edge.publish(f"{t}/twin/update/delta", delta({"mode": "4000000000"}))
    await wait_until(lambda: "does not fit a Int32 node" in caplog.text)
    assert await opcua.value("mode") == 7

    # the server stops: offline; it comes back on the same port: online by itself
    await opcua.stop()
    await edge.wait_for(f"{t}/state/update", lambda p: p["state"] == "offline")
    await opcua.start()
    await edge.wait_for(f"{t}/state/update", lambda p: p["state"] == "online", after=1)


async def test_opcua_security_without_certificates_is_a_config_error(
    edge: FakeEdge, start_mapper: MapperFactory
) -> None:
    """A security policy without client certificate files: state unknown, no connection tried."""
    start_mapper(*opcua_objects("opc.tcp://127.0.0.1:4840/", securityPolicy="Basic256Sha256"))
    await edge.wait_for("$hw/events/device/ua-1/state/update", lambda p: p["state"] == "unknown")


# ----------------------------------------------------------------------------- Modbus RTU


@pytest.fixture
def serial_pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two pseudo-terminals wired together by socat: a serial line in a test."""
    socat = shutil.which("socat")
    if socat is None:
        pytest.skip("socat is not installed (scripts/bootstrap.sh installs it)")
    a, b = tmp_path / "ttyA", tmp_path / "ttyB"
    proc = subprocess.Popen(
        [socat, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 5
    while not (a.exists() and b.exists()):
        assert time.monotonic() < deadline, "socat did not create the pty pair"
        time.sleep(0.01)  # readiness poll of a process we just started
    yield str(a), str(b)
    proc.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def rtu_objects(name: str, port: str, unit: int) -> tuple[dict[str, Any], dict[str, Any]]:
    return device_objects(
        name,
        "modbus",
        {
            "serialPort": port,
            "baudRate": 19200,
            "dataBits": 8,
            "parity": "none",
            "stopBits": 1,
            "slaveID": unit,
        },
        [
            {"name": "level", "type": "INT", "access": "ReadOnly",
             "visitor": {"register": "HoldingRegister", "offset": 0, "limit": 1}, "cycle": 200},
            {"name": "valve", "type": "INT",
             "visitor": {"register": "HoldingRegister", "offset": 1, "limit": 1}, "cycle": 200},
        ],
    )  # fmt: skip


async def test_modbus_rtu_over_a_serial_line(
    edge: FakeEdge, serial_pair: tuple[str, str], start_mapper: MapperFactory
) -> None:
    """KubeEdge's RTU configData reads and writes; two slaves on one line share the port."""
    device_port, mapper_port = serial_pair
    rtu = ModbusRtuDevice(device_port, units=2, holding=[123, 0])
    await rtu.start()
    try:
        start_mapper(*rtu_objects("rtu-1", mapper_port, 1), *rtu_objects("rtu-2", mapper_port, 2))
        for dev in ("rtu-1", "rtu-2"):
            await edge.wait_for(
                f"$hw/events/device/{dev}/twin/update", lambda p: actual(p, "level") == "123"
            )
        await edge.publish("$hw/events/device/rtu-2/twin/update/delta", delta({"valve": "42"}))
        await edge.wait_for(
            "$hw/events/device/rtu-2/twin/update", lambda p: actual(p, "valve") == "42"
        )
        report = await edge.wait_for("$hw/events/device/rtu-1/twin/update", after=3)
        assert actual(report, "valve") == "0"  # the other slave kept its register
    finally:
        await rtu.stop()
        await asyncio.sleep(0)
