"""Where a status write leaves for the API server: merges into ``/status``, a few at a time.

:meth:`cloudhub.store.kubernetes.KubeStore.update_statuses` hands its batch to
:class:`StatusWriter`. Each merge reads the object, merges the given top-level status keys
and replaces the ``/status`` subresource guarded by the resourceVersion it read, re-reading on
409 (up to ``retries``); a merge that changes nothing writes nothing. KubeEdge's own Device
CRD has no status subresource, so a Device whose ``/status`` is not found is written whole.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence
from typing import Any

from cloudhub.k8s.api import DEVICES, KubeApi
from cloudhub.store.base import StatusUpdate
from cloudhub.store.kube_kinds import complete, kind_of, namespace_of
from wire.errors import Conflict, InvalidObject, NotFound, StoreError
from wire.resources import TYPE_TO_KIND

_Results = list[dict[str, Any] | None]


class StatusWriter:
    """Status merges on one cluster connection, ``concurrency`` in flight at once."""

    def __init__(self, api: KubeApi, *, retries: int, concurrency: int) -> None:
        self._api = api
        self._retries = retries
        self._slots = asyncio.Semaphore(concurrency)

    async def update(self, updates: Sequence[StatusUpdate]) -> _Results:
        """Many status merges; ``None`` for objects that do not exist.

        There is no transaction: every merge is attempted, and if any failed the first
        failure is raised after the others finished (a lost write is never silent).

        Raises:
            InvalidObject: a status is not a mapping, or the type has no status.
            StoreError: some merge failed (Conflict after retries, API errors).
        """
        for u in updates:
            kind = kind_of(u.type)
            if not kind.status:
                raise InvalidObject(f"{TYPE_TO_KIND[u.type]} objects have no status")
            if not isinstance(u.status, dict):
                raise InvalidObject(f"status must be an object, got {type(u.status).__name__}")
        results = await asyncio.gather(*(self._merge(u) for u in updates), return_exceptions=True)
        out: _Results = []
        failures: list[BaseException] = []
        for result in results:
            if isinstance(result, BaseException):
                failures.append(result)
                out.append(None)
            else:
                out.append(result)
        for failure in failures:
            if not isinstance(failure, Exception):
                raise failure  # cancellation and the like
        if failures:
            first = failures[0]
            if len(updates) == 1 and isinstance(first, StoreError):
                raise first
            raise StoreError(
                f"{len(failures)} of {len(updates)} status updates failed; first: {first}"
            ) from first
        return out

    async def _merge(self, u: StatusUpdate) -> dict[str, Any] | None:
        kind = kind_of(u.type)
        ns = namespace_of(kind, u.namespace)
        async with self._slots:
            for _ in range(self._retries):
                try:
                    obj = complete(kind.res, await self._api.get(kind.res, ns, u.name))
                except NotFound:
                    return None
                old = obj.get("status")
                merged = dict(old) if isinstance(old, dict) else {}
                merged.update(copy.deepcopy(u.status))
                if merged == old:
                    return obj
                obj["status"] = merged
                try:
                    written = await self._api.replace(kind.res, ns, u.name, obj, status=True)
                except Conflict:
                    continue
                except NotFound:
                    if kind.res != DEVICES:
                        return None
                    # KubeEdge's own Device CRD has no status subresource: write the object.
                    try:
                        written = await self._api.replace(kind.res, ns, u.name, obj)
                    except Conflict:
                        continue
                    except NotFound:
                        return None
                return complete(kind.res, written)
        raise Conflict(
            f"status of {TYPE_TO_KIND[u.type]} {ns or ''}/{u.name}: still changing after "
            f"{self._retries} attempts; not written"
        )
