"""A status write is not echoed to the edge that made it, also when the cluster stamps it."""

from __future__ import annotations

import copy
from typing import Any

from cloudhub.edgecontroller.binding import BindingIndex


def _pod(rv: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "resourceVersion": rv,
            "labels": {"app": "web"},
            "managedFields": [{"manager": "kubectl", "time": "2026-01-01T00:00:00Z"}],
        },
        "spec": {"nodeName": "edge-1", "containers": [{"name": "app", "image": "busybox"}]},
        "status": {"phase": "Pending"},
    }


def test_status_write_stamped_by_the_api_server_is_quiet_and_a_label_is_not() -> None:
    """New status, resourceVersion and managedFields time: no change; a new label: one."""
    idx = BindingIndex()
    assert idx.upsert(_pod("1"))
    reported = _pod("2")
    reported["status"] = {"phase": "Running"}
    reported["metadata"]["managedFields"].append(
        {"manager": "edgebridge-cloudhub", "subresource": "status", "time": "2026-01-01T00:01:00Z"}
    )
    assert idx.upsert(reported) == []
    labelled = copy.deepcopy(reported)
    labelled["metadata"]["resourceVersion"] = "3"
    labelled["metadata"]["labels"]["tier"] = "front"
    [change] = idx.upsert(labelled)
    assert (change.node, change.key, change.resource_version) == ("edge-1", "default/pod/web", "3")
    gone = copy.deepcopy(labelled)
    gone["metadata"]["resourceVersion"] = "4"
    del gone["metadata"]["labels"]
    assert len(idx.upsert(gone)) == 1  # a removed key counts as a change too


def _device(rv: str, generation: int, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {
            "name": "thermo",
            "namespace": "default",
            "resourceVersion": rv,
            "generation": generation,
        },
        "spec": {"nodeName": "edge-1", "deviceModelRef": {"name": "m"}, **spec},
        "status": {"twins": []},
    }


def test_a_device_report_at_the_same_generation_is_quiet_and_a_spec_change_is_not() -> None:
    """A twin report (new status and version, same generation): no change; a new desired
    value (the store bumps the generation): one change for the device's node."""
    idx = BindingIndex()
    assert idx.upsert(_device("1", 1, properties=[{"name": "t", "desired": "20"}]))
    reported = _device("2", 1, properties=[{"name": "t", "desired": "20"}])
    reported["status"] = {"twins": [{"propertyName": "t", "reported": {"value": "21"}}]}
    assert idx.upsert(reported) == []
    desired = _device("3", 2, properties=[{"name": "t", "desired": "22"}])
    [change] = idx.upsert(desired)
    assert (change.node, change.key, change.resource_version) == (
        "edge-1",
        "default/device/thermo",
        "3",
    )
