"""The admin API's object endpoints over real HTTPS, backed by the real embedded store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cloudhub.httpserver.admin import overlay_presence
from cloudhub.pki import Authority
from cloudhub.routes import NodePresence
from cloudhub.store.base import ObjectStore
from cloudhub.store.embedded import EmbeddedStore
from tests.cloudhub.stores import ProtocolOnlyStore
from tests.support.inproc import https_port, trusting_session
from wire.errors import NotFound


@dataclass
class Api:
    session: aiohttp.ClientSession
    base: str
    store: EmbeddedStore

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(method, self.base + path, json=body) as resp:
            return resp.status, await resp.json()


@pytest.fixture(params=["embedded", "protocol-only"])
async def api(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Api]:
    """The admin API on the embedded store, and on a store with only the protocol's methods
    (the path a Kubernetes store takes: validate, read, apply)."""
    authority = Authority.load_or_create(tmp_path / "cloud", advertise=[])
    store = EmbeddedStore(tmp_path / "cloud" / "store.db")
    await store.start()
    served: ObjectStore = store if request.param == "embedded" else ProtocolOnlyStore(store)
    async with (
        https_port(authority, served) as base,
        trusting_session(authority, admin=True) as session,
    ):
        yield Api(session, f"{base}/admin/v1", store)
    await store.close()


def _pod(name: str, namespace: str = "default", node: str = "edge-1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]},
    }


def _node(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}


async def test_apply_creates_then_configures(api: Api) -> None:
    """Apply stores objects and reports created, then configured or unchanged."""
    status, body = await api.call("POST", "/apply", {"objects": [_pod("a"), _node("edge-1")]})
    assert status == 200, body
    assert body["actions"] == ["created", "created"]
    assert body["objects"][0]["metadata"]["uid"]
    changed = _pod("a", node="edge-2")
    status, body = await api.call("POST", "/apply", {"objects": [changed, _node("edge-1")]})
    assert status == 200
    assert body["actions"] == ["configured", "unchanged"]
    stored = await api.store.get("pod", "default", "a")
    assert stored["spec"]["nodeName"] == "edge-2"


async def test_apply_answers_the_stored_objects(api: Api) -> None:
    """The response carries each object as stored; one given twice is applied twice."""
    pods = [_pod("a"), _pod("b"), _pod("a", node="edge-2")]
    status, body = await api.call("POST", "/apply", {"objects": pods})
    assert status == 200
    assert body["objects"][1] == await api.store.get("pod", "default", "b")
    assert body["objects"][2] == await api.store.get("pod", "default", "a")
    assert body["objects"][2]["spec"]["nodeName"] == "edge-2"
    assert body["actions"][1] == "created"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{", "invalid request: body: Invalid JSON"),
        (b'{"objects": [1]}', "invalid request: objects.0: Input should be an object"),
        (b'{"objects": [], "x": 1}', "invalid request: x: Extra inputs are not permitted"),
        (b'{"objects": {}}', "invalid request: objects: Input should be a valid array"),
    ],
)
async def test_malformed_apply_body_names_the_problem(api: Api, body: bytes, reason: str) -> None:
    """A body that is not {"objects": [{...}]} gets the request model's first problem."""
    async with api.session.post(api.base + "/apply", data=body) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"].startswith(reason)


async def test_invalid_object_in_batch_applies_nothing(api: Api) -> None:
    """One invalid manifest refuses the whole batch with a one-line 400 reason."""
    bad = _pod("b")
    del bad["spec"]["containers"][0]["image"]
    status, body = await api.call("POST", "/apply", {"objects": [_pod("a"), bad]})
    assert status == 400
    assert "default/b" in body["error"] and "image" in body["error"]
    assert "\n" not in body["error"]
    with pytest.raises(NotFound):
        await api.store.get("pod", "default", "a")


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
async def test_non_finite_numbers_are_refused(api: Api, number: bytes) -> None:
    """JSON has no NaN or infinities: an object holding one is refused and nothing stored,
    whichever encoder the store uses."""
    body = (
        b'{"objects": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},'
        b' "data": {}, "weight": ' + number + b"}]}"
    )
    async with api.session.post(api.base + "/apply", data=body) as resp:
        assert resp.status == 400
        assert "not representable as JSON" in (await resp.json())["error"]
    with pytest.raises(NotFound):
        await api.store.get("configmap", "default", "c")


async def test_non_ascii_and_big_numbers_are_stored_as_given(api: Api) -> None:
    """Non-ASCII text, a big integer and a small float are stored and answered as given."""
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "annotations": {"note": "caf\u00e9 \U0001f600"}},
        "data": {"k": "\u2028"},
        "big": 2**80,
        "small": 1e-7,
    }
    status, body = await api.call("POST", "/apply", {"objects": [obj]})
    assert status == 200, body
    stored = await api.store.get("configmap", "default", "c")
    assert body["objects"][0] == stored
    assert stored["metadata"]["annotations"] == obj["metadata"]["annotations"]
    assert (stored["data"], stored["big"], stored["small"]) == ({"k": "\u2028"}, 2**80, 1e-7)


@pytest.mark.parametrize(
    "payload",
    [{}, {"objects": "nope"}, {"objects": []}, {"objects": [], "extra": 1}, [1, 2]],
)
async def test_malformed_apply_request_is_400(api: Api, payload: Any) -> None:
    """A request body that is not {"objects": [...]} is refused with JSON 400."""
    status, body = await api.call("POST", "/apply", payload)
    assert status == 400
    assert isinstance(body["error"], str) and body["error"]


async def test_list_filters_by_namespace_and_sorts(api: Api) -> None:
    """GET /{type} lists every namespace, or one with ?namespace=."""
    objs = [_pod("z"), _pod("a"), _pod("m", namespace="plant-1")]
    assert (await api.call("POST", "/apply", {"objects": objs}))[0] == 200
    status, body = await api.call("GET", "/pods")
    assert status == 200
    assert body["kind"] == "List"
    names = [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in body["items"]]
    assert names == [("default", "a"), ("default", "z"), ("plant-1", "m")]
    _, body = await api.call("GET", "/pods?namespace=plant-1")
    assert [o["metadata"]["name"] for o in body["items"]] == ["m"]
    _, body = await api.call("GET", "/configmaps")
    assert body["items"] == []


async def test_get_and_delete_one_object(api: Api) -> None:
    """GET and DELETE /{type}/{ns}/{name} return the object; a second DELETE is 404."""
    await api.call("POST", "/apply", {"objects": [_pod("a")]})
    status, obj = await api.call("GET", "/pods/default/a")
    assert status == 200 and obj["metadata"]["name"] == "a"
    status, obj = await api.call("DELETE", "/pods/default/a")
    assert status == 200 and obj["metadata"]["name"] == "a"
    status, body = await api.call("DELETE", "/pods/default/a")
    assert status == 404 and "a" in body["error"]
    status, body = await api.call("GET", "/pods/default/a")
    assert status == 404


async def test_cluster_scoped_objects_use_underscore_namespace(api: Api) -> None:
    """Nodes are addressed as /nodes/_/NAME; a namespace there is a 400."""
    await api.call("POST", "/apply", {"objects": [_node("edge-1")]})
    status, obj = await api.call("GET", "/nodes/_/edge-1")
    assert status == 200 and obj["metadata"]["name"] == "edge-1"
    status, body = await api.call("GET", "/nodes/default/edge-1")
    assert status == 400 and "cluster-scoped" in body["error"]
    status, body = await api.call("GET", "/pods/_/a")
    assert status == 400 and "namespaced" in body["error"]


async def test_unknown_type_is_404_naming_the_types(api: Api) -> None:
    """An unknown type answers 404 with the list of valid ones."""
    status, body = await api.call("GET", "/widgets")
    assert status == 404
    assert "widgets" in body["error"] and "devicemodels" in body["error"]


async def test_disconnected_node_is_not_ready(api: Api) -> None:
    """A node with no link shows Ready=Unknown in list and get."""
    await api.call("POST", "/apply", {"objects": [_node("edge-1")]})
    _, listed = await api.call("GET", "/nodes")
    _, single = await api.call("GET", "/nodes/_/edge-1")
    for node in (listed["items"][0], single):
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready == [
            {
                "type": "Ready",
                "status": "Unknown",
                "reason": "EdgeDisconnected",
                "message": "edge node has no link to cloudhub",
            }
        ]


def test_presence_overlay_replaces_ready_and_keeps_other_conditions() -> None:
    """An online node gets Ready=True with lastHeartbeatTime; other conditions survive."""
    node: dict[str, Any] = {
        "kind": "Node",
        "metadata": {"name": "n"},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "False"},
                {"type": "MemoryPressure", "status": "False"},
            ]
        },
    }
    out = overlay_presence(node, NodePresence(online=True, last_seen=1_700_000_000.0))
    assert out["status"]["conditions"][0] == {
        "type": "Ready",
        "status": "True",
        "reason": "EdgeConnected",
        "message": "edge node is connected to cloudhub",
        "lastHeartbeatTime": "2023-11-14T22:13:20Z",
    }
    assert out["status"]["conditions"][1]["type"] == "MemoryPressure"
    assert node["status"]["conditions"][0]["status"] == "False"  # input untouched


async def test_oversized_body_is_413(api: Api) -> None:
    """A request body over 8 MiB is refused with a JSON 413."""
    huge = {"objects": [{"kind": "ConfigMap", "data": {"k": "x" * (9 * 1024 * 1024)}}]}
    status, body = await api.call("POST", "/apply", huge)
    assert status == 413
    assert "error" in body


async def test_device_with_desired_value_outside_its_model_is_refused(api: Api) -> None:
    """A Device whose desired value breaks its DeviceModel (range, ReadOnly) is not stored."""
    model = {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": "m", "namespace": "default"},
        "spec": {
            "properties": [
                {"name": "sp", "type": "FLOAT", "accessMode": "ReadWrite", "maximum": "35"},
                {"name": "t", "type": "FLOAT", "accessMode": "ReadOnly"},
            ]
        },
    }

    def device(prop: str, value: str) -> dict[str, Any]:
        return {
            "apiVersion": "devices.kubeedge.io/v1beta1",
            "kind": "Device",
            "metadata": {"name": "d", "namespace": "default"},
            "spec": {
                "deviceModelRef": {"name": "m"},
                "nodeName": "edge-1",
                "properties": [{"name": prop, "desired": {"value": value}}],
            },
        }

    status, body = await api.call("POST", "/apply", {"objects": [model, device("sp", "99")]})
    assert status == 400 and "maximum 35" in body["error"]
    status, _ = await api.call("GET", "/devicemodels/default/m")
    assert status == 404  # nothing of the refused batch was stored
    await api.call("POST", "/apply", {"objects": [model]})
    status, body = await api.call("POST", "/apply", {"objects": [device("t", "1")]})
    assert status == 400 and "ReadOnly" in body["error"]
    status, _ = await api.call("POST", "/apply", {"objects": [device("sp", "21.5")]})
    assert status == 200
