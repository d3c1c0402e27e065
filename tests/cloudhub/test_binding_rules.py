"""BindingIndex: each rule deciding what reaches a node, one behaviour per test."""

from __future__ import annotations

from typing import Any

import pytest

from cloudhub.edgecontroller.binding import BindingIndex, Change
from wire.errors import InvalidResource


def node(name: str, rv: str = "1") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "resourceVersion": rv}}


def pod(
    name: str,
    node_name: str | None,
    *,
    ns: str = "default",
    rv: str = "1",
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}], **spec}
    if node_name is not None:
        body["nodeName"] = node_name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": rv},
        "spec": body,
    }


def cm_volume(*names: str) -> dict[str, Any]:
    return {"volumes": [{"name": f"v-{n}", "configMap": {"name": n}} for n in names]}


def configmap(name: str, *, ns: str = "default", rv: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": rv},
        "data": {"k": rv},
    }


def secret(name: str, *, ns: str = "default", rv: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": rv},
        "data": {"k": "eA=="},
    }


def device(name: str, node_name: str | None, model: str, rv: str = "1") -> dict[str, Any]:
    spec: dict[str, Any] = {"deviceModelRef": {"name": model}}
    if node_name is not None:
        spec["nodeName"] = node_name
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": rv},
        "spec": spec,
    }


def model(name: str, rv: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": rv},
        "spec": {"properties": [{"name": "t", "type": "INT"}]},
    }


def summary(changes: list[Change]) -> set[tuple[str, str, str | None]]:
    return {(c.node, c.key, c.resource_version) for c in changes}


def test_node_gets_its_own_node_object_only() -> None:
    """A Node object is bound to the node of that name and no other."""
    idx = BindingIndex()
    changes = idx.upsert(node("edge-1"))
    assert summary(changes) == {("edge-1", "null/node/edge-1", "1")}
    assert idx.nodes_for("null/node/edge-1") == {"edge-1"}
    assert idx.desired("edge-2") == {}


def test_pod_is_bound_by_node_name() -> None:
    """A pod reaches the node in its spec.nodeName, and an unscheduled pod reaches none."""
    idx = BindingIndex()
    assert summary(idx.upsert(pod("p1", "edge-1"))) == {("edge-1", "default/pod/p1", "1")}
    assert idx.upsert(pod("p2", None)) == []
    assert idx.get("default/pod/p2") is not None
    assert set(idx.desired("edge-1")) == {"default/pod/p1"}


@pytest.mark.parametrize(
    ("spec", "ref"),
    [
        (cm_volume("x"), "default/configmap/x"),
        ({"volumes": [{"name": "v", "secret": {"secretName": "x"}}]}, "default/secret/x"),
        (
            {"volumes": [{"name": "v", "projected": {"sources": [{"configMap": {"name": "x"}}]}}]},
            "default/configmap/x",
        ),
        (
            {"volumes": [{"name": "v", "projected": {"sources": [{"secret": {"name": "x"}}]}}]},
            "default/secret/x",
        ),
        ({"imagePullSecrets": [{"name": "x"}]}, "default/secret/x"),
        (
            {
                "containers": [
                    {
                        "name": "c",
                        "image": "i",
                        "env": [{"name": "E", "valueFrom": {"configMapKeyRef": {"name": "x"}}}],
                    }
                ]
            },
            "default/configmap/x",
        ),
        (
            {
                "containers": [
                    {
                        "name": "c",
                        "image": "i",
                        "env": [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "x"}}}],
                    }
                ]
            },
            "default/secret/x",
        ),
        (
            {
                "containers": [
                    {"name": "c", "image": "i", "envFrom": [{"configMapRef": {"name": "x"}}]}
                ]
            },
            "default/configmap/x",
        ),
        (
            {
                "containers": [
                    {"name": "c", "image": "i", "envFrom": [{"secretRef": {"name": "x"}}]}
                ]
            },
            "default/secret/x",
        ),
        (
            {
                "initContainers": [
                    {"name": "i", "image": "i", "envFrom": [{"configMapRef": {"name": "x"}}]}
                ]
            },
            "default/configmap/x",
        ),
    ],
    ids=[
        "volume-configmap",
        "volume-secret",
        "projected-configmap",
        "projected-secret",
        "image-pull-secret",
        "env-configmap-key",
        "env-secret-key",
        "envfrom-configmap",
        "envfrom-secret",
        "init-container-envfrom",
    ],
)
def test_every_reference_path_binds_the_referenced_object(spec: dict[str, Any], ref: str) -> None:
    """Each way a pod can reference a ConfigMap or Secret brings it to the pod's node."""
    idx = BindingIndex()
    idx.upsert(pod("p", "edge-1", **spec))
    target = configmap("x") if "/configmap/" in ref else secret("x")
    assert summary(idx.upsert(target)) == {("edge-1", ref, "1")}
    assert idx.nodes_for(ref) == {"edge-1"}


def test_references_stay_in_the_pods_namespace() -> None:
    """A pod in namespace a gets a/configmap/x, never default/configmap/x."""
    idx = BindingIndex()
    idx.upsert(configmap("x", ns="default"))
    idx.upsert(configmap("x", ns="a"))
    changes = idx.upsert(pod("p", "edge-1", ns="a", **cm_volume("x")))
    assert summary(changes) == {
        ("edge-1", "a/configmap/x", "1"),
        ("edge-1", "a/pod/p", "1"),
    }
    assert idx.nodes_for("default/configmap/x") == set()


def test_configmap_arrives_before_the_pod_that_uses_it() -> None:
    """In one batch of changes a node gets the pod's references before the pod itself."""
    idx = BindingIndex()
    idx.upsert(configmap("x"))
    changes = idx.upsert(pod("p", "edge-1", **cm_volume("x")))
    assert [c.key for c in changes] == ["default/configmap/x", "default/pod/p"]


def test_missing_reference_reaches_the_node_when_created() -> None:
    """A ConfigMap that did not exist when the pod was bound is sent as soon as it is created."""
    idx = BindingIndex()
    assert summary(idx.upsert(pod("p", "edge-1", **cm_volume("later")))) == {
        ("edge-1", "default/pod/p", "1")
    }
    assert summary(idx.upsert(configmap("later"))) == {("edge-1", "default/configmap/later", "1")}


def test_unreferenced_configmap_reaches_no_node() -> None:
    """A ConfigMap no bound pod uses goes nowhere."""
    idx = BindingIndex()
    idx.upsert(pod("p", "edge-1"))
    assert idx.upsert(configmap("lonely")) == []


def test_editing_a_configmap_emits_one_change_per_node_using_it() -> None:
    """A ConfigMap shared by pods on three nodes (two pods on one) is re-sent once per node."""
    idx = BindingIndex()
    idx.upsert(configmap("shared"))
    for i, n in enumerate(["edge-1", "edge-1", "edge-2", "edge-3"]):
        idx.upsert(pod(f"p{i}", n, **cm_volume("shared")))
    changes = idx.upsert(configmap("shared", rv="2"))
    assert sorted(c.node for c in changes) == ["edge-1", "edge-2", "edge-3"]
    assert all(c.resource_version == "2" for c in changes)


def test_identical_upsert_emits_nothing() -> None:
    """Seeing the same object again (a re-list) changes nothing on any node."""
    idx = BindingIndex()
    idx.upsert(configmap("x"))
    idx.upsert(pod("p", "edge-1", **cm_volume("x")))
    assert idx.upsert(pod("p", "edge-1", **cm_volume("x"))) == []
    assert idx.upsert(configmap("x")) == []


def test_moving_a_pod_moves_it_and_its_references() -> None:
    """A pod moved to another node is removed from the old one with its orphaned ConfigMap."""
    idx = BindingIndex()
    idx.upsert(configmap("x"))
    idx.upsert(pod("p", "edge-1", **cm_volume("x")))
    changes = idx.upsert(pod("p", "edge-2", rv="2", **cm_volume("x")))
    assert summary(changes) == {
        ("edge-1", "default/pod/p", None),
        ("edge-1", "default/configmap/x", None),
        ("edge-2", "default/configmap/x", "1"),
        ("edge-2", "default/pod/p", "2"),
    }
    assert idx.desired("edge-1") == {}
    assert set(idx.desired("edge-2")) == {"default/pod/p", "default/configmap/x"}


def test_moving_one_of_two_users_keeps_the_shared_reference() -> None:
    """A ConfigMap still used by another pod on the old node stays there."""
    idx = BindingIndex()
    idx.upsert(configmap("x"))
    idx.upsert(pod("a", "edge-1", **cm_volume("x")))
    idx.upsert(pod("b", "edge-1", **cm_volume("x")))
    changes = idx.upsert(pod("a", "edge-2", rv="2", **cm_volume("x")))
    assert ("edge-1", "default/configmap/x", None) not in summary(changes)
    assert idx.nodes_for("default/configmap/x") == {"edge-1", "edge-2"}


def test_deleting_pods_removes_a_shared_reference_with_the_last_user() -> None:
    """Reference counting: the ConfigMap leaves the node only when both pods are gone."""
    idx = BindingIndex()
    idx.upsert(configmap("x"))
    idx.upsert(pod("a", "edge-1", **cm_volume("x")))
    idx.upsert(pod("b", "edge-1", **cm_volume("x")))
    assert summary(idx.delete(pod("a", "edge-1", rv="5"))) == {("edge-1", "default/pod/a", None)}
    assert summary(idx.delete(pod("b", "edge-1", rv="6"))) == {
        ("edge-1", "default/pod/b", None),
        ("edge-1", "default/configmap/x", None),
    }
    assert idx.desired("edge-1") == {}


def test_reference_used_on_two_nodes_leaves_only_the_emptied_node() -> None:
    """Counts are per node: deleting the last user on one node keeps the object on the other."""
    idx = BindingIndex()
    idx.upsert(configmap("x"))
    idx.upsert(pod("a", "edge-1", **cm_volume("x")))
    idx.upsert(pod("b", "edge-2", **cm_volume("x")))
    assert summary(idx.delete(pod("a", "edge-1"))) == {
        ("edge-1", "default/pod/a", None),
        ("edge-1", "default/configmap/x", None),
    }
    assert idx.nodes_for("default/configmap/x") == {"edge-2"}


def test_removal_carries_the_last_known_object() -> None:
    """A removal Change holds the deleted object as the delete event reported it."""
    idx = BindingIndex()
    idx.upsert(pod("p", "edge-1"))
    gone = pod("p", "edge-1", rv="9")
    (change,) = idx.delete(gone)
    assert change.removed and change.obj is gone


def test_dropping_a_reference_from_a_pod_removes_it_from_the_node() -> None:
    """Editing a pod so it no longer uses a ConfigMap removes that ConfigMap from its node."""
    idx = BindingIndex()
    idx.upsert(configmap("x"))
    idx.upsert(configmap("y"))
    idx.upsert(pod("p", "edge-1", **cm_volume("x", "y")))
    changes = idx.upsert(pod("p", "edge-1", rv="2", **cm_volume("y")))
    assert summary(changes) == {
        ("edge-1", "default/configmap/x", None),
        ("edge-1", "default/pod/p", "2"),
    }


def test_deleting_a_configmap_removes_it_and_recreating_sends_it_again() -> None:
    """A used ConfigMap deleted and recreated leaves and comes back to the nodes using it."""
    idx = BindingIndex()
    idx.upsert(configmap("x"))
    idx.upsert(pod("p", "edge-1", **cm_volume("x")))
    assert summary(idx.delete(configmap("x", rv="2"))) == {("edge-1", "default/configmap/x", None)}
    assert summary(idx.upsert(configmap("x", rv="3"))) == {("edge-1", "default/configmap/x", "3")}


def test_unscheduling_a_pod_removes_it() -> None:
    """A pod whose nodeName is cleared leaves its node along with its references."""
    idx = BindingIndex()
    idx.upsert(secret("s"))
    idx.upsert(pod("p", "edge-1", imagePullSecrets=[{"name": "s"}]))
    assert summary(idx.upsert(pod("p", None, rv="2", imagePullSecrets=[{"name": "s"}]))) == {
        ("edge-1", "default/pod/p", None),
        ("edge-1", "default/secret/s", None),
    }


def test_device_and_its_model_reach_the_devices_node() -> None:
    """A device goes to its spec.nodeName and brings its DeviceModel along."""
    idx = BindingIndex()
    idx.upsert(model("m"))
    assert summary(idx.upsert(device("d", "edge-1", "m"))) == {
        ("edge-1", "default/devicemodel/m", "1"),
        ("edge-1", "default/device/d", "1"),
    }
    changes = idx.upsert(device("d", "edge-2", "m", rv="2"))
    assert summary(changes) == {
        ("edge-1", "default/device/d", None),
        ("edge-1", "default/devicemodel/m", None),
        ("edge-2", "default/devicemodel/m", "1"),
        ("edge-2", "default/device/d", "2"),
    }


def test_unbound_device_reaches_no_node() -> None:
    """A device without nodeName goes nowhere and neither does its model."""
    idx = BindingIndex()
    idx.upsert(model("m"))
    assert idx.upsert(device("d", None, "m")) == []


def test_deleting_an_unknown_object_changes_nothing() -> None:
    """Deleting something never seen is a no-op."""
    assert BindingIndex().delete(pod("ghost", "edge-1")) == []


def test_keys_lists_known_objects_of_a_type() -> None:
    """keys(type) names every object of that type seen and not deleted, bound or not."""
    idx = BindingIndex()
    idx.upsert(pod("a", "edge-1"))
    idx.upsert(pod("b", None))
    idx.upsert(configmap("c"))
    idx.delete(pod("a", "edge-1"))
    assert idx.keys("pod") == {"default/pod/b"}
    assert idx.keys("configmap") == {"default/configmap/c"}


def test_desired_reports_resource_versions() -> None:
    """desired(node) maps each key to its current resourceVersion and object."""
    idx = BindingIndex()
    n = node("edge-1", rv="7")
    idx.upsert(n)
    assert idx.desired("edge-1") == {"null/node/edge-1": ("7", n)}


def test_malformed_references_are_ignored() -> None:
    """Oddly typed reference fields (from an unvalidated cluster) are not references."""
    idx = BindingIndex()
    weird = pod(
        "p",
        "edge-1",
        volumes=[{"configMap": "x"}, "junk", {"secret": {"secretName": 3}}],
        imagePullSecrets="nope",
    )
    assert summary(idx.upsert(weird)) == {("edge-1", "default/pod/p", "1")}


@pytest.mark.parametrize(
    "other_entries",
    [
        [{"name": "A", "value": "1"}] * 5,
        ["junk", None, [1], {"name": "B", "valueFrom": None}, {"name": "C", "value": "2"}],
    ],
)
def test_an_env_reference_among_values_and_junk_is_found(other_entries: list[Any]) -> None:
    """One env entry taking a Secret, among plain values or malformed entries, binds it."""
    idx = BindingIndex()
    idx.upsert(secret("s"))
    env = [*other_entries, {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s"}}}]
    using = [{"name": "c", "image": "busybox", "env": env}]
    assert summary(idx.upsert(pod("p", "edge-1", containers=using))) == {
        ("edge-1", "default/secret/s", "1"),
        ("edge-1", "default/pod/p", "1"),
    }
    # The same pod, its env edited (no generation, as Kubernetes pods): the Secret leaves.
    not_using = [{"name": "c", "image": "busybox", "env": other_entries}]
    assert summary(idx.upsert(pod("p", "edge-1", rv="2", containers=not_using))) == {
        ("edge-1", "default/secret/s", None),
        ("edge-1", "default/pod/p", "2"),
    }


def test_unknown_kind_is_refused() -> None:
    """Objects of kinds edgebridge does not mirror raise InvalidResource."""
    with pytest.raises(InvalidResource):
        BindingIndex().upsert({"kind": "Service", "metadata": {"name": "s"}})


def test_large_fleet_updates_touch_only_what_changed() -> None:
    """With 2,000 nodes and 20,000 pods, moving a pod emits only its own few changes."""
    idx = BindingIndex()
    for i in range(20_000):
        idx.upsert(pod(f"p{i}", f"n{i % 2000}", **cm_volume("shared", f"c{i % 50}")))
    changes = idx.upsert(pod("p0", "n1", rv="2", **cm_volume("shared", "c0")))
    # p0 leaves n0 (other pods on n0 still use both configmaps); they don't exist anyway.
    assert summary(changes) == {("n0", "default/pod/p0", None), ("n1", "default/pod/p0", "2")}
    assert len(idx.upsert(configmap("shared"))) == 2000
