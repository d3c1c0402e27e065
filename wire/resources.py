"""Resource strings, as KubeEdge writes them.

Edge side, an object's key is ``{namespace}/{type}/{name}`` with ``null`` as the namespace of
cluster-scoped objects: ``default/pod/nginx``, ``null/node/edge-1``. The cloud side prefixes
``node/{node}/`` and strips it before sending. These keys are also the edge cache's primary
keys, so the same function must produce them on both sides: :func:`key_of`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from wire.errors import InvalidResource
from wire.kinds import KINDS

NULL_NAMESPACE = "null"
NODE_PREFIX = "node/"

#: Kubernetes kind -> KubeEdge resource type, for the kinds that travel to edges.
KIND_TO_TYPE: dict[str, str] = {k.kind: k.type for k in KINDS if k.mirrored}
TYPE_TO_KIND: dict[str, str] = {v: k for k, v in KIND_TO_TYPE.items()}
CLUSTER_SCOPED_TYPES = frozenset(k.type for k in KINDS if not k.namespaced)
#: Kinds the cloud records and serves (admin API, ``edgectl get``) but never sends to edges
#: nor accepts in an apply: Kubernetes Events (see :mod:`wire.events`).
RECORDED_KIND_TO_TYPE: dict[str, str] = {k.kind: k.type for k in KINDS if not k.mirrored}
#: Plural resource name (admin API paths, ``edgectl get KIND``) -> type, for every kind served.
PLURAL_TO_TYPE: dict[str, str] = {k.plural: k.type for k in KINDS}


class ResourceKey(NamedTuple):
    """Identity of one object: ``{namespace|null}/{type}/{name}``.

    A named tuple rather than a frozen dataclass: built for every object a message or a
    write touches, and a frozen dataclass's ``__init__`` took three times as long.
    """

    namespace: str | None
    type: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace or NULL_NAMESPACE}/{self.type}/{self.name}"

    @classmethod
    def parse(cls, resource: str) -> ResourceKey:
        """Parse an edge-side key. Extra trailing segments are refused.

        Raises:
            InvalidResource: not exactly three non-empty segments.
        """
        parts = resource.split("/")
        if len(parts) != 3 or not all(parts):
            raise InvalidResource(f"resource {resource!r} is not namespace/type/name")
        ns, typ, name = parts
        return cls(None if ns == NULL_NAMESPACE else ns, typ, name)

    @property
    def kind(self) -> str:
        """The Kubernetes kind, or the type itself for types edgebridge does not map."""
        return TYPE_TO_KIND.get(self.type, self.type)

    def for_node(self, node: str) -> str:
        """The cloud-side resource string for this key on ``node``."""
        return f"{NODE_PREFIX}{node}/{self}"


def key_of(obj: dict[str, Any]) -> ResourceKey:
    """The key of a Kubernetes-shaped object (``kind`` and ``metadata`` are required).

    Raises:
        InvalidResource: unknown kind, missing name, or a namespace that is not a string.
    """
    kind = obj.get("kind")
    typ = KIND_TO_TYPE.get(kind) if isinstance(kind, str) else None
    if typ is None:
        raise InvalidResource(f"kind {kind!r} is not one edgebridge mirrors")
    meta = obj.get("metadata") or {}
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        raise InvalidResource(f"{kind} without metadata.name")
    ns = None if typ in CLUSTER_SCOPED_TYPES else (meta.get("namespace") or "default")
    if ns is not None and not isinstance(ns, str):
        raise InvalidResource(f"{kind} {name}: metadata.namespace must be a string")
    return ResourceKey(ns, typ, name)


def resource_version_of(obj: dict[str, Any]) -> str:
    """``metadata.resourceVersion`` as the opaque string it is ("" when absent)."""
    meta = obj.get("metadata") or {}
    rv = meta.get("resourceVersion", "") if isinstance(meta, dict) else ""
    return str(rv) if rv is not None else ""


def split_node_prefix(resource: str) -> tuple[str, str]:
    """``node/{node}/{rest}`` -> ``(node, rest)``.

    Raises:
        InvalidResource: the string has no ``node/{node}/`` prefix.
    """
    if not resource.startswith(NODE_PREFIX):
        raise InvalidResource(f"resource {resource!r} has no node/ prefix")
    node, sep, rest = resource[len(NODE_PREFIX) :].partition("/")
    if not node or not sep or not rest:
        raise InvalidResource(f"resource {resource!r} is not node/NAME/...")
    return node, rest
