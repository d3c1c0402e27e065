"""The example thermostat manifests: valid, KubeEdge-shaped, and in step with the driver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devices.drivers.virtual import VirtualThermostat
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


def test_model_matches_the_virtual_driver() -> None:
    """Every model property has the driver's name, type, access mode and range, and no more."""
    model_props = {p["name"]: p for p in _load("thermostat-model.yaml")["spec"]["properties"]}
    driver_props = {p.name: p for p in VirtualThermostat().properties()}
    assert set(model_props) == set(driver_props)
    for name, spec in driver_props.items():
        prop = model_props[name]
        assert prop["type"] == spec.type.upper()
        assert prop["accessMode"] == ("ReadWrite" if spec.writable else "ReadOnly")
        # KubeEdge v1beta1 keeps minimum/maximum as strings.
        assert float(prop["minimum"]) == spec.minimum
        assert float(prop["maximum"]) == spec.maximum
        assert prop["unit"] == spec.unit
