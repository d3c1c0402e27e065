"""A Kubernetes cluster as cloudhub's source of truth, behind :class:`ObjectStore`.

The rest of cloudhub cannot tell this store from :mod:`cloudhub.store.embedded`; what differs
is how the promises are kept against an API server that others write to as well.
:class:`KubeStore` is the face; the work is in focused modules:

- :mod:`cloudhub.store.kube_kinds`: which API resource holds each type and with which
  server-side selectors it is listed and watched (only edge Nodes, only scheduled pods, no
  ConfigMap cloudhub keeps its own state in), and :class:`KubeSettings`.
- :mod:`cloudhub.store.kube_watch`: **where a watch event enters**. ``watch(type, since)`` is
  an endless stream built from many watch requests, resumed from the newest resourceVersion
  seen, reopened when silent, ending only on 410 Gone (the caller re-lists, not older than
  what the watch streamed); the decisions are :mod:`cloudhub.k8s.resume`'s. ResourceVersions
  are opaque strings: kept and sent back, never compared (KubeEdge compares them as integers;
  etcd's happen to be, the API does not promise it).
- :mod:`cloudhub.store.kube_writes`: **where an object write leaves**. Writes never lose
  silently: ``apply`` creates or replaces, each replace guarded by the resourceVersion just
  read, and on 409 re-reads and tries again (up to ``write_retries``). An object equal to the
  stored one is not written at all. A multi-object apply is first sent with ``dryRun=All``, so
  the API server's own validation refuses a bad batch before anything is written (the cluster
  has no transactions; this is as close to all-or-nothing as it gets).
- :mod:`cloudhub.store.kube_status`: status writes, through the ``/status`` subresource with
  the same guard and retry; a write that still conflicts raises :class:`~wire.errors.Conflict`.
- :mod:`cloudhub.store.kube_deletion`: pod deletion without a kubelet. ``kubectl delete`` of a
  pod on a node only marks it and waits for that node's kubelet; edge nodes have none, so this
  store reports a marked pod as DELETED at once (the edge drops it) and, for pods on edge
  nodes only, confirms the deletion itself.

Requests themselves go through :class:`cloudhub.k8s.api.KubeApi` (aiohttp).
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from cloudhub.k8s.api import KubeApi
from cloudhub.k8s.labels import EDGE_ROLE_LABEL
from cloudhub.k8s.resume import ListFloor
from cloudhub.store.admission import check_desired
from cloudhub.store.base import Applied, StatusUpdate, WatchEvent
from cloudhub.store.kube_deletion import PodDeletions
from cloudhub.store.kube_kinds import (
    DEFAULT_INACTIVITY_TIMEOUT,
    DEFAULT_STATUS_CONCURRENCY,
    DEFAULT_WATCH_TIMEOUT,
    DEFAULT_WRITE_RETRIES,
    KubeSettings,
    complete,
    kind_of,
    namespace_of,
    terminating,
)
from cloudhub.store.kube_status import StatusWriter
from cloudhub.store.kube_watch import watch_kind
from cloudhub.store.kube_writes import write_object
from wire.codec import dump_plain_json
from wire.errors import NotFound, StoreError
from wire.manifests import validate_all
from wire.resources import TYPE_TO_KIND

log = logging.getLogger(__name__)

_Objects = list[dict[str, Any]]
_Results = list[dict[str, Any] | None]

__all__ = [
    "DEFAULT_INACTIVITY_TIMEOUT",
    "DEFAULT_STATUS_CONCURRENCY",
    "DEFAULT_WATCH_TIMEOUT",
    "DEFAULT_WRITE_RETRIES",
    "EDGE_ROLE_LABEL",
    "KubeSettings",
    "KubeStore",
]


class KubeStore:
    """:class:`~cloudhub.store.base.ObjectStore` on a Kubernetes cluster."""

    def __init__(self, api: KubeApi, *, settings: KubeSettings | None = None) -> None:
        """Args:
        api: the cluster connection; the store closes it.
        settings: see :class:`KubeSettings` (defaults suit a real cluster).
        """
        self._api = api
        self.settings = settings or KubeSettings()
        self._statuses = StatusWriter(
            api,
            retries=self.settings.write_retries,
            concurrency=self.settings.status_concurrency,
        )
        self._deletions = PodDeletions(api, enabled=self.settings.finalize_edge_pod_deletions)
        #: per type: how its next list is asked for (the newest version its watches saw)
        self._floors: dict[str, ListFloor] = {}
        self._closed = False

    @classmethod
    def from_config(
        cls, kubeconfig: Path | None = None, *, settings: KubeSettings | None = None
    ) -> KubeStore:
        """A store on the cluster named by ``kubeconfig``, else ``$KUBECONFIG``, else in-cluster.

        Raises:
            wire.errors.ConfigError: the configuration is missing, unreadable or invalid.
        """
        settings = settings or KubeSettings()
        return cls(KubeApi.from_config(kubeconfig, workers=settings.workers), settings=settings)

    @property
    def api(self) -> KubeApi:
        """The cluster connection, to share with :mod:`cloudhub.k8s.leases` and friends."""
        return self._api

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Check that the API answers (what cloudhub needs of it is
        :mod:`cloudhub.k8s.preflight`'s business).

        Raises:
            StoreError: the API server cannot be reached or refuses our credentials.
        """
        version = await self._api.request("GET", "/version", what="connect")
        log.info("using Kubernetes %s at %s", version.get("gitVersion", "?"), self._api.host)

    async def close(self) -> None:
        """End watches and background work, close the connection. Safe to call twice."""
        self._closed = True
        await self._deletions.close()
        await self._api.close()

    # ------------------------------------------------------------------ reads

    async def list(self, type: str) -> tuple[_Objects, str]:
        """All objects of ``type`` the store mirrors, and the list's resourceVersion.

        Not older than what this store's watches of ``type`` saw (see :mod:`cloudhub.k8s.resume`).
        """
        kind = kind_of(type)
        floor = self._floors.setdefault(type, ListFloor())
        ask = floor.request()
        try:
            data = await self._api.list(
                kind.res,
                label_selector=kind.label_selector,
                field_selector=kind.field_selector,
                resource_version=ask.resource_version,
                resource_version_match=ask.match,
            )
        except StoreError:
            floor.failed(ask)
            raise
        items: _Objects = []
        for raw in data.get("items") or []:
            obj = complete(kind.res, raw)
            if type == "pod" and terminating(obj):
                self._deletions.confirm(obj)
                continue
            items.append(obj)
        rv = str((data.get("metadata") or {}).get("resourceVersion") or "")
        return items, rv

    async def get(self, type: str, namespace: str | None, name: str) -> dict[str, Any]:
        kind = kind_of(type)
        return complete(
            kind.res, await self._api.get(kind.res, namespace_of(kind, namespace), name)
        )

    def watch(self, type: str, since: str) -> AsyncIterator[WatchEvent]:
        """Changes of ``type`` after ``since`` ("" = from now on), forever
        (:mod:`cloudhub.store.kube_watch`).

        Raises (while iterating):
            Gone: ``since`` (or a later resourceVersion) fell out of the API server's history.
            NotFound, InvalidObject: the request cannot succeed (e.g. CRD not installed).
        """
        return watch_kind(
            self._api,
            kind_of(type),
            type,
            since,
            settings=self.settings,
            floor=self._floors.setdefault(type, ListFloor()),
            closed=lambda: self._closed,
            on_terminating=self._deletions.confirm,
        )

    # ------------------------------------------------------------------ writes

    async def apply(self, objects: _Objects, *, owned: bool = False) -> builtins.list[Applied]:
        """Validate, then create or replace each object (see the module docstring for the
        guarantees, and :meth:`cloudhub.store.base.ObjectStore.apply` for the contract).

        Raises:
            InvalidObject: an object is not valid (by edgebridge's checks or the API server's
                dry run); nothing was written.
            Conflict: an object kept changing under us for ``write_retries`` attempts.
        """
        valid = validate_all(objects, owned=owned)
        await check_desired(valid, self.get)
        retries = self.settings.write_retries
        if len(valid) > 1:
            for obj in valid:
                await write_object(self._api, obj, dry_run=True, retries=retries)
        applied: builtins.list[Applied] = []
        for obj in valid:
            action, stored = await write_object(self._api, obj, dry_run=False, retries=retries)
            # What the API server answered is decoded JSON: plain data.
            applied.append(Applied(action, dump_plain_json(stored)))
        return applied

    async def delete(self, type: str, namespace: str | None, name: str) -> dict[str, Any]:
        """Delete one object at once (pods too: no grace period) and return its last state."""
        kind = kind_of(type)
        ns = namespace_of(kind, namespace)
        stored = complete(kind.res, await self._api.get(kind.res, ns, name))
        uid = (stored.get("metadata") or {}).get("uid")
        answer = await self._api.delete(
            kind.res,
            ns,
            name,
            grace_period_seconds=0 if type == "pod" else None,
            preconditions={"uid": uid} if uid else None,
        )
        if answer.get("kind") == kind.res.kind:
            return complete(kind.res, answer)
        return stored

    async def update_status(
        self, type: str, namespace: str | None, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge ``status`` into the object's status (top-level keys replace).

        Raises:
            NotFound: no such object.
            Conflict: the object kept changing for ``write_retries`` attempts.
        """
        (result,) = await self.update_statuses([StatusUpdate(type, namespace, name, status)])
        if result is None:
            raise NotFound(f"{TYPE_TO_KIND.get(type, type)} {namespace or ''}/{name} not found")
        return result

    async def update_statuses(self, updates: Sequence[StatusUpdate]) -> _Results:
        """Many status merges, a few at a time; ``None`` for objects that do not exist
        (:mod:`cloudhub.store.kube_status`).

        Raises:
            InvalidObject: a status is not a mapping, or the type has no status.
            StoreError: some merge failed (Conflict after retries, API errors).
        """
        return await self._statuses.update(updates)
