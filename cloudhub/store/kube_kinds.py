"""What :class:`~cloudhub.store.kubernetes.KubeStore` needs to know before any request: which
API resource holds each edgebridge type (and with which server-side selectors it is listed and
watched), and how the store is tuned (:class:`KubeSettings`).

**Filtering on the server.** Only edge nodes are listed and watched (label selector
``node-role.kubernetes.io/edge``), and only scheduled pods (field selector ``spec.nodeName!=``),
so a cluster full of ordinary workloads costs little beyond its configmaps and secrets.
ConfigMaps cloudhub writes for itself (:mod:`cloudhub.k8s.acked`, labelled
:data:`~cloudhub.k8s.labels.MANAGED_BY_CLOUDHUB`) are left out the same way: cloudhub does not
get its own writes back as watch events, and edges never get them.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    Resource,
)
from cloudhub.k8s.labels import EDGE_ROLE_LABEL, NOT_MANAGED_BY_CLOUDHUB
from wire.errors import InvalidResource

#: server-side end of each watch request, seconds (the API server caps it anyway)
DEFAULT_WATCH_TIMEOUT = 300
#: seconds without an event or bookmark before a watch is deemed dead. The API server sends a
#: bookmark about every minute when asked; kopf reasons the same way to its 70 s.
DEFAULT_INACTIVITY_TIMEOUT = 70.0
#: attempts at a resourceVersion-guarded write before giving up with Conflict
DEFAULT_WRITE_RETRIES = 5
#: status writes in flight at once in update_statuses
DEFAULT_STATUS_CONCURRENCY = 8


@dataclass(frozen=True, slots=True)
class Kind:
    """How one edgebridge type maps onto the API."""

    res: Resource
    label_selector: str | None = None
    field_selector: str | None = None
    #: has a /status subresource that update_status writes
    status: bool = False


KINDS: dict[str, Kind] = {
    "node": Kind(NODES, label_selector=EDGE_ROLE_LABEL, status=True),
    "pod": Kind(PODS, field_selector="spec.nodeName!=", status=True),
    # not cloudhub's own ConfigMaps (acked records) and Secret (the auth ledger): its writes do
    # not come back as events
    "configmap": Kind(CONFIGMAPS, label_selector=NOT_MANAGED_BY_CLOUDHUB),
    "secret": Kind(SECRETS, label_selector=NOT_MANAGED_BY_CLOUDHUB),
    "device": Kind(DEVICES, status=True),
    "devicemodel": Kind(DEVICEMODELS),
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


def kind_of(type: str) -> Kind:
    """The kind that stores ``type``.

    Raises:
        InvalidResource: this store does not hold ``type``.
    """
    kind = KINDS.get(type)
    if kind is None:
        raise InvalidResource(
            f"type {type!r} is not stored here (expected one of {', '.join(KINDS)})"
        )
    return kind


def namespace_of(kind: Kind, namespace: str | None) -> str | None:
    """The namespace a request names: ``default`` if none was given, None if not namespaced."""
    return (namespace or "default") if kind.res.namespaced else None


def complete(res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with ``kind``/``apiVersion`` (list items of built-in types come without)."""
    obj.setdefault("kind", res.kind)
    obj.setdefault("apiVersion", res.api_version)
    return obj


def terminating(obj: dict[str, Any]) -> bool:
    """Marked for deletion (``deletionTimestamp``), waiting for a confirmation."""
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))
