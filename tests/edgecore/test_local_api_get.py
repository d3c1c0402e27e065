"""Local API reads: Kubernetes-shaped get and list from the cache, Status on failure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edgecore.metaserver.server import LocalApiServer, bound_port, make_app, serve
from edgecore.metastore import Change, MetaStore

DEVICES = "/apis/devices.kubeedge.io/v1beta1"


def obj(kind: str, name: str, ns: str | None = "default", **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "resourceVersion": "1"}
    if ns:
        meta["namespace"] = ns
    api = "devices.kubeedge.io/v1beta1" if kind.startswith("Device") else "v1"
    return {"apiVersion": api, "kind": kind, "metadata": meta, **extra}


class Api:
    def __init__(self, session: aiohttp.ClientSession, base: str, store: MetaStore) -> None:
        self.session, self.base, self.store = session, base, store

    async def get(self, path: str, method: str = "GET") -> tuple[int, Any]:
        async with self.session.request(method, self.base + path) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.text()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    store = await MetaStore.open(tmp_path / "edgecore.db")
    await store.apply(
        [
            Change("default/pod/nginx", "1", obj("Pod", "nginx")),
            Change("prod/pod/db", "1", obj("Pod", "db", "prod")),
            Change("default/configmap/cfg", "1", obj("ConfigMap", "cfg", data={"a": "b"})),
            Change("default/secret/s", "1", obj("Secret", "s", data={"k": "dg=="})),
            Change("null/node/edge-1", "1", obj("Node", "edge-1", None)),
            Change("default/device/thermo", "1", obj("Device", "thermo")),
            Change("default/devicemodel/tm", "1", obj("DeviceModel", "tm")),
        ]
    )
    runner: LocalApiServer = await serve(make_app(store=store, node_name="edge-1"), "127.0.0.1", 0)
    async with aiohttp.ClientSession() as session:
        yield Api(session, f"http://127.0.0.1:{bound_port(runner)}", store)
    await runner.cleanup()
    await store.close()


async def test_healthz_answers_ok(api: Api) -> None:
    """GET /healthz answers the text ok."""
    assert await api.get("/healthz") == (200, "ok")


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/api/v1/namespaces/default/pods/nginx", "nginx"),
        ("/api/v1/namespaces/default/configmaps/cfg", "cfg"),
        ("/api/v1/namespaces/default/secrets/s", "s"),
        ("/api/v1/nodes/edge-1", "edge-1"),
        (f"{DEVICES}/namespaces/default/devices/thermo", "thermo"),
        (f"{DEVICES}/namespaces/default/devicemodels/tm", "tm"),
    ],
)
async def test_get_one_object(api: Api, path: str, name: str) -> None:
    """A named path answers the cached object as stored."""
    code, body = await api.get(path)
    assert code == 200
    assert body["metadata"]["name"] == name


async def test_namespaced_list(api: Api) -> None:
    """A namespaced collection answers a PodList of that namespace only."""
    code, body = await api.get("/api/v1/namespaces/default/pods")
    assert code == 200
    assert body["kind"] == "PodList"
    assert body["apiVersion"] == "v1"
    assert body["metadata"] == {"resourceVersion": ""}
    assert [p["metadata"]["name"] for p in body["items"]] == ["nginx"]


@pytest.mark.parametrize(
    ("path", "kind", "names"),
    [
        ("/api/v1/pods", "PodList", ["nginx", "db"]),
        ("/api/v1/configmaps", "ConfigMapList", ["cfg"]),
        ("/api/v1/secrets", "SecretList", ["s"]),
        ("/api/v1/nodes", "NodeList", ["edge-1"]),
        (f"{DEVICES}/devices", "DeviceList", ["thermo"]),
        (f"{DEVICES}/namespaces/default/devicemodels", "DeviceModelList", ["tm"]),
    ],
)
async def test_lists(api: Api, path: str, kind: str, names: list[str]) -> None:
    """Collections answer a {Kind}List with every matching cached object."""
    code, body = await api.get(path)
    assert (code, body["kind"]) == (200, kind)
    assert sorted(i["metadata"]["name"] for i in body["items"]) == sorted(names)


async def test_missing_object_is_404_status(api: Api) -> None:
    """A missing object answers 404 with a Kubernetes NotFound Status."""
    code, body = await api.get("/api/v1/namespaces/default/pods/x")
    assert code == 404
    assert {k: body[k] for k in ("kind", "apiVersion", "status", "message", "reason", "code")} == {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": 'pods "x" not found',
        "reason": "NotFound",
        "code": 404,
    }


async def test_object_in_other_namespace_is_404(api: Api) -> None:
    """An object is found only in its own namespace."""
    code, _ = await api.get("/api/v1/namespaces/default/pods/db")
    assert code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/api/v1/services",
        "/api/v1/namespaces",
        "/api/v1/namespaces/default",
        "/api/v1/namespaces/default/nodes/edge-1",
        "/api/v1/pods/nginx",
        "/api/v1/namespaces/default/pods/nginx/status",
        "/apis/apps/v1/deployments",
    ],
)
async def test_unknown_path_is_404_status(api: Api, path: str) -> None:
    """A path the local API does not serve answers 404 with a Status."""
    code, body = await api.get(path)
    assert code == 404
    assert (body["kind"], body["reason"]) == ("Status", "NotFound")


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_writes_are_405_status(api: Api, method: str) -> None:
    """Any method but GET answers 405 with a Status; the cache is unchanged."""
    code, body = await api.get("/api/v1/namespaces/default/pods/nginx", method=method)
    assert code == 405
    assert (body["kind"], body["reason"], body["code"]) == ("Status", "MethodNotAllowed", 405)
    assert await api.store.get("default/pod/nginx") is not None


async def test_missing_kind_is_filled_in(api: Api) -> None:
    """A cached object without kind/apiVersion is served with them."""
    await api.store.apply([Change("default/configmap/bare", "1", {"metadata": {"name": "bare"}})])
    _, body = await api.get("/api/v1/namespaces/default/configmaps/bare")
    assert (body["kind"], body["apiVersion"]) == ("ConfigMap", "v1")
