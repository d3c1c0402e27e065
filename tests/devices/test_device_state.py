"""The mapper's pure parts: config from KubeEdge objects, twin strings, and per-device decisions."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.config import DeviceConfig, Visitor, device_config
from devices.drivers.modbus import ModbusDriver
from devices.state import OFFLINE, ONLINE, DeviceState
from devices.values import format_value, parse, same
from wire import manifests
from wire.cycles import cycle_seconds
from wire.errors import ConfigError, PropertyError

# KubeEdge's v1beta1 sample (docs/proposals), applied unchanged
SAMPLE_MODEL: dict[str, Any] = {
    "apiVersion": "devices.kubeedge.io/v1beta1",
    "kind": "DeviceModel",
    "metadata": {"name": "beta1-model", "namespace": "default"},
    "spec": {
        "protocol": "modbus",
        "properties": [
            {
                "name": "temp",
                "description": "beta1-model",
                "type": "INT",
                "accessMode": "ReadWrite",
                "maximum": "100",
                "unit": "Celsius",
            }
        ],
    },
}
SAMPLE_DEVICE: dict[str, Any] = {
    "apiVersion": "devices.kubeedge.io/v1beta1",
    "kind": "Device",
    "metadata": {"name": "beta1-device"},
    "spec": {
        "deviceModelRef": {"name": "beta1-model"},
        "nodeName": "worker-node1",
        "properties": [
            {
                "name": "temp",
                "collectCycle": 2000,
                "reportCycle": 2000,
                "desired": {"value": "30"},
                "reportToCloud": True,
                "visitors": {
                    "protocolName": "modbus",
                    "configData": {
                        "register": "HoldingRegister",
                        "offset": 2,
                        "limit": 1,
                        "scale": 1,
                        "isSwap": True,
                        "isRegisterSwap": True,
                    },
                },
            }
        ],
        "protocol": {"protocolName": "modbus", "configData": {"ip": "172.17.0.3", "port": 1502}},
    },
}


def test_kubeedge_sample_parses() -> None:
    """KubeEdge's own v1beta1 Device + DeviceModel sample applies and becomes a config the
    mapper serves, with a Modbus driver that accepts its configData."""
    assert manifests.validate_all([SAMPLE_MODEL, SAMPLE_DEVICE])
    config = device_config(SAMPLE_DEVICE, SAMPLE_MODEL)
    ModbusDriver(config)
    assert (config.key, config.protocol) == ("default/beta1-device", "modbus")
    assert config.protocol_config == {"ip": "172.17.0.3", "port": 1502}
    (temp,) = config.properties
    assert (temp.name, temp.type, temp.writable) == ("temp", "INT", True)
    assert temp.collect_cycle == temp.report_cycle == 2.0
    assert temp.config["register"] == "HoldingRegister"


def test_nanosecond_cycles_are_understood() -> None:
    """Cycles of a million and up are nanoseconds (10000000000 is ten seconds), else ms."""
    assert cycle_seconds(2000) == 2.0
    assert cycle_seconds(10_000_000_000) == 10.0
    assert cycle_seconds(0) == 1.0


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d, m: d["spec"]["protocol"].pop("protocolName"), "protocolName is not set"),
        (lambda d, m: d["spec"]["properties"][0].update(name="nope"), "not in the DeviceModel"),
        (lambda d, m: m["spec"]["properties"][0].update(type="STREAM"), "not supported"),
        (lambda d, m: d["spec"]["properties"][0].update(collectCycle=-1), "collectCycle"),
    ],
)
def test_bad_objects_are_one_config_error_naming_the_device(mutate: Any, message: str) -> None:
    """Whatever is wrong comes back as one ConfigError naming the device and the field."""
    import copy

    device, model = copy.deepcopy(SAMPLE_DEVICE), copy.deepcopy(SAMPLE_MODEL)
    mutate(device, model)
    with pytest.raises(ConfigError, match=message) as err:
        device_config(device, model)
    assert "default/beta1-device" in str(err.value)


def test_missing_model_is_a_config_error() -> None:
    """A Device whose model the edge does not have cannot be served yet."""
    with pytest.raises(ConfigError, match="DeviceModel 'beta1-model' is not on this edge"):
        device_config(SAMPLE_DEVICE, None)


def test_values_print_as_the_type_holds_them() -> None:
    """FLOATs print at 32-bit precision, integral floats without a fraction, booleans as Go."""
    assert format_value("FLOAT", 0.10000000149011612) == "0.1"
    assert format_value("DOUBLE", 21.700000000000003) == "21.7"
    assert format_value("FLOAT", 20.0) == "20"
    assert format_value("BOOLEAN", True) == "true"
    assert parse("BOOLEAN", "True") is True
    assert parse("INT", "42") == 42
    assert same("FLOAT", 21.5, parse("FLOAT", "21.50"))
    with pytest.raises(PropertyError):
        parse("INT", "4.2")


@given(st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_float_strings_parse_back_to_the_same_float32(x: float) -> None:
    """What the mapper prints for a FLOAT parses back to the same 32-bit value."""
    import struct

    back = float(format_value("FLOAT", x))
    assert struct.pack(">f", back) == struct.pack(">f", x) or x == 0


def _state(*visitors: Visitor, now: float = 0.0) -> DeviceState:
    return DeviceState(DeviceConfig("d", "default", "virtual", {}, visitors), now=now)


TEMP = Visitor("temp", "FLOAT", writable=False, collect_cycle=1.0, report_cycle=2.0)
SET = Visitor("set", "INT", writable=True, collect_cycle=1.0, report_cycle=1.0)


def test_reads_and_reports_follow_their_cycles() -> None:
    """Each property is read every collect cycle and reported every report cycle, fixed rate."""
    s = _state(TEMP, SET)
    assert [v.name for v in s.due_reads(0.0)] == ["temp", "set"]
    s.on_read("temp", 20.5)
    s.on_read("set", 3)
    assert s.due_reports(0.5) == {}
    assert s.next_deadline() == 1.0
    assert [v.name for v in s.due_reads(1.0)] == ["temp", "set"]
    assert s.due_reports(1.0) == {"set": "3"}
    assert s.due_reports(2.0) == {"temp": "20.5", "set": "3"}
    # after a stall the cycle resumes from now instead of bursting
    assert len(s.due_reads(10.0)) == 2
    assert len(s.due_reports(10.0)) == 2
    assert s.next_deadline() == 11.0


def test_desired_is_written_once_then_enforced_on_drift() -> None:
    """A desired value becomes a pending write; after writing, drift on the device re-queues it."""
    s = _state(SET)
    s.due_reads(0.0)
    s.on_read("set", 3)
    assert s.on_desired({"set": "7"}) == []
    assert {n: v for n, (_, v) in s.pending_writes().items()} == {"set": 7}
    s.on_written("set", 0.1)
    assert s.pending_writes() == {}
    assert s.on_read("set", 7) == "7"
    assert s.pending_writes() == {}
    s.on_read("set", 12)  # changed at the device
    assert {n: v for n, (_, v) in s.pending_writes().items()} == {"set": 7}


def test_desired_value_spelling_is_reported_when_equal() -> None:
    """A read equal to the desired value is reported in the desired spelling ("21.50")."""
    s = _state(Visitor("sp", "FLOAT", writable=True))
    s.on_desired({"sp": "21.50"})
    assert s.on_read("sp", 21.5) == "21.50"


def test_refused_desired_values_say_why() -> None:
    """ReadOnly, unparsable and unknown properties are refused with reasons; no writes."""
    s = _state(TEMP, SET)
    refused = {r.name: r.reason for r in s.on_desired({"temp": "1", "set": "x", "ghost": "1"})}
    assert "ReadOnly" in refused["temp"]
    assert "not a valid INT" in refused["set"]
    assert "no such property" in refused["ghost"]
    assert s.pending_writes() == {}


def test_a_device_refusing_a_write_is_not_retried_until_a_new_desired() -> None:
    """After the device refuses a value, drift does not retry it; a new desired value does."""
    s = _state(SET)
    s.on_desired({"set": "9"})
    s.on_write_refused("set")
    s.on_read("set", 1)
    assert s.pending_writes() == {}
    s.on_desired({"set": "8"})
    assert "set" in s.pending_writes()


def test_whole_twin_clears_removed_desired_values() -> None:
    """The twin from twin/get replaces desired values: one that is gone is no longer enforced."""
    s = _state(SET)
    s.on_desired({"set": "9"})
    s.on_desired({}, whole=True)
    s.on_read("set", 1)
    assert s.pending_writes() == {} and s.desired() == {}


def test_health_changes_are_reported_once() -> None:
    """online on the first answer, offline on failure, and only changes are returned."""
    s = _state(SET)
    assert s.state == "unknown"
    assert s.on_reached() == ONLINE
    assert s.on_reached() is None
    assert s.on_unreachable() == OFFLINE
    assert s.on_unreachable() is None
    assert s.on_reached() == ONLINE


@pytest.mark.parametrize("spec", [True, [], {"properties": True}, {"properties": 1.5}, "x"])
def test_desired_check_ignores_malformed_specs(spec: Any) -> None:
    """The cloud's desired-value check leaves malformed specs to manifest validation."""
    from wire.devicemodel import desired_problems

    assert desired_problems({"spec": spec}, SAMPLE_MODEL) == []
