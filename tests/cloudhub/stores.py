"""A store offering only the ObjectStore protocol, for the paths a Kubernetes store takes.

The admin API and the devicecontroller use the embedded store's extras (``apply``,
``merge_statuses``) when a store has them; wrapped in this, the embedded store has none, so
tests run those callers' plain paths against a real store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from cloudhub.store.base import Applied, StatusUpdate, WatchEvent
from cloudhub.store.embedded import EmbeddedStore

# Module-level aliases: inside the class, ``list`` names the method.
_Objects = list[dict[str, Any]]
_Results = list[dict[str, Any] | None]
_AppliedList = list[Applied]


class ProtocolOnlyStore:
    """Delegates the ObjectStore methods, and nothing else, to an embedded store."""

    def __init__(self, inner: EmbeddedStore) -> None:
        self._inner = inner

    async def start(self) -> None:
        await self._inner.start()

    async def close(self) -> None:
        await self._inner.close()

    async def list(self, type: str) -> tuple[_Objects, str]:
        return await self._inner.list(type)

    def watch(self, type: str, since: str) -> AsyncIterator[WatchEvent]:
        return self._inner.watch(type, since)

    async def get(self, type: str, namespace: str | None, name: str) -> dict[str, Any]:
        return await self._inner.get(type, namespace, name)

    async def apply(self, objects: _Objects, *, owned: bool = False) -> _AppliedList:
        return await self._inner.apply(objects, owned=owned)

    async def delete(self, type: str, namespace: str | None, name: str) -> dict[str, Any]:
        return await self._inner.delete(type, namespace, name)

    async def update_status(
        self, type: str, namespace: str | None, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        return await self._inner.update_status(type, namespace, name, status)

    async def update_statuses(self, updates: Sequence[StatusUpdate]) -> _Results:
        return await self._inner.update_statuses(updates)
