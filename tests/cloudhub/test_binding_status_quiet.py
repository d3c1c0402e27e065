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
