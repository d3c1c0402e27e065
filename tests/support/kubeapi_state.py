"""The object store behind the Kubernetes API emulator: no I/O, no clock beyond timestamps.

:class:`ObjectState` holds every object, the one global resourceVersion counter and the event
history, and applies the API server's write rules (see :mod:`tests.support.kubeapi`). The HTTP
layer turns :class:`ApiError` into a ``kind: Status`` answer and subscribes watch streams with
:attr:`ObjectState.listeners`; everything here runs synchronously, so a write and the fan-out
of its event happen with no await in between and a watcher registered before a replay can
neither miss nor double an event.
"""

from __future__ import annotations

import copy
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tests.support.kubeapi_model import (
    INITIAL_NAMESPACES,
    RESOURCES,
    JsonPatchError,
    Obj,
    Predicate,
    ResourceType,
    SelectorError,
    crd_name,
    field_selector,
    json_patch,
    label_selector,
    merge_patch,
    status_failure,
    strip_server_fields,
    translate,
)

Key = tuple[str, str, str, str]  # (group, plural, namespace or "", name)
_CONFLICT = "the object has been modified; please apply your changes to the latest version"
#: metadata an update cannot change
_FIXED_META = (
    "uid",
    "creationTimestamp",
    "namespace",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    """A request the API server refuses; :attr:`body` is the ``kind: Status`` answer."""

    def __init__(self, code: int, reason: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.body = status_failure(code, reason, message, **details)


@dataclass(slots=True)
class Event:
    """One committed change; ``old`` is the previous state for MODIFIED."""

    rv: int
    res: ResourceType
    type: str
    obj: Obj
    old: Obj | None


def check_identity(res: ResourceType, body: Obj, ns: str, name: str) -> None:
    """The body names the object the URL names, with the URL's kind."""
    meta = body.get("metadata") or {}
    if meta.get("name") != name:
        raise ApiError(400, "BadRequest", "the name of the object does not match the URL")
    if res.namespaced and meta.get("namespace") not in (None, "", ns):
        raise ApiError(400, "BadRequest", "the namespace of the object does not match the URL")
    for field_name, want in (("kind", res.kind), ("apiVersion", res.api_version)):
        if body.get(field_name) not in (None, want):
            raise ApiError(400, "BadRequest", f"{field_name} {body.get(field_name)!r} != {want!r}")


class ObjectState:
    """Objects, resourceVersions and history, with the API server's write rules."""

    def __init__(self, *, history: int = 10_000) -> None:
        self.objects: dict[Key, Obj] = {}
        #: the last resourceVersion handed out; not 0, which a watch reads as "any version"
        self.rv = 1
        #: every event with an rv at or below this is gone from the history
        self.floor = 0
        self.events: deque[Event] = deque()
        self.history = history
        #: called with every committed event, synchronously
        self.listeners: set[Callable[[Event], None]] = set()
        for ns in INITIAL_NAMESPACES:  # there from the start, as in a new cluster
            self.objects[("", "namespaces", "", ns)] = {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": ns,
                    "uid": str(uuid.uuid4()),
                    "creationTimestamp": now(),
                    "resourceVersion": "1",
                },
                "status": {"phase": "Active"},
            }

    def served(self, res: ResourceType) -> bool:
        """Built-in resources always; a custom one once its CRD exists (as the API server)."""
        if not res.custom:
            return True
        return ("apiextensions.k8s.io", "customresourcedefinitions", "", crd_name(res)) in (
            self.objects
        )

    def require_namespace(self, ns: str) -> None:
        """Writes into a namespace that does not exist are refused with 404, as the API
        server's NamespaceLifecycle admission does."""
        if ("", "namespaces", "", ns) not in self.objects:
            raise ApiError(
                404, "NotFound", f'namespaces "{ns}" not found', name=ns, kind="namespaces"
            )

    # ------------------------------------------------------------------ reads

    def stored(self, res: ResourceType, key: Key) -> Obj:
        obj = self.objects.get(key)
        if obj is None:
            raise ApiError(
                404, "NotFound", f'{res.plural} "{key[3]}" not found', name=key[3], kind=res.plural
            )
        return obj

    def matcher(self, res: ResourceType, ns: str, query: dict[str, str]) -> Predicate:
        """The watch/list filter of a request (namespace, fieldSelector, labelSelector)."""
        try:
            fields = field_selector(query.get("fieldSelector", ""), res.plural)
            labels = label_selector(query.get("labelSelector", ""))
        except SelectorError as exc:
            raise ApiError(400, "BadRequest", str(exc)) from exc

        def match(obj: Obj) -> bool:
            in_ns = not ns or (obj.get("metadata") or {}).get("namespace") == ns
            return in_ns and fields(obj) and labels(obj)

        return match

    def current(self, res: ResourceType, match: Predicate) -> list[Obj]:
        return [
            copy.deepcopy(obj)
            for key, obj in sorted(self.objects.items())
            if key[:2] == (res.group, res.plural) and match(obj)
        ]

    def listing(self, res: ResourceType, ns: str, query: dict[str, str]) -> Obj:
        items = self.current(res, self.matcher(res, ns, query))
        if not res.custom:  # the API server leaves these out of built-in list items
            for item in items:
                item.pop("kind", None)
                item.pop("apiVersion", None)
        return {
            "kind": f"{res.kind}List",
            "apiVersion": res.api_version,
            "metadata": {"resourceVersion": str(self.rv)},
            "items": items,
        }

    def replay(self, res: ResourceType, since: int, match: Predicate) -> list[Obj]:
        """Watch events after ``since`` as the filtered watch reports them.

        Raises:
            ApiError: 410 Expired, ``since`` is older than the history.
        """
        if since < self.floor:
            raise ApiError(410, "Expired", f"too old resource version: {since} ({self.floor})")
        out: list[Obj] = []
        for event in self.events:
            if event.rv > since and event.res == res:
                found = translate(event.type, event.obj, event.old, match)
                if found is not None:
                    out.append({"type": found[0], "object": copy.deepcopy(found[1])})
        return out

    def compact(self) -> None:
        """Forget all history: watches from any older resourceVersion get 410."""
        self.events.clear()
        self.floor = self.rv

    # ------------------------------------------------------------------ writes

    def commit(
        self, res: ResourceType, key: Key, event_type: str, obj: Obj, old: Obj | None
    ) -> Obj:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        if event_type == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj
        event = Event(self.rv, res, event_type, copy.deepcopy(obj), old)
        self.events.append(event)
        while len(self.events) > self.history:
            self.floor = self.events.popleft().rv
        for listener in list(self.listeners):
            listener(event)
        return copy.deepcopy(obj)

    def create(
        self, res: ResourceType, ns: str, body: Obj, *, dry_run: bool, keep_status: bool = False
    ) -> Obj:
        meta = body.setdefault("metadata", {})
        if not isinstance(meta, dict) or not meta.get("name"):
            raise ApiError(422, "Invalid", f"{res.kind} is invalid: metadata.name: Required value")
        if res.namespaced:
            ns = ns or meta.get("namespace") or "default"
        check_identity(res, body, ns, meta["name"])
        if res.namespaced:
            self.require_namespace(ns)
        key = (res.group, res.plural, ns, meta["name"])
        if key in self.objects:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{res.plural} "{meta["name"]}" already exists',
                name=meta["name"],
                kind=res.plural,
            )
        body.update(kind=res.kind, apiVersion=res.api_version)
        if res.namespaced:
            meta["namespace"] = ns
        for server_owned in ("resourceVersion", "deletionTimestamp", "generation"):
            meta.pop(server_owned, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now())
        if "spec" in body:
            meta["generation"] = 1
        if res.custom and res.status and not keep_status:
            body.pop("status", None)  # a CRD with a status subresource ignores it on create
        if dry_run:
            return body
        return self.commit(res, key, "ADDED", body, None)

    def update(
        self,
        res: ResourceType,
        key: Key,
        body: Obj,
        *,
        sub: str | None,
        dry_run: bool,
        keep_status: bool = True,
    ) -> Obj:
        """A replace (PUT) of the object or of its ``status`` subresource."""
        stored = self.stored(res, key)
        given = (body.get("metadata") or {}).get("resourceVersion")
        if given and given != stored["metadata"]["resourceVersion"]:
            message = f'Operation cannot be fulfilled on {res.plural} "{key[3]}": {_CONFLICT}'
            raise ApiError(409, "Conflict", message)
        if sub == "status":
            new = copy.deepcopy(stored)
            new.pop("status", None)
            if body.get("status") is not None:
                new["status"] = copy.deepcopy(body["status"])
        else:
            new = copy.deepcopy(body)
            new.update(kind=res.kind, apiVersion=res.api_version)
            meta = new.setdefault("metadata", {})
            old_meta = stored["metadata"]
            for fixed in _FIXED_META:
                if fixed in old_meta:
                    meta[fixed] = old_meta[fixed]
            if res.status and keep_status:
                new.pop("status", None)
                if "status" in stored:
                    new["status"] = copy.deepcopy(stored["status"])
            if "spec" in new or "generation" in old_meta:
                generation = int(old_meta.get("generation") or 1)
                meta["generation"] = generation + (new.get("spec") != stored.get("spec"))
        if strip_server_fields(new) == strip_server_fields(stored):
            return copy.deepcopy(stored)  # the API server skips writes that change nothing
        if dry_run:
            return new
        return self.commit(res, key, "MODIFIED", new, copy.deepcopy(stored))

    def patch(
        self, res: ResourceType, key: Key, patch: Obj, *, sub: str | None, dry_run: bool
    ) -> Obj:
        """A JSON merge patch (strategic merge patches are treated the same)."""
        stored = self.stored(res, key)
        merged = merge_patch(stored, patch)
        if not isinstance(merged.get("metadata"), dict) or merged["metadata"].get("name") != key[3]:
            raise ApiError(400, "BadRequest", "a patch may not change metadata.name")
        return self.update(res, key, merged, sub=sub, dry_run=dry_run)

    def json_patch(
        self, res: ResourceType, key: Key, ops: list[Any], *, sub: str | None, dry_run: bool
    ) -> Obj:
        """An RFC 6902 JSON patch, applied atomically (a failed ``test`` writes nothing: 422)."""
        stored = self.stored(res, key)
        try:
            patched = json_patch(stored, ops)
        except JsonPatchError as exc:
            raise ApiError(422, "Invalid", str(exc)) from exc
        meta = patched.get("metadata")
        if not isinstance(meta, dict) or meta.get("name") != key[3]:
            raise ApiError(400, "BadRequest", "a patch may not change metadata.name")
        return self.update(res, key, patched, sub=sub, dry_run=dry_run)

    def delete(
        self, res: ResourceType, key: Key, options: Obj, query: dict[str, str], *, dry_run: bool
    ) -> Obj:
        stored = self.stored(res, key)
        pre = options.get("preconditions") or {}
        meta = stored["metadata"]
        for field_name in ("uid", "resourceVersion"):
            if pre.get(field_name) and pre[field_name] != meta.get(field_name):
                raise ApiError(
                    409,
                    "Conflict",
                    f"Precondition failed: {field_name} in precondition: {pre[field_name]}, "
                    f"{field_name} in object meta: {meta.get(field_name)}",
                )
        grace = options.get("gracePeriodSeconds", query.get("gracePeriodSeconds"))
        if res.plural == "pods" and (stored.get("spec") or {}).get("nodeName"):
            # A pod on a node goes away once its node confirms with a 0-second delete.
            default = (stored.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            if int(default if grace is None else grace) > 0:
                if "deletionTimestamp" in meta or dry_run:
                    return copy.deepcopy(stored)
                new = copy.deepcopy(stored)
                new["metadata"].update(
                    deletionTimestamp=now(),
                    deletionGracePeriodSeconds=int(default if grace is None else grace),
                )
                return self.commit(res, key, "MODIFIED", new, copy.deepcopy(stored))
        if dry_run:
            return copy.deepcopy(stored)
        return self.commit(res, key, "DELETED", copy.deepcopy(stored), None)

    def seed(self, obj: Obj) -> Obj:
        """Create or wholly replace ``obj`` (status included), as setup code wants."""
        res = resource_of(obj)
        meta = obj.setdefault("metadata", {})
        ns = (meta.get("namespace") or "default") if res.namespaced else ""
        key = (res.group, res.plural, ns, meta["name"])
        body = copy.deepcopy(obj)
        if key not in self.objects:
            return self.create(res, ns, body, dry_run=False, keep_status=True)
        body["metadata"]["resourceVersion"] = self.objects[key]["metadata"]["resourceVersion"]
        return self.update(res, key, body, sub=None, dry_run=False, keep_status=False)


def resource_of(obj: Obj) -> ResourceType:
    for res in RESOURCES:
        if res.kind == obj.get("kind") and res.api_version == obj.get("apiVersion"):
            return res
    raise ValueError(f"no resource for {obj.get('apiVersion')}/{obj.get('kind')}")
