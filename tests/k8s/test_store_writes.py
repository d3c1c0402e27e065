"""KubeStore writes: create/replace/no-op, conflicts retried, status merges, deletes."""

from __future__ import annotations

from typing import Any

import pytest

from cloudhub.store.base import StatusUpdate
from cloudhub.store.kubernetes import KubeStore
from tests.k8s.objects import configmap, device, node, pod
from tests.support.kubeapi import KubeApiEmulator
from wire.errors import Conflict, InvalidObject, NotFound, StoreError

pytestmark = pytest.mark.timeout(20)

POD_PATH = "/api/v1/namespaces/default/pods/a"
DEVICES = "/apis/devices.kubeedge.io/v1beta1/namespaces/default/devices"


async def test_apply_creates_then_replaces_keeping_server_fields(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """A second apply keeps uid and creationTimestamp and gets a new resourceVersion."""
    (created,) = [a.object for a in await store.apply([pod("a")])]
    changed = pod("a")
    changed["metadata"]["labels"] = {"tier": "web"}
    (replaced,) = [a.object for a in await store.apply([changed])]
    for field in ("uid", "creationTimestamp"):
        assert replaced["metadata"][field] == created["metadata"][field]
    assert replaced["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]
    assert await store.get("pod", "default", "a") == replaced
    stored = kubeapi.get("pods", "default", "a")
    assert stored is not None and stored["metadata"]["labels"] == {"tier": "web"}


async def test_applying_what_is_stored_writes_nothing(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """An unchanged re-apply sends no PUT and leaves the resourceVersion alone."""
    (first,) = [a.object for a in await store.apply([pod("a")])]
    (again,) = [a.object for a in await store.apply([pod("a")])]
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert kubeapi.count("update", POD_PATH) == 0


async def test_an_update_without_status_keeps_the_stored_status(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """Replacing a pod's spec does not wipe the status others wrote; generation counts spec."""
    running = pod("a")
    running["status"] = {"phase": "Running"}
    kubeapi.seed(running)
    changed = pod("a")
    changed["spec"]["containers"][0]["image"] = "nginx:1.28"
    (stored,) = [a.object for a in await store.apply([changed])]
    assert stored["status"] == {"phase": "Running"}
    assert stored["metadata"]["generation"] == 2


async def test_a_conflicting_replace_is_retried_from_a_fresh_read(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """A 409 on the guarded PUT makes the store re-read and write again, successfully."""
    await store.apply([pod("a")])
    kubeapi.inject_conflict(path=POD_PATH)
    changed = pod("a")
    changed["metadata"]["labels"] = {"v": "2"}
    (stored,) = [a.object for a in await store.apply([changed])]
    assert stored["metadata"]["labels"] == {"v": "2"}
    assert kubeapi.count("update", POD_PATH) == 2


async def test_a_replace_that_keeps_conflicting_raises(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """After the retries are used up the write is reported lost, never dropped silently."""
    await store.apply([pod("a")])
    kubeapi.inject_conflict(path=POD_PATH, times=100)
    changed = pod("a")
    changed["metadata"]["labels"] = {"v": "2"}
    with pytest.raises(Conflict, match="not written"):
        await store.apply([changed])


async def test_a_batch_the_server_refuses_writes_nothing(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """The dry run refuses the second object before the first is created."""
    kubeapi.inject(422, method="POST", path="/api/v1/namespaces/default/configmaps")
    with pytest.raises(InvalidObject):
        await store.apply([pod("a"), configmap("c", {"k": "v"})])
    assert kubeapi.get("pods", "default", "a") is None
    assert kubeapi.count("create", "/api/v1/namespaces/default/pods") == 1  # the dry run only


async def test_an_invalid_manifest_is_refused_before_any_request(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """edgebridge's own validation runs first: no write reaches the API server."""
    bad = pod("a")
    bad["spec"]["containers"] = []
    kubeapi.reset_counts()
    with pytest.raises(InvalidObject, match="at least one container"):
        await store.apply([bad])
    assert kubeapi.count() == 0


async def test_delete_returns_the_last_state_and_is_immediate(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """Deleting a pod on a node does not leave it terminating; a second delete is NotFound."""
    await store.apply([node("edge-1"), pod("a")])
    last = await store.delete("pod", "default", "a")
    assert last["metadata"]["name"] == "a" and last["kind"] == "Pod"
    assert kubeapi.get("pods", "default", "a") is None
    with pytest.raises(NotFound):
        await store.delete("pod", "default", "a")


async def test_get_of_a_missing_object_is_not_found(store: KubeStore) -> None:
    """A 404 from the API becomes NotFound."""
    with pytest.raises(NotFound):
        await store.get("configmap", "default", "nope")


async def test_update_status_merges_top_level_keys(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """Status keys given replace theirs, others stay; the spec is untouched."""
    seeded = device("d1")
    seeded["status"] = {"state": "online", "twins": [{"propertyName": "t"}]}
    kubeapi.seed(seeded)
    result = await store.update_status("device", "default", "d1", {"state": "offline"})
    assert result["status"] == {"state": "offline", "twins": [{"propertyName": "t"}]}
    assert result["spec"] == seeded["spec"]
    assert kubeapi.count("update", f"{DEVICES}/d1/status") == 1


async def test_update_status_that_changes_nothing_writes_nothing(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """Re-reporting the same status sends no PUT."""
    seeded = device("d1")
    seeded["status"] = {"state": "online"}
    kubeapi.seed(seeded)
    await store.update_status("device", "default", "d1", {"state": "online"})
    assert kubeapi.count("update", f"{DEVICES}/d1/status") == 0


async def test_update_statuses_retries_conflicts_and_reports_missing_objects(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """A conflicted status write is retried; a missing device gives None, not an error."""
    kubeapi.seed(device("d1"))
    kubeapi.seed(device("d2"))
    kubeapi.inject_conflict(path=f"{DEVICES}/d1/status")
    results = await store.update_statuses(
        [
            StatusUpdate("device", "default", "d1", {"state": "online"}),
            StatusUpdate("device", "default", "gone", {"state": "online"}),
            StatusUpdate("device", "default", "d2", {"state": "offline"}),
        ]
    )
    states = [None if r is None else r["status"]["state"] for r in results]
    assert states == ["online", None, "offline"]
    assert kubeapi.count("update", f"{DEVICES}/d1/status") == 2


async def test_update_statuses_raises_when_a_write_is_lost(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """One write that keeps conflicting fails the call; the others were still written."""
    kubeapi.seed(device("d1"))
    kubeapi.seed(device("d2"))
    kubeapi.inject_conflict(path=f"{DEVICES}/d1/status", times=100)
    with pytest.raises(StoreError, match="1 of 2 status updates failed"):
        await store.update_statuses(
            [
                StatusUpdate("device", "default", "d1", {"state": "online"}),
                StatusUpdate("device", "default", "d2", {"state": "online"}),
            ]
        )
    d2: dict[str, Any] | None = kubeapi.get("devices", "default", "d2", group="devices.kubeedge.io")
    assert d2 is not None and d2["status"] == {"state": "online"}


async def test_status_of_a_kind_without_status_is_invalid(store: KubeStore) -> None:
    """ConfigMaps have no status in Kubernetes; asking to write one is refused."""
    with pytest.raises(InvalidObject):
        await store.update_status("configmap", "default", "c", {"x": "y"})


async def test_api_errors_other_than_the_mapped_ones_are_store_errors(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """A 500 (or 403) surfaces as StoreError naming the object, not as NotFound."""
    kubeapi.inject(500, method="GET")
    with pytest.raises(StoreError, match="ConfigMap default/c") as err:
        await store.get("configmap", "default", "c")
    assert not isinstance(err.value, NotFound)
    kubeapi.inject(403, method="GET")
    with pytest.raises(StoreError, match="refused our credentials"):
        await store.get("configmap", "default", "c")


def _read_only_model() -> dict[str, Any]:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": "thermostat-model", "namespace": "default"},
        "spec": {"properties": [{"name": "t", "type": "FLOAT", "accessMode": "ReadOnly"}]},
    }


async def test_apply_says_what_it_did_and_refuses_forbidden_desired_values(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """apply reports created/unchanged/configured, and refuses a desired value the Device's
    model forbids (read from the cluster) without writing the Device."""
    assert [a.action for a in await store.apply([_read_only_model(), pod("a")])] == [
        "created",
        "created",
    ]
    changed = pod("a")
    changed["metadata"]["labels"] = {"tier": "web"}
    assert [a.action for a in await store.apply([pod("b"), changed])] == [
        "created",
        "configured",
    ]
    assert [a.action for a in await store.apply([changed])] == ["unchanged"]
    bad = device("d")
    bad["spec"]["properties"] = [{"name": "t", "desired": {"value": "1"}}]
    with pytest.raises(InvalidObject, match=r"Device default/d: .*ReadOnly"):
        await store.apply([bad])
    assert kubeapi.get("devices", "default", "d") is None
