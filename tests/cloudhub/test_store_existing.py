"""EmbeddedStore.existing: which of many objects are stored, in one read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cloudhub.store.base import BulkReader
from cloudhub.store.embedded import EmbeddedStore
from wire.errors import InvalidResource


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    s = EmbeddedStore(tmp_path / "store.db")
    await s.start()
    yield s
    await s.close()


@pytest.mark.timeout(20)
async def test_existing_names_the_stored_ones_as_asked(store: EmbeddedStore) -> None:
    """Stored refs come back as given (a node's namespace, None or not, is ignored; a
    namespaced None means default); missing ones do not."""
    await store.apply(
        [
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "edge-1"}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {}},
        ]
    )
    asked = [
        ("node", None, "edge-1"),
        ("node", None, "edge-2"),
        ("configmap", None, "cfg"),
        ("configmap", "default", "cfg"),
        ("configmap", "other", "cfg"),
    ]
    assert isinstance(store, BulkReader)
    assert await store.existing(asked) == {
        ("node", None, "edge-1"),
        ("configmap", None, "cfg"),
        ("configmap", "default", "cfg"),
    }
    assert await store.existing([]) == set()


@pytest.mark.timeout(20)
async def test_existing_refuses_a_type_it_does_not_store(store: EmbeddedStore) -> None:
    """An unknown type is the same one-line error as for get."""
    with pytest.raises(InvalidResource):
        await store.existing([("gadget", None, "x")])
