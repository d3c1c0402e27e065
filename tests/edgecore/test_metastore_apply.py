"""MetaStore writes and reads: apply, get, list, inventory, delete."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edgecore.metastore import Change, MetaStore
from wire.errors import InvalidResource


def pod(name: str, ns: str = "default", rv: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": rv},
    }


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[MetaStore]:
    s = await MetaStore.open(tmp_path / "edgecore.db")
    yield s
    await s.close()


async def test_apply_then_get_returns_object(store: MetaStore) -> None:
    """An applied object is returned by get under its edge key."""
    await store.apply([Change("default/pod/nginx", "7", pod("nginx", rv="7"))])
    assert await store.get("default/pod/nginx") == pod("nginx", rv="7")


async def test_get_missing_or_malformed_key_is_none(store: MetaStore) -> None:
    """get answers None for a key that is absent or not ns/type/name."""
    assert await store.get("default/pod/none") is None
    assert await store.get("not-a-key") is None


async def test_update_replaces_and_delete_removes(store: MetaStore) -> None:
    """A second apply replaces the object; a delete change removes the key."""
    await store.apply([Change("default/pod/a", "1", pod("a", rv="1"))])
    await store.apply([Change("default/pod/a", "2", pod("a", rv="2"))])
    assert await store.get("default/pod/a") == pod("a", rv="2")
    await store.apply([Change("default/pod/a", None, None)])
    assert await store.get("default/pod/a") is None


async def test_change_with_object_but_no_rv_deletes(store: MetaStore) -> None:
    """A change whose resourceVersion is None deletes even when it carries an object."""
    await store.apply([Change("default/pod/a", "1", pod("a"))])
    await store.apply([Change("default/pod/a", None, pod("a"))])
    assert await store.get("default/pod/a") is None


async def test_delete_of_missing_key_is_not_an_error(store: MetaStore) -> None:
    """Deleting a key that is not cached succeeds (the cloud may resend a delete)."""
    await store.apply([Change("default/pod/ghost", None, None)])
    assert await store.inventory() == {}


async def test_list_filters_by_type_and_namespace(store: MetaStore) -> None:
    """list returns one type, in one namespace or all of them, ordered by key."""
    await store.apply(
        [
            Change("default/pod/b", "1", pod("b")),
            Change("default/pod/a", "1", pod("a")),
            Change("kube-system/pod/c", "1", pod("c", "kube-system")),
            Change("default/configmap/a", "1", {"kind": "ConfigMap", "metadata": {"name": "a"}}),
            Change("null/node/edge-1", "1", {"kind": "Node", "metadata": {"name": "edge-1"}}),
        ]
    )
    names = [p["metadata"]["name"] for p in await store.list("pod")]
    assert names == ["a", "b", "c"]
    assert [p["metadata"]["name"] for p in await store.list("pod", "default")] == ["a", "b"]
    assert [n["metadata"]["name"] for n in await store.list("node")] == ["edge-1"]
    assert await store.list("secret") == []


async def test_inventory_maps_every_key_to_its_resource_version(store: MetaStore) -> None:
    """inventory states key -> resourceVersion for every cached row."""
    await store.apply(
        [
            Change("default/pod/a", "11", pod("a")),
            Change("null/node/edge-1", "12", {"kind": "Node", "metadata": {"name": "edge-1"}}),
        ]
    )
    assert await store.inventory() == {"default/pod/a": "11", "null/node/edge-1": "12"}


async def test_same_key_twice_in_a_batch_keeps_the_last(store: MetaStore) -> None:
    """Changes in one batch apply in order; the last one for a key wins."""
    await store.apply(
        [
            Change("default/pod/a", "1", pod("a", rv="1")),
            Change("default/pod/a", "2", pod("a", rv="2")),
            Change("default/pod/b", "1", pod("b")),
            Change("default/pod/b", None, None),
        ]
    )
    assert await store.inventory() == {"default/pod/a": "2"}


async def test_invalid_key_rejects_the_whole_batch(store: MetaStore) -> None:
    """A malformed key raises InvalidResource and nothing of the batch is written."""
    with pytest.raises(InvalidResource):
        await store.apply([Change("default/pod/a", "1", pod("a")), Change("bad", "1", {})])
    assert await store.inventory() == {}


async def test_batch_of_500_is_one_transaction(store: MetaStore) -> None:
    """500 changes commit in one transaction and are all readable afterwards."""
    before = store.commits
    await store.apply([Change(f"default/pod/p{i}", str(i), pod(f"p{i}")) for i in range(500)])
    assert store.commits == before + 1
    assert len(await store.inventory()) == 500
    assert len(await store.list("pod", "default")) == 500


async def test_empty_apply_does_nothing(store: MetaStore) -> None:
    """Applying no changes commits no transaction."""
    await store.apply([])
    assert store.commits == 0
