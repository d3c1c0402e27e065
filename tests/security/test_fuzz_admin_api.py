"""Random and mutated manifests to the admin API: never a crash (5xx), a one-line error for
every refusal, and a refused apply changes nothing."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudhub import app as cloud_app
from cloudhub.config import CloudSettings, HubSettings
from tests.security.fuzzing import LoopThread, json_values, mutated_json, store_contents

pytestmark = pytest.mark.timeout(120)

SEEDS: list[dict[str, Any]] = [
    {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p1", "namespace": "default", "labels": {"a": "b"}},
        "spec": {
            "nodeName": "edge-1",
            "containers": [
                {"name": "c", "image": "x", "envFrom": [{"configMapRef": {"name": "c1"}}]}
            ],
        },
    },
    {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c1", "namespace": "default"},
        "data": {"k": "v"},
    },
    {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s1", "namespace": "default"},
        "data": {"k": "dg=="},
    },
    {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "edge-1", "labels": {"x": "y"}}},
    {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": "d1", "namespace": "default"},
        "spec": {
            "deviceModelRef": {"name": "m1"},
            "nodeName": "edge-1",
            "properties": [{"name": "t", "desired": {"value": "1"}}],
        },
    },
    {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": "m1", "namespace": "default"},
        "spec": {"properties": [{"name": "t", "type": "FLOAT", "accessMode": "ReadWrite"}]},
    },
]


class AdminHarness:
    def __init__(self, tmp: Path) -> None:
        self.loop = LoopThread()
        self.cloud = self.loop.run(
            cloud_app.start(
                CloudSettings(
                    data_dir=tmp / "cloud",
                    https_port=0,
                    hub=HubSettings(bind="127.0.0.1", ws_port=0),
                )
            )
        )
        self.ssl = ssl.create_default_context(cadata=self.cloud.authority.ca_pem.decode())
        status, _ = self.post("/apply", {"objects": SEEDS})
        assert status == 200
        self.before = self.snapshot()

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        req = urllib.request.Request(
            f"https://127.0.0.1:{self.cloud.https_port}/admin/v1{path}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={
                "Authorization": f"Bearer {self.cloud.authority.admin_token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=10, context=self.ssl) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def snapshot(self) -> list[list[str]]:
        return self.loop.run(store_contents(self.cloud.store))

    def close(self) -> None:
        self.loop.run(self.cloud.stop())
        self.loop.close()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminHarness]:
    h = AdminHarness(tmp_path_factory.mktemp("fuzz-admin"))
    yield h
    h.close()


def _check(api: AdminHarness, body: Any) -> None:
    status, answer = api.post("/apply", body)
    assert status < 500, answer
    if status == 200:
        api.before = api.snapshot()
        return
    assert status in (400, 404, 409, 413, 422), (status, answer)
    assert set(answer) == {"error"}
    assert isinstance(answer["error"], str) and answer["error"]
    assert "\n" not in answer["error"]
    assert api.snapshot() == api.before


_SETTINGS = settings(
    max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)


@_SETTINGS
@given(body=json_values)
def test_random_bodies_are_refused_cleanly(api: AdminHarness, body: Any) -> None:
    """Any JSON body: a one-line error (or, rarely, a valid apply), never a 5xx."""
    _check(api, body)


@_SETTINGS
@given(objects=st.lists(st.sampled_from(SEEDS).flatmap(mutated_json), min_size=1, max_size=3))
def test_mutated_manifests_are_all_or_nothing(api: AdminHarness, objects: list[Any]) -> None:
    """Real manifests with fields removed, retyped or replaced: all applied or none."""
    _check(api, {"objects": objects})


@_SETTINGS
@given(bad=st.sampled_from(SEEDS).flatmap(mutated_json), good=st.sampled_from(SEEDS))
def test_one_bad_manifest_blocks_the_whole_batch(api: AdminHarness, bad: Any, good: Any) -> None:
    """A valid manifest next to a mutated one is applied only if the mutated one is valid too."""
    _check(api, {"objects": [good, bad]})
