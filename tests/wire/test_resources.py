"""Resource strings and object keys, as KubeEdge writes them on both sides."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire.errors import InvalidResource, WireError
from wire.resources import (
    KIND_TO_TYPE,
    NULL_NAMESPACE,
    TYPE_TO_KIND,
    ResourceKey,
    key_of,
    resource_version_of,
    split_node_prefix,
)

segments = st.text(
    alphabet=st.characters(exclude_characters="/", exclude_categories=["Cs"]), min_size=1
)


@given(ns=segments.filter(lambda s: s != NULL_NAMESPACE), typ=segments, name=segments)
def test_parse_and_str_round_trip(ns: str, typ: str, name: str) -> None:
    """str(ResourceKey.parse(s)) == s for every namespace/type/name string."""
    text = f"{ns}/{typ}/{name}"
    key = ResourceKey.parse(text)
    assert key == ResourceKey(ns, typ, name)
    assert str(key) == text


@given(typ=segments, name=segments)
def test_null_namespace_round_trips_as_none(typ: str, name: str) -> None:
    """The "null" namespace parses to None and prints back as "null"."""
    key = ResourceKey.parse(f"null/{typ}/{name}")
    assert key.namespace is None
    assert str(key) == f"null/{typ}/{name}"


def test_cluster_scoped_key_prints_null() -> None:
    """A key without namespace prints KubeEdge's "null"."""
    assert str(ResourceKey(None, "node", "edge-1")) == "null/node/edge-1"


@pytest.mark.parametrize(
    "text",
    ["", "default", "default/pod", "default/pod/a/b", "/pod/a", "default//a", "default/pod/"],
)
def test_parse_refuses_anything_but_three_nonempty_segments(text: str) -> None:
    """Too few, too many or empty segments raise InvalidResource naming the string."""
    with pytest.raises(InvalidResource, match="namespace/type/name"):
        ResourceKey.parse(text)


def test_invalid_resource_is_a_wire_error_and_value_error() -> None:
    """InvalidResource can be caught as a WireError or as a ValueError."""
    assert issubclass(InvalidResource, WireError)
    assert issubclass(InvalidResource, ValueError)


def test_kind_maps_back_from_type() -> None:
    """A key's kind is the Kubernetes kind; unmapped types are returned as they are."""
    assert ResourceKey("default", "pod", "a").kind == "Pod"
    assert ResourceKey("default", "devicemodel", "m").kind == "DeviceModel"
    assert ResourceKey("default", "widget", "w").kind == "widget"
    assert {TYPE_TO_KIND[t] for t in KIND_TO_TYPE.values()} == set(KIND_TO_TYPE)


def test_for_node_prefixes_the_cloud_side() -> None:
    """The cloud-side string is node/{node}/{key}."""
    assert ResourceKey("default", "pod", "a").for_node("edge-1") == "node/edge-1/default/pod/a"
    assert ResourceKey(None, "node", "e").for_node("e") == "node/e/null/node/e"


def test_keys_order_and_hash() -> None:
    """Keys are hashable and ordered, so they can be dict keys and sorted."""
    a, b = ResourceKey("a", "pod", "x"), ResourceKey("b", "pod", "x")
    assert sorted([b, a]) == [a, b]
    assert {a: 1}[ResourceKey("a", "pod", "x")] == 1


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"kind": "Node", "metadata": {"name": "edge-1"}}, "null/node/edge-1"),
        (
            {"kind": "Node", "metadata": {"name": "edge-1", "namespace": "ignored"}},
            "null/node/edge-1",
        ),
        ({"kind": "Pod", "metadata": {"name": "web", "namespace": "prod"}}, "prod/pod/web"),
        ({"kind": "ConfigMap", "metadata": {"name": "cfg"}}, "default/configmap/cfg"),
        ({"kind": "Secret", "metadata": {"name": "s", "namespace": "x"}}, "x/secret/s"),
        ({"kind": "Device", "metadata": {"name": "t1", "namespace": "d"}}, "d/device/t1"),
        ({"kind": "DeviceModel", "metadata": {"name": "m"}}, "default/devicemodel/m"),
    ],
)
def test_key_of_each_kind(obj: dict[str, Any], expected: str) -> None:
    """key_of gives KubeEdge's key: null for nodes, default when the namespace is missing."""
    assert str(key_of(obj)) == expected


def test_key_of_covers_every_mirrored_kind() -> None:
    """Every kind in KIND_TO_TYPE has a key."""
    for kind, typ in KIND_TO_TYPE.items():
        assert key_of({"kind": kind, "metadata": {"name": "n"}}).type == typ


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"metadata": {"name": "a"}}, "not one edgebridge mirrors"),
        ({"kind": "Deployment", "metadata": {"name": "a"}}, "'Deployment'"),
        ({"kind": 3, "metadata": {"name": "a"}}, "not one edgebridge mirrors"),
        ({"kind": "Pod"}, "Pod without metadata.name"),
        ({"kind": "Pod", "metadata": None}, "without metadata.name"),
        ({"kind": "Pod", "metadata": "junk"}, "without metadata.name"),
        ({"kind": "Pod", "metadata": {"name": ""}}, "without metadata.name"),
        ({"kind": "Pod", "metadata": {"name": 5}}, "without metadata.name"),
        ({"kind": "Pod", "metadata": {"name": "a", "namespace": [None]}}, "must be a string"),
    ],
)
def test_key_of_refuses_objects_it_cannot_key(obj: dict[str, Any], reason: str) -> None:
    """Unknown kind, missing name or a namespace that is not text raise InvalidResource."""
    with pytest.raises(InvalidResource, match=reason):
        key_of(obj)


@pytest.mark.parametrize(
    ("obj", "rv"),
    [
        ({"metadata": {"resourceVersion": "123"}}, "123"),
        ({"metadata": {"resourceVersion": 42}}, "42"),
        ({"metadata": {"resourceVersion": None}}, ""),
        ({"metadata": {}}, ""),
        ({}, ""),
        ({"metadata": None}, ""),
        ({"metadata": "junk"}, ""),
    ],
)
def test_resource_version_of(obj: dict[str, Any], rv: str) -> None:
    """resourceVersion is returned as an opaque string, "" when absent."""
    assert resource_version_of(obj) == rv


def test_split_node_prefix() -> None:
    """node/{node}/{rest} splits into the node and the edge-side rest."""
    assert split_node_prefix("node/edge-1/default/pod/a") == ("edge-1", "default/pod/a")
    assert split_node_prefix("node/e/x") == ("e", "x")


@given(node=segments, key=st.builds(ResourceKey, segments, segments, segments))
def test_split_node_prefix_inverts_for_node(node: str, key: ResourceKey) -> None:
    """split_node_prefix(key.for_node(n)) gives back n and the edge-side key."""
    assert split_node_prefix(key.for_node(node)) == (node, str(key))


@pytest.mark.parametrize(
    "text", ["", "default/pod/a", "nodes/e/x", "node/", "node//x", "node/e", "node/e/"]
)
def test_split_node_prefix_refuses_strings_without_it(text: str) -> None:
    """Anything that is not node/NAME/REST raises InvalidResource."""
    with pytest.raises(InvalidResource):
        split_node_prefix(text)
