"""The mapper against a real pymodbus TCP server and a real mosquitto, the test playing the edge."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.fielddevices import ModbusDevice, device_objects
from tests.support.procs import wait_until
from wire.twin import TwinUpdateIn

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Callable

    from tests.devices.conftest import Broker, FakeEdge, MapperFactory

    ConnectEdge = Callable[[int], contextlib.AbstractAsyncContextManager[FakeEdge]]

pytestmark = pytest.mark.timeout(30)

T = "$hw/events/device/plc-1"


@pytest.fixture
async def plc() -> AsyncIterator[ModbusDevice]:
    dev = ModbusDevice(holding=[215, 0, 0x41AC, 0x0000])
    await dev.start()
    yield dev
    await dev.stop()


def plc_objects(port: int, **extra: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    return device_objects(
        "plc-1",
        "modbus",
        {"ip": "127.0.0.1", "port": port, **extra},
        [
            {
                "name": "temperature",
                "type": "FLOAT",
                "access": "ReadOnly",
                "visitor": {"register": "HoldingRegister", "offset": 0, "limit": 1, "scale": 0.1},
            },
            {
                "name": "setpoint",
                "type": "INT",
                "visitor": {"register": "HoldingRegister", "offset": 1, "limit": 1},
            },
            {
                "name": "level",
                "type": "FLOAT",
                "access": "ReadOnly",
                "visitor": {"register": "HoldingRegister", "offset": 2, "limit": 2},
            },
            {
                "name": "pump",
                "type": "BOOLEAN",
                "visitor": {"register": "CoilRegister", "offset": 3, "limit": 1},
            },
        ],
    )


def add_register(model: dict[str, Any], device: dict[str, Any], name: str, **config: Any) -> None:
    """One more read-only INT property, read every 100 ms as ``config`` says (register...)."""
    model["spec"]["properties"].append({"name": name, "type": "INT", "accessMode": "ReadOnly"})
    device["spec"]["properties"].append(
        {
            "name": name,
            "collectCycle": 100,
            "reportCycle": 100,
            "visitors": {"configData": config},
        }
    )


def actual(payload: Any, prop: str) -> str | None:
    entry = payload.get("twin", {}).get(prop) if isinstance(payload, dict) else None
    return entry["actual"]["value"] if entry and "actual" in entry else None


def delta(props: dict[str, str]) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "timestamp": int(time.time() * 1000), "delta": props}


async def test_registers_are_reported_typed_and_scaled(
    edge: FakeEdge, plc: ModbusDevice, start_mapper: MapperFactory
) -> None:
    """Each property is reported with its model type: scale on a register, float32, a coil."""
    start_mapper(*plc_objects(plc.port))
    await edge.wait_for(f"{T}/state/update", lambda p: p["state"] == "online")
    report = await edge.wait_for(f"{T}/twin/update", lambda p: "level" in p["twin"])
    assert actual(report, "temperature") == "21.5"
    assert actual(report, "setpoint") == "0"
    assert actual(report, "level") == "21.5"  # 0x41AC0000 as a big-endian float32
    assert actual(report, "pump") == "false"
    assert report["twin"]["temperature"]["metadata"] == {"type": "float"}
    assert report["twin"]["pump"]["metadata"] == {"type": "boolean"}
    # the device changes: the next cycles report it
    await plc.poke(0, [-40 & 0xFFFF])
    await edge.wait_for(f"{T}/twin/update", lambda p: actual(p, "temperature") == "-4")


async def test_delta_writes_the_register_and_the_value_is_reported(
    edge: FakeEdge, plc: ModbusDevice, start_mapper: MapperFactory
) -> None:
    """A delta for a ReadWrite property writes the register and the coil; reports follow."""
    start_mapper(*plc_objects(plc.port))
    await edge.wait_for(f"{T}/twin/update")
    await edge.publish(f"{T}/twin/update/delta", delta({"setpoint": "77", "pump": "true"}))
    await wait_until(lambda: plc.peek(1), timeout=5)
    await wait_until(lambda: _eq(plc.peek(1), [77]), timeout=5)
    assert await plc.coil(3) is True
    await edge.wait_for(
        f"{T}/twin/update", lambda p: actual(p, "setpoint") == "77" and actual(p, "pump") == "true"
    )


async def _eq(coro: Any, want: Any) -> bool:
    return bool(await coro == want)


async def test_drift_on_the_device_is_written_back(
    edge: FakeEdge, plc: ModbusDevice, start_mapper: MapperFactory
) -> None:
    """Desired is enforced: a register changed at the device is reported, then set back."""
    start_mapper(*plc_objects(plc.port))
    await edge.wait_for(f"{T}/twin/get")
    await edge.publish(
        f"{T}/twin/get/result",
        {
            "event_id": "g",
            "timestamp": 1,
            "twin": {"setpoint": {"expected": {"value": "60"}, "actual": {"value": "0"}}},
        },
    )
    await wait_until(lambda: _eq(plc.peek(1), [60]), timeout=5)
    await plc.poke(1, [12])  # someone turns the knob on the device
    await wait_until(lambda: _eq(plc.peek(1), [60]), timeout=5)
    await edge.wait_for(f"{T}/twin/update", lambda p: actual(p, "setpoint") == "60")


async def test_bad_values_and_read_only_properties_are_refused(
    edge: FakeEdge,
    plc: ModbusDevice,
    start_mapper: MapperFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A value that does not fit the register, and a ReadOnly property, are logged, not written."""
    caplog.set_level(logging.WARNING, logger="devices")
    start_mapper(*plc_objects(plc.port))
    await edge.wait_for(f"{T}/twin/update")
    await edge.publish(f"{T}/twin/update/delta", delta({"setpoint": "70000", "temperature": "5"}))
    await wait_until(lambda: "does not fit" in caplog.text and "ReadOnly" in caplog.text)
    assert await plc.peek(0, 2) == [215, 0]
    state = await edge.wait_for(f"{T}/state/update", lambda p: "70000" in p.get("reason", ""))
    assert "desired setpoint=70000 refused" in state["reason"]
    # a value that fits clears the complaint
    await edge.publish(f"{T}/twin/update/delta", delta({"setpoint": "7"}))
    await edge.wait_for(
        f"{T}/state/update", lambda p: p["state"] == "online" and "reason" not in p, after=1
    )


async def test_device_off_goes_offline_and_comes_back_online(
    edge: FakeEdge, plc: ModbusDevice, start_mapper: MapperFactory
) -> None:
    """A device that stops answering is offline within three cycles and online by itself after."""
    start_mapper(*plc_objects(plc.port))
    await edge.wait_for(f"{T}/twin/update")
    await plc.stop()
    stopped = time.monotonic()
    offline = await edge.wait_for(f"{T}/state/update", lambda p: p["state"] == "offline")
    assert time.monotonic() - stopped < 3 * 0.1 + 1.0  # 100 ms cycles, plus scheduling slack
    assert f"127.0.0.1:{plc.port}" in offline["reason"]
    seen = len(edge.on(f"{T}/twin/update"))
    await plc.start()
    await edge.wait_for(f"{T}/state/update", lambda p: p["state"] == "online", after=1)
    await edge.wait_for(f"{T}/twin/update", after=seen)


async def test_a_failing_property_does_not_stop_the_others(
    edge: FakeEdge, plc: ModbusDevice, start_mapper: MapperFactory
) -> None:
    """A register the device refuses (past its table) is skipped; the others keep reporting."""
    model, device = plc_objects(plc.port)
    add_register(model, device, "ghost", register="HoldingRegister", offset=500)
    start_mapper(model, device)
    await edge.wait_for(f"{T}/twin/update", lambda p: "temperature" in p["twin"], after=3)
    assert all("ghost" not in p["twin"] for p in edge.on(f"{T}/twin/update"))
    # the device is online, and its state says which property fails and why
    state = await edge.wait_for(f"{T}/state/update", lambda p: "ghost" in p.get("reason", ""))
    assert state["state"] == "online" and "reading ghost failed" in state["reason"]


async def test_a_refused_shared_read_falls_back_to_one_read_per_property(
    edge: FakeEdge, plc: ModbusDevice, start_mapper: MapperFactory
) -> None:
    """A bad address next to good ones fails only its own property, not its neighbours."""
    model, device = plc_objects(plc.port)
    # the table ends at 99: reading 99..100 is refused, and shares a request with 98
    add_register(model, device, "edge", register="HoldingRegister", offset=99, limit=2)
    add_register(model, device, "near", register="HoldingRegister", offset=97)
    start_mapper(model, device)
    report = await edge.wait_for(f"{T}/twin/update", lambda p: "near" in p["twin"])
    assert actual(report, "near") == "0" and "edge" not in report["twin"]


async def test_bad_config_is_reported_unknown_and_others_are_served(
    edge: FakeEdge,
    plc: ModbusDevice,
    start_mapper: MapperFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unknown register type or protocol: one log line, state unknown; good devices go on."""
    caplog.set_level(logging.WARNING, logger="devices")
    bad_model, bad = device_objects(
        "bad-1",
        "modbus",
        {"ip": "127.0.0.1", "port": plc.port},
        [{"name": "x", "type": "INT", "visitor": {"register": "SoftRegister", "offset": 0}}],
    )
    alien_model, alien = device_objects("alien-1", "zigbee", {}, [])
    run = start_mapper(*plc_objects(plc.port), bad_model, bad, alien_model, alien)
    state = "$hw/events/device/{}/state/update"
    bad_state = await edge.wait_for(state.format("bad-1"), lambda p: p["state"] == "unknown")
    assert "property x" in bad_state["reason"] and "register" in bad_state["reason"]
    alien_state = await edge.wait_for(state.format("alien-1"), lambda p: p["state"] == "unknown")
    assert "no driver for protocol 'zigbee'" in alien_state["reason"]
    await edge.wait_for(f"{T}/twin/update")
    assert "SoftRegister" in caplog.text or "register" in caplog.text
    assert "no driver for protocol 'zigbee'" in caplog.text
    # fixing the manifest serves the device
    bad["spec"]["properties"][0]["visitors"]["configData"]["register"] = "HoldingRegister"
    run.serve(bad)
    await edge.wait_for("$hw/events/device/bad-1/twin/update")


async def test_unreachable_address_is_offline_not_fatal(
    edge: FakeEdge, plc: ModbusDevice, start_mapper: MapperFactory
) -> None:
    """A device at an address nobody answers on is offline; the other device is served."""
    from tests.support.procs import free_port

    model, device = device_objects(
        "far-1",
        "modbus",
        {"ip": "127.0.0.1", "port": free_port()},
        [{"name": "x", "type": "INT", "visitor": {"register": "HoldingRegister", "offset": 0}}],
    )
    start_mapper(*plc_objects(plc.port), model, device)
    await edge.wait_for("$hw/events/device/far-1/state/update", lambda p: p["state"] == "offline")
    await edge.wait_for(f"{T}/twin/update")


async def test_deleted_device_goes_offline_and_is_no_longer_read(
    edge: FakeEdge, plc: ModbusDevice, start_mapper: MapperFactory
) -> None:
    """Deleting the Device stops serving it, with a last ``offline``."""
    run = start_mapper(*plc_objects(plc.port))
    await edge.wait_for(f"{T}/twin/update")
    run.source.delete("Device", "default/plc-1")
    await edge.wait_for(f"{T}/state/update", lambda p: p["state"] == "offline")
    await wait_until(lambda: not run.mapper.workers)


async def test_a_stopped_mapper_says_offline_for_its_devices(
    edge: FakeEdge, plc: ModbusDevice, start_mapper: MapperFactory
) -> None:
    """A clean stop (SIGTERM) publishes ``offline`` for every served device before leaving."""
    run = start_mapper(*plc_objects(plc.port))
    await edge.wait_for(f"{T}/twin/update")
    run.mapper.stop()
    await run.task
    state = await edge.wait_for(f"{T}/state/update", lambda p: p["state"] == "offline")
    assert state["reason"] == "the mapper stopped"


async def test_broker_restart_reconnects_and_resubscribes(
    broker: Broker,
    connect_edge: ConnectEdge,
    plc: ModbusDevice,
    start_mapper: MapperFactory,
) -> None:
    """After mosquitto restarts the mapper says online, asks for its twin, reports and still
    takes deltas; reports are the edge's own TwinUpdateIn shape."""
    start_mapper(*plc_objects(plc.port))
    async with connect_edge(broker.port) as edge:
        report = await edge.wait_for(f"{T}/twin/update")
        TwinUpdateIn.model_validate(report)
    broker.stop()
    broker.start()
    async with connect_edge(broker.port) as edge:
        await edge.wait_for(f"{T}/state/update", lambda p: p["state"] == "online")
        await edge.wait_for(f"{T}/twin/get")
        await edge.wait_for(f"{T}/twin/update")
        await edge.publish(f"{T}/twin/update/delta", delta({"setpoint": "31"}))
        await wait_until(lambda: _eq(plc.peek(1), [31]), timeout=5)
