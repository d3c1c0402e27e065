"""The upstream write rule: a node writes only its own Node, Lease, pods' and devices' status."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudhub.auth.nodeauth import check_upstream_write
from cloudhub.edgecontroller.binding import BindingIndex
from wire.errors import Forbidden


def _index() -> BindingIndex:
    index = BindingIndex()
    for node in ("edge-1", "edge-2"):
        index.upsert({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
        index.upsert(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"pod-{node}", "namespace": "default"},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
            }
        )
        index.upsert(
            {
                "apiVersion": "devices.kubeedge.io/v1beta1",
                "kind": "Device",
                "metadata": {"name": f"dev-{node}", "namespace": "default"},
                "spec": {"nodeName": node, "deviceModelRef": {"name": "m"}},
            }
        )
    return index


ALLOWED = [
    "null/node/edge-1",
    "null/nodestatus/edge-1",
    "kube-node-lease/lease/edge-1",
    "default/podstatus/pod-edge-1",
    "default/podpatch/pod-edge-1",
    "default/pod/pod-edge-1/status",
    "default/device/dev-edge-1/twin/edge_updated",
    "default/device/dev-edge-1/state/update",
    "null/certificatesigningrequest/edge-1",
]
REFUSED = [
    "null/node/edge-2",
    "null/nodestatus/edge-2",
    "kube-node-lease/lease/edge-2",
    "default/lease/edge-1",
    "default/podstatus/pod-edge-2",
    "default/pod/pod-edge-2",
    "default/podstatus/absent",
    "default/device/dev-edge-2/twin/edge_updated",
    "default/device/dev-edge-1",
    "null/certificatesigningrequest/edge-2",
    "default/configmap/anything",
    "default/secret/anything",
    "null/node/edge-1/extra",
    "",
    "//",
]


@pytest.mark.parametrize("resource", ALLOWED)
def test_own_resources_may_be_written(resource: str) -> None:
    """edge-1 may write its Node, Lease, its pods' and devices' status, its CSR."""
    check_upstream_write("edge-1", resource, _index().nodes_for)


@pytest.mark.parametrize("resource", REFUSED)
def test_everything_else_is_forbidden(resource: str) -> None:
    """Other nodes' objects, unbound objects and odd resource strings are refused."""
    with pytest.raises(Forbidden, match="may not write"):
        check_upstream_write("edge-1", resource, _index().nodes_for)


@given(resource=st.text(alphabet="abcdefgh-/null.", max_size=60))
def test_random_resources_never_grant_another_nodes_objects(resource: str) -> None:
    """Whatever the string, a node with nothing bound may write only its own names."""
    try:
        check_upstream_write("x", resource, lambda key: set())
    except Forbidden:
        return
    assert resource.split("/")[2] == "x"
