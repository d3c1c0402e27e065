"""The pure half of the Kubernetes API emulator: resource table, selectors, patches.

:mod:`tests.support.kubeapi` serves HTTP; everything here is plain functions over dicts so the
rules the emulator enforces (which fields a selector may name, what a merge patch does, what
a filtered watch reports when an object starts or stops matching) can be read and tested on
their own. The rules are the API server's, as documented in the Kubernetes API concepts
pages, reduced to what edgebridge and ``kubectl apply`` exercise.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ResourceType:
    """One REST resource: where it lives and how it behaves."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    #: has a ``/status`` subresource: the main resource ignores status, ``/status`` only it
    status: bool = False
    #: a CustomResourceDefinition: list items keep ``kind``/``apiVersion``
    custom: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version


_CORE = "v1"
RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", _CORE, "nodes", "Node", namespaced=False, status=True),
    ResourceType("", _CORE, "pods", "Pod", namespaced=True, status=True),
    ResourceType("", _CORE, "configmaps", "ConfigMap", namespaced=True),
    ResourceType("", _CORE, "secrets", "Secret", namespaced=True),
    ResourceType("", _CORE, "namespaces", "Namespace", namespaced=False, status=True),
    ResourceType("", _CORE, "services", "Service", namespaced=True, status=True),
    ResourceType("", _CORE, "serviceaccounts", "ServiceAccount", namespaced=True),
    ResourceType("", _CORE, "events", "Event", namespaced=True),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", namespaced=True),
    ResourceType("apps", "v1", "deployments", "Deployment", namespaced=True, status=True),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    ResourceType(
        "rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False
    ),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", namespaced=True),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    ResourceType(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        status=True,
    ),
    ResourceType(
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        namespaced=False,
    ),
    ResourceType(
        "devices.kubeedge.io", "v1beta1", "devices", "Device", True, status=True, custom=True
    ),
    ResourceType(
        "devices.kubeedge.io", "v1beta1", "devicemodels", "DeviceModel", True, custom=True
    ),
)


#: the namespaces a new cluster has; writes into any other wait for its Namespace object
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def crd_name(res: ResourceType) -> str:
    """The CustomResourceDefinition that makes a custom resource served: ``plural.group``."""
    return f"{res.plural}.{res.group}"


class SelectorError(ValueError):
    """A selector the API server would refuse with 400 BadRequest."""


# --------------------------------------------------------------------------- selectors

#: field selectors the API server supports beyond metadata.name/namespace, per plural
_FIELDS: dict[str, frozenset[str]] = {
    "pods": frozenset({"spec.nodeName", "status.phase", "spec.restartPolicy"}),
    "secrets": frozenset({"type"}),
}


def _field(obj: Obj, path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


Predicate = Callable[[Obj], bool]


def _terms(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def field_selector(text: str, plural: str) -> Predicate:
    """``a=b``, ``a==b``, ``a!=b`` terms, ANDed; unsupported fields raise SelectorError."""
    checks: list[tuple[str, str, bool]] = []
    for term in _terms(text):
        if "!=" in term:
            path, value = term.split("!=", 1)
            equal = False
        elif "=" in term:
            path, value = term.replace("==", "=", 1).split("=", 1)
            equal = True
        else:
            raise SelectorError(f"invalid field selector term {term!r}")
        path = path.strip()
        allowed = {"metadata.name", "metadata.namespace"} | _FIELDS.get(plural, frozenset())
        if path not in allowed:
            raise SelectorError(f'field label not supported: "{path}"')
        checks.append((path, value.strip(), equal))
    return lambda obj: all((_field(obj, p) == v) == eq for p, v, eq in checks)


def _label_check(term: str) -> Callable[[dict[str, str]], bool]:
    if term.startswith("!"):
        absent = term[1:].strip()
        return lambda labels: absent not in labels
    if "!=" in term:
        key, value = (s.strip() for s in term.split("!=", 1))
        return lambda labels: labels.get(key) != value
    if "=" in term:
        key, value = (s.strip() for s in term.replace("==", "=", 1).split("=", 1))
        return lambda labels: labels.get(key) == value
    if " in " in term or " notin " in term or "(" in term:
        raise SelectorError(f"set-based label selectors are not emulated: {term!r}")
    return lambda labels: term in labels


def label_selector(text: str) -> Predicate:
    """``key``, ``!key``, ``key=value``, ``key==value``, ``key!=value`` terms, ANDed."""
    checks = [_label_check(term) for term in _terms(text)]

    def match(obj: Obj) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(check(labels) for check in checks)

    return match


# --------------------------------------------------------------------------- patches


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, ``null`` deletes, lists replace."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class JsonPatchError(ValueError):
    """An RFC 6902 patch that cannot be applied (the API server answers 422)."""


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise JsonPatchError(f"bad JSON pointer {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def json_patch(target: Obj, ops: list[Any]) -> Obj:
    """RFC 6902 ``test``, ``add``, ``replace`` and ``remove`` on objects (no list indexes).

    Raises:
        JsonPatchError: an operation failed (a ``test`` that does not match, a missing path).
    """
    result = copy.deepcopy(target)
    for op in ops:
        if not isinstance(op, dict) or not isinstance(op.get("path"), str):
            raise JsonPatchError(f"bad operation {op!r}")
        *parents, last = _pointer(op["path"])
        node: Any = result
        for part in parents:
            if not isinstance(node, dict) or part not in node:
                raise JsonPatchError(f"missing path {op['path']!r}")
            node = node[part]
        if not isinstance(node, dict):
            raise JsonPatchError(f"path {op['path']!r} is not in an object")
        kind = op.get("op")
        if kind == "test":
            if last not in node or node[last] != op.get("value"):
                raise JsonPatchError(f"testing value {op['path']} failed")
        elif kind in ("add", "replace"):
            if kind == "replace" and last not in node:
                raise JsonPatchError(f"replace of missing path {op['path']!r}")
            node[last] = copy.deepcopy(op.get("value"))
        elif kind == "remove":
            if last not in node:
                raise JsonPatchError(f"remove of missing path {op['path']!r}")
            del node[last]
        else:
            raise JsonPatchError(f"operation {kind!r} is not emulated")
    return result


# --------------------------------------------------------------------------- watch translation


def translate(
    event_type: str, obj: Obj, old: Obj | None, match: Predicate
) -> tuple[str, Obj] | None:
    """What a filtered watch reports for one change, as the API server does.

    An object that starts matching is ADDED, one that stops matching is DELETED (carrying its
    new state), one that never matched is not reported.
    """
    now = match(obj)
    if event_type == "MODIFIED":
        before = old is not None and match(old)
        if now and before:
            return "MODIFIED", obj
        if now:
            return "ADDED", obj
        if before:
            return "DELETED", obj
        return None
    return (event_type, obj) if now else None


def strip_server_fields(obj: Obj) -> Obj:
    """``obj`` without the fields the server owns, for "did anything change" comparisons."""
    out = copy.deepcopy(obj)
    meta = out.get("metadata") or {}
    for field in ("resourceVersion", "generation", "managedFields"):
        meta.pop(field, None)
    return out


def status_failure(code: int, reason: str, message: str, **details: Any) -> Obj:
    """A ``kind: Status`` failure body."""
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body
