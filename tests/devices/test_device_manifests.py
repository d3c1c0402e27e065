"""The example thermostat manifests: valid, KubeEdge-shaped, and in step with the driver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devices.config import device_config
from devices.driver import Registry
from devices.drivers.virtual import VirtualDriver
from wire import manifests

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "devices"


def _load(name: str) -> dict[str, Any]:
    path = EXAMPLES / name
    objs = manifests.load(path.read_text(), source=str(path))
    assert len(objs) == 1
    return objs[0]


def test_examples_pass_manifest_validation() -> None:
    """wire.manifests loads and validates both example files as v1beta1 objects."""
    model = _load("thermostat-model.yaml")
    device = _load("thermostat-device.yaml")
    assert (model["kind"], device["kind"]) == ("DeviceModel", "Device")
    assert model["apiVersion"] == device["apiVersion"] == "devices.kubeedge.io/v1beta1"
    assert manifests.validate_all([model, device]) == [model, device]


def test_device_refers_to_the_model_on_edge_1() -> None:
    """The Device names the model, is bound to edge-1 and uses the virtual protocol."""
    model = _load("thermostat-model.yaml")
    spec = _load("thermostat-device.yaml")["spec"]
    assert spec["deviceModelRef"] == {"name": model["metadata"]["name"]}
    assert spec["nodeName"] == "edge-1"
    assert spec["protocol"]["protocolName"] == model["spec"]["protocol"] == "virtual"
    props = {p["name"]: p for p in spec["properties"]}
    assert props["setpoint"]["desired"] == {"value": "20", "metadata": {"type": "float"}}
    assert "desired" not in props["temperature"]  # ReadOnly: the twin refuses a desired value
    for prop in props.values():
        assert prop["reportToCloud"] is True
        assert prop["visitors"]["protocolName"] == "virtual"
        assert isinstance(prop["reportCycle"], int) and isinstance(prop["collectCycle"], int)


def test_model_and_device_parse_for_the_virtual_driver() -> None:
    """The pair parses into a DeviceConfig the virtual driver accepts, with the model's types."""
    config = device_config(_load("thermostat-device.yaml"), _load("thermostat-model.yaml"))
    assert config.protocol == "virtual"
    props = {v.name: v for v in config.properties}
    assert props["temperature"].type == props["setpoint"].type == "FLOAT"
    assert props["setpoint"].writable and not props["temperature"].writable
    assert props["temperature"].collect_cycle == 1.0
    VirtualDriver(config)


@pytest.mark.parametrize(
    ("model_file", "device_file"),
    [
        ("modbus-model.yaml", "modbus-device.yaml"),
        ("modbus-model.yaml", "modbus-rtu-device.yaml"),
        ("opcua-model.yaml", "opcua-device.yaml"),
        ("thermostat-model.yaml", "thermostat-device.yaml"),
    ],
)
def test_every_example_validates_and_builds_its_driver(model_file: str, device_file: str) -> None:
    """Each example pair passes manifest validation and its driver accepts the configData."""
    model, device = _load(model_file), _load(device_file)
    assert manifests.validate_all([model, device]) == [model, device]
    config = device_config(device, model)
    driver = Registry(load_entry_points=False).create(config)
    assert {v.name for v in config.properties} <= {p["name"] for p in model["spec"]["properties"]}
    assert driver is not None
