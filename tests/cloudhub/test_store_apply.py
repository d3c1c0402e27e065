"""EmbeddedStore writes: apply, delete, update_status, and what they assign."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cloudhub.store.base import ObjectStore
from cloudhub.store.embedded import EmbeddedStore
from wire.errors import InvalidObject, InvalidResource, NotFound


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    s = EmbeddedStore(tmp_path / "store.db")
    await s.start()
    yield s
    await s.close()


def configmap(name: str, ns: str | None = None, **data: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if ns is not None:
        meta["namespace"] = ns
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def node(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}


def rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


def test_embedded_store_satisfies_the_protocol(tmp_path: Path) -> None:
    """EmbeddedStore is usable wherever an ObjectStore is expected."""
    store: ObjectStore = EmbeddedStore(tmp_path / "store.db")
    assert store is not None


async def test_create_assigns_uid_rv_and_timestamp(store: EmbeddedStore) -> None:
    """A new object gets a uid, a resourceVersion and an RFC 3339 creationTimestamp."""
    (out,) = [a.object for a in await store.apply([configmap("c", a="1")])]
    meta = out["metadata"]
    assert re.fullmatch(r"[0-9a-f-]{36}", meta["uid"])
    assert meta["resourceVersion"] == "1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["creationTimestamp"])
    assert meta["namespace"] == "default"
    assert await store.get("configmap", "default", "c") == out


async def test_update_keeps_uid_and_creation_time(store: EmbeddedStore) -> None:
    """Replacing an object keeps its uid and creationTimestamp and takes a new resourceVersion."""
    (first,) = [a.object for a in await store.apply([configmap("c", a="1")])]
    changed = configmap("c", a="2")
    changed["metadata"]["uid"] = "forged"
    (second,) = [a.object for a in await store.apply([changed])]
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    assert second["metadata"]["creationTimestamp"] == first["metadata"]["creationTimestamp"]
    assert rv(second) > rv(first)
    assert second["data"] == {"a": "2"}


async def test_identical_apply_is_a_no_op(store: EmbeddedStore) -> None:
    """Applying what is stored again takes no new resourceVersion."""
    (first,) = [a.object for a in await store.apply([configmap("c", a="1")])]
    (again,) = [a.object for a in await store.apply([configmap("c", a="1")])]
    assert again == first
    _, list_rv = await store.list("configmap")
    assert list_rv == "1"


async def test_round_tripped_object_is_a_no_op(store: EmbeddedStore) -> None:
    """Re-applying an object exactly as get() returned it (status included) changes nothing."""
    await store.apply([configmap("c", a="1")])
    await store.update_status("configmap", "default", "c", {"x": 1})
    stored = await store.get("configmap", "default", "c")
    (again,) = [a.object for a in await store.apply([stored])]
    assert again == stored


async def test_apply_without_status_keeps_stored_status(store: EmbeddedStore) -> None:
    """An update that carries no status keeps the one the store has."""
    await store.apply([node("edge-1")])
    await store.update_status("node", None, "edge-1", {"phase": "Running"})
    changed = node("edge-1")
    changed["metadata"]["labels"] = {"zone": "a"}
    (out,) = [a.object for a in await store.apply([changed])]
    assert out["status"] == {"phase": "Running"}
    assert out["metadata"]["labels"] == {"zone": "a"}


async def test_invalid_object_writes_nothing(store: EmbeddedStore) -> None:
    """One invalid object in a batch refuses the whole batch."""
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}
    with pytest.raises(InvalidObject, match=r"^Pod default/p: spec\.containers is required$"):
        await store.apply([configmap("c"), bad])
    assert await store.list("configmap") == ([], "0")


async def test_apply_returns_objects_in_given_order(store: EmbeddedStore) -> None:
    """The result lists the stored objects in the order they were given, each with its own RV."""
    out = [a.object for a in await store.apply([configmap("b"), node("n"), configmap("a", "x")])]
    assert [o["metadata"]["name"] for o in out] == ["b", "n", "a"]
    assert [rv(o) for o in out] == [1, 2, 3]


async def test_secret_string_data_is_stored_as_data(store: EmbeddedStore) -> None:
    """stringData is converted to base64 data before it is stored."""
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}
    secret["stringData"] = {"k": "v"}
    (out,) = [a.object for a in await store.apply([secret])]
    assert out["data"] == {"k": "dg=="} and "stringData" not in out


async def test_list_spans_namespaces_in_order(store: EmbeddedStore) -> None:
    """list() returns every namespace's objects sorted, with the current global RV."""
    await store.apply([configmap("z", "b"), configmap("a", "b"), configmap("m", "a"), node("n")])
    objs, list_rv = await store.list("configmap")
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objs] == [
        ("a", "m"),
        ("b", "a"),
        ("b", "z"),
    ]
    assert list_rv == "4"


async def test_node_namespace_is_ignored(store: EmbeddedStore) -> None:
    """Nodes are cluster-scoped: any namespace given to get/delete is ignored."""
    await store.apply([node("edge-1")])
    assert (await store.get("node", "whatever", "edge-1"))["metadata"]["name"] == "edge-1"
    assert "namespace" not in (await store.get("node", None, "edge-1"))["metadata"]


async def test_delete_returns_last_state_with_new_rv(store: EmbeddedStore) -> None:
    """delete() returns the object carrying the deletion's resourceVersion; then it is gone."""
    (created,) = [a.object for a in await store.apply([configmap("c", a="1")])]
    deleted = await store.delete("configmap", None, "c")
    assert deleted["data"] == {"a": "1"}
    assert rv(deleted) == rv(created) + 1
    with pytest.raises(NotFound, match="ConfigMap default/c"):
        await store.get("configmap", "default", "c")
    with pytest.raises(NotFound):
        await store.delete("configmap", "default", "c")


async def test_recreated_object_gets_new_uid(store: EmbeddedStore) -> None:
    """An object deleted and created again is a new object with a new uid."""
    (first,) = [a.object for a in await store.apply([configmap("c")])]
    await store.delete("configmap", "default", "c")
    (second,) = [a.object for a in await store.apply([configmap("c")])]
    assert second["metadata"]["uid"] != first["metadata"]["uid"]
    assert rv(second) == 3


async def test_update_status_merges_top_level_keys(store: EmbeddedStore) -> None:
    """update_status replaces the given top-level keys, keeps the others and bumps the RV."""
    await store.apply([node("n")])
    one = await store.update_status("node", None, "n", {"a": 1, "b": {"x": 1}})
    two = await store.update_status("node", None, "n", {"b": {"y": 2}})
    assert two["status"] == {"a": 1, "b": {"y": 2}}
    assert rv(two) == rv(one) + 1


async def test_unchanged_status_is_a_no_op(store: EmbeddedStore) -> None:
    """Reporting the same status again takes no new resourceVersion."""
    await store.apply([node("n")])
    one = await store.update_status("node", None, "n", {"a": 1})
    two = await store.update_status("node", None, "n", {"a": 1})
    assert rv(two) == rv(one)


async def test_update_status_of_missing_object_is_not_found(store: EmbeddedStore) -> None:
    """update_status on an object that does not exist raises NotFound."""
    with pytest.raises(NotFound, match="Node ghost"):
        await store.update_status("node", None, "ghost", {"a": 1})


async def test_unknown_type_is_refused(store: EmbeddedStore) -> None:
    """Types edgebridge does not store raise InvalidResource."""
    with pytest.raises(InvalidResource):
        await store.list("service")
    with pytest.raises(InvalidResource):
        await store.get("deployment", "default", "x")


async def test_returned_objects_are_private_copies(store: EmbeddedStore) -> None:
    """Mutating a returned object does not change what the store holds."""
    (out,) = [a.object for a in await store.apply([configmap("c", a="1")])]
    out["data"]["a"] = "tampered"
    got = await store.get("configmap", None, "c")
    got["data"]["a"] = "tampered too"
    assert (await store.get("configmap", None, "c"))["data"] == {"a": "1"}


def pod(name: str, **annotations: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "i"}]},
    }


@pytest.mark.parametrize("owned", [False, True])
async def test_handed_over_objects_are_stored_alike(tmp_path: Path, owned: bool) -> None:
    """Objects handed over (validated in place, the faster encoder) are stored, refused and
    re-applied as copies encoded by the standard library's encoder are: same values, same
    unchanged/configured decisions."""
    s = EmbeddedStore(tmp_path / f"{owned}.db")
    await s.start()
    try:

        async def apply(obj: dict[str, Any]) -> Any:
            return (await s.apply([obj], owned=owned))[0]

        first = await apply(pod("p", note="caf\u00e9 \U0001f600", n="1e-07"))
        assert first.action == "created"
        assert json.loads(first.body)["metadata"]["annotations"]["note"] == "caf\u00e9 \U0001f600"
        # A status the standard library wrote with a lone surrogate escaped: carried into the
        # next apply, which pydantic cannot encode; the standard library then does, as before.
        await s.update_status("pod", "default", "p", {"odd": "\ud800", "x": [1.5, 2**70]})
        second = await apply(pod("p", note="changed"))
        assert second.action == "configured"
        stored = await s.get("pod", "default", "p")
        assert stored["status"] == {"odd": "\ud800", "x": [1.5, 2**70]}
        assert json.loads(second.body) == stored
        assert (await apply(pod("p", note="changed"))).action == "unchanged"
        bad = pod("p")
        bad["spec"]["weight"] = float("nan")
        with pytest.raises(InvalidObject, match="not representable as JSON"):
            await apply(bad)
        assert await s.get("pod", "default", "p") == stored
    finally:
        await s.close()


@pytest.mark.parametrize("owned", [False, True])
async def test_a_desired_value_the_model_forbids_is_refused_by_the_store(
    store: EmbeddedStore, owned: bool
) -> None:
    """apply checks a Device's desired values against its DeviceModel (stored or in the same
    batch) and writes nothing when one is forbidden."""
    model = {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": "m"},
        "spec": {"properties": [{"name": "t", "type": "FLOAT", "accessMode": "ReadOnly"}]},
    }
    device = {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": "d"},
        "spec": {
            "deviceModelRef": {"name": "m"},
            "properties": [{"name": "t", "desired": {"value": "1"}}],
        },
    }
    with pytest.raises(InvalidObject, match=r"Device default/d: .*ReadOnly"):
        await store.apply([json.loads(json.dumps(model)), device], owned=owned)
    assert await store.list("devicemodel") == ([], "0")
    await store.apply([model])
    with pytest.raises(InvalidObject, match="ReadOnly"):
        await store.apply([device], owned=owned)
    assert (await store.list("device"))[0] == []
