"""The kinds of object edgebridge serves, and every name they go by: one table.

The admin API's path segment (``pods``), the store's and KubeEdge's resource type (``pod``),
the Kubernetes ``kind`` (``Pod``), the spellings edgectl accepts (``po``, ``pod``, ``Pod``,
``pods``), its ``apiVersion`` and whether the kind is namespaced all come from
:data:`KINDS`; :mod:`wire.resources`, :mod:`wire.manifests` and the edge's local API
(``edgecore.metaserver``) derive their tables from it.
"""

from __future__ import annotations

from typing import NamedTuple

from wire.errors import InvalidResource

CORE_API_VERSION = "v1"
DEVICES_API_VERSION = "devices.kubeedge.io/v1beta1"


class ApiKind(NamedTuple):
    """One kind of object and its names."""

    #: the admin API's path segment and what ``edgectl get`` prints in lists
    plural: str
    #: KubeEdge's resource type, the store's type (``pod`` in ``default/pod/nginx``)
    type: str
    #: the Kubernetes ``kind``
    kind: str
    #: other spellings edgectl accepts (the singular and kubectl's short names)
    aliases: tuple[str, ...]
    namespaced: bool = True
    #: travels to edges (the binding index may send it); events stay in the cloud
    mirrored: bool = True
    #: the ``apiVersion`` its manifests carry
    api_version: str = CORE_API_VERSION


KINDS: tuple[ApiKind, ...] = (
    ApiKind("nodes", "node", "Node", ("node", "no"), namespaced=False),
    ApiKind("pods", "pod", "Pod", ("pod", "po")),
    ApiKind("configmaps", "configmap", "ConfigMap", ("configmap", "cm")),
    ApiKind("secrets", "secret", "Secret", ("secret",)),
    ApiKind("devices", "device", "Device", ("device", "dev"), api_version=DEVICES_API_VERSION),
    ApiKind(
        "devicemodels",
        "devicemodel",
        "DeviceModel",
        ("devicemodel", "dm"),
        api_version=DEVICES_API_VERSION,
    ),
    ApiKind("events", "event", "Event", ("event", "ev"), mirrored=False),
)

BY_PLURAL: dict[str, ApiKind] = {k.plural: k for k in KINDS}
BY_TYPE: dict[str, ApiKind] = {k.type: k for k in KINDS}
BY_KIND: dict[str, ApiKind] = {k.kind: k for k in KINDS}
#: every accepted spelling, lower-case -> its kind
_SPELLINGS: dict[str, ApiKind] = {
    name.lower(): k for k in KINDS for name in (k.plural, k.type, k.kind, *k.aliases)
}
PLURALS: tuple[str, ...] = tuple(k.plural for k in KINDS)


def resolve(name: str) -> ApiKind:
    """Any accepted spelling of a kind (``po``, ``Pod``, ``pods``...) -> its :class:`ApiKind`.

    Raises:
        InvalidResource: an unknown name; the message lists the known plurals.
    """
    found = _SPELLINGS.get(name.strip().lower())
    if found is None:
        raise InvalidResource(f"unknown kind {name!r} (expected one of {', '.join(PLURALS)})")
    return found


def aliases_help() -> str:
    """``nodes (node, no), pods (pod, po), ...`` for help texts."""
    return ", ".join(f"{k.plural} ({', '.join(k.aliases)})" for k in KINDS)
