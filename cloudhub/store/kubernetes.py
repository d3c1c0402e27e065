"""A Kubernetes cluster as cloudhub's source of truth, behind :class:`ObjectStore`.

The rest of cloudhub cannot tell this store from :mod:`cloudhub.store.embedded`; what differs
is how the promises are kept against an API server that others write to as well.

**Watching, kopf-style.** ``watch(type, since)`` is an endless stream built from many watch
requests: each asks for bookmarks and a server-side ``timeoutSeconds``; the newest
resourceVersion seen (bookmarks included) is kept and the next request resumes from it when
a stream ends; a stream that stays silent for ``inactivity_timeout`` seconds (no event, no
bookmark: a half-dead connection) is dropped and reopened; failures reconnect with jittered,
capped backoff. A ``410 Gone`` (when opening or as a watch ERROR event) raises
:class:`~wire.errors.Gone` so the caller re-lists, and that list asks for
``resourceVersionMatch=NotOlderThan`` the newest version the watch streamed (the API server's
watch cache answers it, not etcd). These decisions are :mod:`cloudhub.k8s.resume`'s, which
also says why a restarted cloudhub lists afresh. ResourceVersions are opaque strings: kept
and sent back, never compared (KubeEdge compares them as integers; etcd's happen to be, the
API does not promise it).

**Filtering on the server.** Only edge nodes are listed and watched (label selector
``node-role.kubernetes.io/edge``), and only scheduled pods (field selector ``spec.nodeName!=``),
so a cluster full of ordinary workloads costs little beyond its configmaps and secrets.
ConfigMaps cloudhub writes for itself (:mod:`cloudhub.k8s.acked`, labelled
:data:`~cloudhub.k8s.labels.MANAGED_BY_CLOUDHUB`) are left out the same way: cloudhub does not
get its own writes back as watch events, and edges never get them.

**Writes never lose silently.** ``apply`` creates or replaces, each replace guarded by the
resourceVersion just read, and on 409 re-reads and tries again (up to ``write_retries``). An
object equal to the stored one is not written at all. A multi-object apply is first sent with
``dryRun=All``, so the API server's own validation refuses a bad batch before anything is
written (the cluster has no transactions; this is as close to all-or-nothing as it gets).
Status goes through the ``/status`` subresource with the same guard and retry; a write that
still conflicts raises :class:`~wire.errors.Conflict`.

**Pod deletion without a kubelet.** ``kubectl delete`` of a pod on a node only marks it
(``deletionTimestamp``) and waits for that node's kubelet to confirm. Edge nodes have none, so
this store reports a marked pod as DELETED at once (the edge drops it) and, for pods on edge
nodes (or on a Node that no longer exists, as Kubernetes' pod GC would) only, confirms the
deletion itself with a 0-second delete guarded by the pod's uid.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import copy
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cloudhub.k8s.api import (
    CONFIGMAPS,
    DEFAULT_WORKERS,
    DEVICEMODELS,
    DEVICES,
    NODES,
    PODS,
    SECRETS,
    KubeApi,
    Resource,
)
from cloudhub.k8s.labels import EDGE_ROLE_LABEL, NOT_MANAGED_BY_CLOUDHUB
from cloudhub.k8s.resume import ListFloor, WatchResume
from cloudhub.k8s.watchlines import RawEvent
from cloudhub.store.admission import check_desired
from cloudhub.store.base import Action, Applied, EventType, StatusUpdate, WatchEvent
from hive.backoff import backoff
from wire.codec import dump_plain_json
from wire.errors import (
    Conflict,
    Gone,
    InvalidObject,
    InvalidResource,
    NotFound,
    StoreError,
)
from wire.manifests import validate_all
from wire.resources import TYPE_TO_KIND, key_of

log = logging.getLogger(__name__)

_Objects = list[dict[str, Any]]
_Results = list[dict[str, Any] | None]

#: server-side end of each watch request, seconds (the API server caps it anyway)
DEFAULT_WATCH_TIMEOUT = 300
#: seconds without an event or bookmark before a watch is deemed dead. The API server sends a
#: bookmark about every minute when asked; kopf reasons the same way to its 70 s.
DEFAULT_INACTIVITY_TIMEOUT = 70.0
#: attempts at a resourceVersion-guarded write before giving up with Conflict
DEFAULT_WRITE_RETRIES = 5
#: status writes in flight at once in update_statuses
DEFAULT_STATUS_CONCURRENCY = 8
#: metadata fields the server owns: copied from the stored object into a replacement
_SERVER_META = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)


#: the watch event types that change an object
_EVENT_TYPES: dict[str, EventType] = {
    "ADDED": "ADDED",
    "MODIFIED": "MODIFIED",
    "DELETED": "DELETED",
}


@dataclass(frozen=True, slots=True)
class _Kind:
    """How one edgebridge type maps onto the API."""

    res: Resource
    label_selector: str | None = None
    field_selector: str | None = None
    #: has a /status subresource that update_status writes
    status: bool = False


_KINDS: dict[str, _Kind] = {
    "node": _Kind(NODES, label_selector=EDGE_ROLE_LABEL, status=True),
    "pod": _Kind(PODS, field_selector="spec.nodeName!=", status=True),
    # not cloudhub's own ConfigMaps (acked records): its writes do not come back as events
    "configmap": _Kind(CONFIGMAPS, label_selector=NOT_MANAGED_BY_CLOUDHUB),
    "secret": _Kind(SECRETS),
    "device": _Kind(DEVICES, status=True),
    "devicemodel": _Kind(DEVICEMODELS),
}


class KubeSettings(BaseModel):
    """How KubeStore talks to the cluster. Every field has a default that suits a real one."""

    model_config = ConfigDict(frozen=True)

    #: ``timeoutSeconds`` of each watch request: the server ends the stream after this and the
    #: store resumes from the newest resourceVersion seen (300 s, as client-go's informers)
    watch_timeout: int = Field(default=DEFAULT_WATCH_TIMEOUT, ge=1)
    #: seconds without an event or bookmark before a watch is deemed dead and reopened (70 s:
    #: the API server bookmarks about every minute)
    inactivity_timeout: float = Field(default=DEFAULT_INACTIVITY_TIMEOUT, gt=0)
    #: longest wait between failed watch attempts, seconds (10; jittered, from 0.25 s up)
    backoff_cap: float = Field(default=10.0, gt=0)
    #: tries of a resourceVersion-guarded write before it is reported lost as Conflict (5)
    write_retries: int = Field(default=DEFAULT_WRITE_RETRIES, ge=1)
    #: status writes in flight at once in ``update_statuses`` (8)
    status_concurrency: int = Field(default=DEFAULT_STATUS_CONCURRENCY, ge=1)
    #: short API calls in flight at once (8); each open watch has its own connection besides
    workers: int = Field(default=DEFAULT_WORKERS, ge=1)
    #: confirm (0-second delete) deletions of pods on edge nodes, which have no kubelet (True)
    finalize_edge_pod_deletions: bool = True


class KubeStore:
    """:class:`~cloudhub.store.base.ObjectStore` on a Kubernetes cluster."""

    def __init__(self, api: KubeApi, *, settings: KubeSettings | None = None) -> None:
        """Args:
        api: the cluster connection; the store closes it.
        settings: see :class:`KubeSettings` (defaults suit a real cluster).
        """
        self._api = api
        self.settings = settings or KubeSettings()
        self._status_slots = asyncio.Semaphore(self.settings.status_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._finalizing: set[str] = set()
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
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._api.close()

    # ------------------------------------------------------------------ reads

    async def list(self, type: str) -> tuple[_Objects, str]:
        """All objects of ``type`` the store mirrors, and the list's resourceVersion.

        Not older than what this store's watches of ``type`` saw (see :mod:`cloudhub.k8s.resume`).
        """
        kind = _kind(type)
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
            obj = _complete(kind.res, raw)
            if type == "pod" and _terminating(obj):
                self._confirm_deletion(obj)
                continue
            items.append(obj)
        rv = str((data.get("metadata") or {}).get("resourceVersion") or "")
        return items, rv

    async def get(self, type: str, namespace: str | None, name: str) -> dict[str, Any]:
        kind = _kind(type)
        return _complete(kind.res, await self._api.get(kind.res, _ns(kind, namespace), name))

    def watch(self, type: str, since: str) -> AsyncIterator[WatchEvent]:
        """Changes of ``type`` after ``since`` ("" = from now on), forever (see module doc).

        Raises (while iterating):
            Gone: ``since`` (or a later resourceVersion) fell out of the API server's history.
            NotFound, InvalidObject: the request cannot succeed (e.g. CRD not installed).
        """
        return self._watch(_kind(type), type, since)

    async def _watch(self, kind: _Kind, type: str, since: str) -> AsyncIterator[WatchEvent]:
        rv = since
        if rv == "":
            listed = await self._api.list(
                kind.res,
                label_selector=kind.label_selector,
                field_selector=kind.field_selector,
                limit=1,
            )
            rv = str((listed.get("metadata") or {}).get("resourceVersion") or "")
        resume = WatchResume(rv)
        floor = self._floors.setdefault(type, ListFloor())
        step = resume.start()
        delays = backoff(cap=self.settings.backoff_cap)
        while not self._closed:
            if step.action == "relist":  # the caller lists (not older than ``floor``)
                raise Gone(f"watch of {type}: resourceVersion {resume.resource_version} expired")
            if step.backoff:
                await asyncio.sleep(next(delays))
            else:
                delays = backoff(cap=self.settings.backoff_cap)
            try:
                stream = self._api.watch(
                    kind.res,
                    resource_version=step.resource_version,
                    timeout_seconds=self.settings.watch_timeout,
                    inactivity_timeout=self.settings.inactivity_timeout,
                    label_selector=kind.label_selector,
                    field_selector=kind.field_selector,
                )
                # aclosing: leaving on a 410 ERROR event closes the response now, not at GC.
                async with contextlib.aclosing(stream):
                    async for raw in stream:
                        final = _EVENT_TYPES.get(raw.type)
                        if final is not None and isinstance(raw.object, dict):
                            # the common case, a change: no decision to make but where it is
                            resume.saw(_rv_of(raw.object))
                            yield self._change(kind, type, final, raw.object, raw)
                            continue
                        stop = resume.event(raw.type, _rv_of(raw.object), code=_code_of(raw))
                        if stop is not None:
                            log.warning("watch of %s: %s", type, _status_text(raw.object))
                            step = stop
                            break
                        event = self._event(kind, type, raw)
                        if event is not None:
                            yield event
                    else:
                        step = resume.ended()
                        log.debug(
                            "watch of %s ended at resourceVersion %s; resuming",
                            type,
                            step.resource_version,
                        )
            except Gone:
                step = resume.gone()
            except (NotFound, InvalidObject):
                raise
            except StoreError as exc:
                if self._closed:
                    return
                log.warning("watch of %s failed: %s", type, exc)
                step = resume.failed()
            floor.saw(resume.streamed)

    def _event(self, kind: _Kind, type: str, raw: RawEvent) -> WatchEvent | None:
        """The WatchEvent for one raw watch event, or None for bookmarks and the unknown."""
        event_type: str = raw.type
        obj = raw.object
        if not isinstance(obj, dict):
            log.warning("watch of %s: %s event without an object", type, event_type)
            return None
        if event_type in ("ERROR", "BOOKMARK"):  # ERROR: WatchResume decided what follows
            return None
        final = _EVENT_TYPES.get(event_type)
        if final is None:
            log.warning("watch of %s: unknown event type %r skipped", type, event_type)
            return None
        return self._change(kind, type, final, obj, raw)

    def _change(
        self, kind: _Kind, type: str, final: EventType, obj: dict[str, Any], raw: RawEvent
    ) -> WatchEvent:
        """The WatchEvent for a change (``final``) to ``obj``, the decoded ``raw.object``."""
        # The server's bytes go to edges as they are, if they say what the object is (watch
        # events carry kind and apiVersion; if one did not, the completed dict is encoded).
        if "kind" in obj and "apiVersion" in obj:
            body = raw.body
        else:
            body = None
            _complete(kind.res, obj)
        if type == "pod" and final != "DELETED" and _terminating(obj):
            final = "DELETED"
            body = None
            self._confirm_deletion(obj)
        return WatchEvent(final, obj, body, raw.more)

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
        if len(valid) > 1:
            for obj in valid:
                await self._write(obj, dry_run=True)
        applied: builtins.list[Applied] = []
        for obj in valid:
            action, stored = await self._write(obj, dry_run=False)
            # What the API server answered is decoded JSON: plain data.
            applied.append(Applied(action, dump_plain_json(stored)))
        return applied

    async def _write(self, obj: dict[str, Any], *, dry_run: bool) -> tuple[Action, dict[str, Any]]:
        key = key_of(obj)
        kind = _kind(key.type)
        ns = _ns(kind, key.namespace)
        for _ in range(self.settings.write_retries):
            try:
                stored: dict[str, Any] | None = await self._api.get(kind.res, ns, key.name)
            except NotFound:
                stored = None
            if stored is None:
                body = copy.deepcopy(obj)
                for field in _SERVER_META:
                    body["metadata"].pop(field, None)
                try:
                    created = await self._api.create(kind.res, ns, body, dry_run=dry_run)
                except Conflict:
                    continue  # created by someone else meanwhile: replace it instead
                return "created", _complete(kind.res, created)
            stored = _complete(kind.res, stored)
            candidate = _replacement(obj, stored)
            if _same(candidate, stored):
                return "unchanged", stored
            try:
                written = await self._api.replace(
                    kind.res, ns, key.name, candidate, dry_run=dry_run
                )
            except Conflict:
                log.debug("%s changed while we wrote it; re-reading", key)
                continue
            except NotFound:
                continue  # deleted meanwhile: create it
            return "configured", _complete(kind.res, written)
        raise Conflict(
            f"{key}: still changing after {self.settings.write_retries} attempts; not written"
        )

    async def delete(self, type: str, namespace: str | None, name: str) -> dict[str, Any]:
        """Delete one object at once (pods too: no grace period) and return its last state."""
        kind = _kind(type)
        ns = _ns(kind, namespace)
        stored = _complete(kind.res, await self._api.get(kind.res, ns, name))
        uid = (stored.get("metadata") or {}).get("uid")
        answer = await self._api.delete(
            kind.res,
            ns,
            name,
            grace_period_seconds=0 if type == "pod" else None,
            preconditions={"uid": uid} if uid else None,
        )
        if answer.get("kind") == kind.res.kind:
            return _complete(kind.res, answer)
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
        """Many status merges, a few at a time; ``None`` for objects that do not exist.

        There is no transaction: every merge is attempted, and if any failed the first
        failure is raised after the others finished (a lost write is never silent).

        Raises:
            InvalidObject: a status is not a mapping, or the type has no status.
            StoreError: some merge failed (Conflict after retries, API errors).
        """
        for u in updates:
            kind = _kind(u.type)
            if not kind.status:
                raise InvalidObject(f"{TYPE_TO_KIND[u.type]} objects have no status")
            if not isinstance(u.status, dict):
                raise InvalidObject(f"status must be an object, got {type(u.status).__name__}")
        results = await asyncio.gather(
            *(self._merge_status(u) for u in updates), return_exceptions=True
        )
        out: _Results = []
        failures: builtins.list[BaseException] = []
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

    async def _merge_status(self, u: StatusUpdate) -> dict[str, Any] | None:
        kind = _kind(u.type)
        ns = _ns(kind, u.namespace)
        async with self._status_slots:
            for _ in range(self.settings.write_retries):
                try:
                    obj = _complete(kind.res, await self._api.get(kind.res, ns, u.name))
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
                return _complete(kind.res, written)
        raise Conflict(
            f"status of {TYPE_TO_KIND[u.type]} {ns or ''}/{u.name}: still changing after "
            f"{self.settings.write_retries} attempts; not written"
        )

    # ------------------------------------------------------------------ pod deletion

    def _confirm_deletion(self, pod: dict[str, Any]) -> None:
        """In the background, finish a marked pod's deletion if it sits on an edge node."""
        meta = pod.get("metadata") or {}
        uid = meta.get("uid")
        if (
            not self.settings.finalize_edge_pod_deletions
            or self._closed
            or not uid
            or uid in self._finalizing
        ):
            return
        self._finalizing.add(uid)
        name = f"kubestore:confirm-delete:{meta.get('namespace')}/{meta.get('name')}"
        task = asyncio.create_task(self._confirm(pod, uid), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _confirm(self, pod: dict[str, Any], uid: str) -> None:
        meta = pod["metadata"]
        node_name = (pod.get("spec") or {}).get("nodeName")
        try:
            if not node_name:
                return
            try:
                node = await self._api.get(NODES, None, node_name)
            except NotFound:
                node = None  # the Node is gone: no kubelet will ever confirm (podgc's case)
            labels = ((node or {}).get("metadata") or {}).get("labels") or {}
            if node is not None and EDGE_ROLE_LABEL not in labels:
                return  # a kubelet's pod: its kubelet confirms
            await self._api.delete(
                PODS,
                meta.get("namespace"),
                meta["name"],
                grace_period_seconds=0,
                preconditions={"uid": uid},
            )
            log.info(
                "confirmed deletion of pod %s/%s on edge node %s",
                meta.get("namespace"),
                meta["name"],
                node_name,
            )
        except (NotFound, Conflict):
            pass  # already gone, or replaced by a new pod of the same name
        except StoreError as exc:
            log.warning(
                "could not confirm deletion of pod %s/%s: %s",
                meta.get("namespace"),
                meta["name"],
                exc,
            )
        finally:
            self._finalizing.discard(uid)


# --------------------------------------------------------------------------- helpers


def _kind(type: str) -> _Kind:
    kind = _KINDS.get(type)
    if kind is None:
        raise InvalidResource(
            f"type {type!r} is not stored here (expected one of {', '.join(_KINDS)})"
        )
    return kind


def _ns(kind: _Kind, namespace: str | None) -> str | None:
    return (namespace or "default") if kind.res.namespaced else None


def _complete(res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with ``kind``/``apiVersion`` (list items of built-in types come without)."""
    obj.setdefault("kind", res.kind)
    obj.setdefault("apiVersion", res.api_version)
    return obj


def _rv_of(obj: Any) -> str:
    if not isinstance(obj, dict):
        return ""
    meta = obj.get("metadata")
    rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
    return str(rv) if rv else ""


def _code_of(raw: RawEvent) -> int | None:
    """An ERROR event's status code."""
    if raw.type != "ERROR" or not isinstance(raw.object, dict):
        return None
    code = raw.object.get("code")
    return code if isinstance(code, int) else None


def _status_text(obj: Any) -> str:
    """What a ``kind: Status`` says."""
    if not isinstance(obj, dict):
        return "the API server reported an error"
    code, message = obj.get("code"), obj.get("message") or obj.get("reason") or "error"
    return f"the API server reported {code}: {message}"


def _terminating(obj: dict[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def _replacement(obj: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """What to PUT: the given object with the stored server fields and, if absent, status."""
    new = copy.deepcopy(obj)
    meta = new.setdefault("metadata", {})
    stored_meta = stored.get("metadata") or {}
    for field in _SERVER_META:
        if field in stored_meta:
            meta[field] = stored_meta[field]
        else:
            meta.pop(field, None)
    if "status" not in new and "status" in stored:
        new["status"] = copy.deepcopy(stored["status"])
    return new


def _same(candidate: dict[str, Any], stored: dict[str, Any]) -> bool:
    def bare(obj: dict[str, Any]) -> dict[str, Any]:
        out = dict(obj)
        out["metadata"] = {
            k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"
        }
        return out

    return bare(candidate) == bare(stored)
