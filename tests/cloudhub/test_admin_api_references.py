"""Objects that name each other, through the admin API on every backend: a DeviceModel that
Devices use cannot be deleted; a pod or Device naming what does not exist is accepted with a
warning."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cloudhub.pki import Authority
from cloudhub.store.base import ObjectStore
from cloudhub.store.embedded import EmbeddedStore
from cloudhub.store.kubernetes import KubeSettings, KubeStore
from tests.cloudhub.stores import ProtocolOnlyStore
from tests.support.inproc import https_port, trusting_session
from tests.support.kubeapi import KubeApiEmulator

pytestmark = pytest.mark.timeout(30)


@dataclass
class Api:
    session: aiohttp.ClientSession
    base: str

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(method, self.base + path, json=body) as resp:
            return resp.status, await resp.json()


@pytest.fixture(params=["embedded", "protocol-only", "kubernetes"])
async def api(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Api]:
    """The admin API on the embedded store, on a store with only the protocol's methods, and
    on Kubernetes (the API server emulator)."""
    authority = Authority.load_or_create(tmp_path / "cloud", advertise=[])
    async with KubeApiEmulator() as kube:
        store: ObjectStore
        if request.param == "kubernetes":
            kube.install_edgebridge()  # the Device CRDs, as the README's kubectl apply does
            config = kube.write_kubeconfig(tmp_path / "kubeconfig")
            store = KubeStore.from_config(config, settings=KubeSettings(backoff_cap=0.2))
        else:
            embedded = EmbeddedStore(tmp_path / "cloud" / "store.db")
            store = embedded if request.param == "embedded" else ProtocolOnlyStore(embedded)
        await store.start()
        try:
            async with (
                https_port(authority, store) as base,
                trusting_session(authority, admin=True) as session,
            ):
                yield Api(session, f"{base}/admin/v1")
        finally:
            await store.close()


def _model(name: str = "thermostat") -> dict[str, Any]:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"properties": [{"name": "setpoint", "type": "FLOAT", "accessMode": "ReadWrite"}]},
    }


def _device(name: str, model: str = "thermostat", node: str = "edge-1") -> dict[str, Any]:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"deviceModelRef": {"name": model}, "nodeName": node},
    }


def _node(name: str = "edge-1") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}


def _pod(name: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]},
    }


async def test_deleting_a_model_in_use_is_refused_naming_the_devices(api: Api) -> None:
    """DELETE of a DeviceModel that Devices use is a 409 naming them; nothing is deleted;
    once they are gone the delete works."""
    objects = [_node(), _model(), _device("t1"), _device("t2"), _device("other", model="x")]
    status, body = await api.call("POST", "/apply", {"objects": objects})
    assert status == 200, body
    status, body = await api.call("DELETE", "/devicemodels/default/thermostat")
    assert status == 409
    assert body["error"] == (
        "devicemodel default/thermostat is used by device default/t1, device default/t2: "
        "delete those or change their deviceModelRef first"
    )
    status, _ = await api.call("GET", "/devicemodels/default/thermostat")
    assert status == 200
    for name in ("t1", "t2"):
        status, _ = await api.call("DELETE", f"/devices/default/{name}")
        assert status == 200
    status, body = await api.call("DELETE", "/devicemodels/default/thermostat")
    assert status == 200, body


async def test_dangling_references_are_accepted_with_warnings(api: Api) -> None:
    """A pod bound to a node that does not exist and a Device whose model does not exist are
    stored, and the answer carries one warning for each; references within the batch count."""
    status, body = await api.call(
        "POST",
        "/apply",
        {"objects": [_pod("lost", "nowhere"), _device("t1", model="ghost", node="edge-1")]},
    )
    assert status == 200, body
    assert body["actions"] == ["created", "created"]
    assert body["warnings"] == [
        "pod default/lost refers to node nowhere, which does not exist: nothing runs or "
        "reports there until it exists",
        "device default/t1 refers to node edge-1, which does not exist: nothing runs or "
        "reports there until it exists",
        "device default/t1 refers to devicemodel default/ghost, which does not exist: the "
        "edge cannot check its values until it exists",
    ]
    status, body = await api.call(
        "POST", "/apply", {"objects": [_node(), _model("ghost"), _device("t1", model="ghost")]}
    )
    assert status == 200, body
    assert body["warnings"] == []
