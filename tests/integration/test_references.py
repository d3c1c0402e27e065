"""Objects that name each other, as an operator meets them with edgectl."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.procs import Cloud

pytestmark = pytest.mark.timeout(60)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "devices"
MODEL = str(EXAMPLES / "thermostat-model.yaml")
DEVICE = str(EXAMPLES / "thermostat-device.yaml")


def test_device_before_its_model_and_node_is_applied_with_warning_lines(cloud: Cloud) -> None:
    """`edgectl apply` of a Device whose model and node do not exist yet succeeds and prints
    one warning line for each on stderr."""
    res = cloud.run_edgectl("apply", "-f", DEVICE)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "device/thermostat-1 created"
    assert res.stderr.splitlines() == [
        "Warning: device default/thermostat-1 refers to node edge-1, which does not exist: "
        "nothing runs or reports there until it exists",
        "Warning: device default/thermostat-1 refers to devicemodel default/thermostat-model, "
        "which does not exist: the edge cannot check its values until it exists",
    ]


def test_deleting_a_model_in_use_is_refused_naming_the_device(cloud: Cloud) -> None:
    """`edgectl delete devicemodel` of a model a Device uses exits 1 with one line naming
    the Device; the model is still there; after the Device is deleted it goes."""
    cloud.edgectl("apply", "-f", MODEL, "-f", DEVICE)
    res = cloud.run_edgectl("delete", "devicemodel", "thermostat-model")
    assert res.returncode == 1
    assert res.stderr.splitlines() == [
        "edgectl: devicemodel default/thermostat-model is used by device "
        "default/thermostat-1: delete those or change their deviceModelRef first"
    ]
    assert cloud.get_json("devicemodels", "thermostat-model")["metadata"]["name"]
    cloud.edgectl("delete", "device", "thermostat-1")
    res = cloud.run_edgectl("delete", "devicemodel", "thermostat-model")
    assert res.returncode == 0, res.stderr
