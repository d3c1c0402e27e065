"""Where an object write leaves for the API server: create or replace one object, guarded.

:meth:`cloudhub.store.kubernetes.KubeStore.apply` validates a batch, dry-runs it when it holds
more than one object, then calls :func:`write_object` for each. A write creates the object or
replaces it guarded by the resourceVersion just read, and on 409 re-reads and tries again (up
to ``retries``); an object equal to the stored one is not written at all. A replacement keeps
the metadata the server owns (:data:`SERVER_META`) and, if the given object has none, the
stored status.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from cloudhub.k8s.api import KubeApi
from cloudhub.store.base import Action
from cloudhub.store.kube_kinds import complete, kind_of, namespace_of
from wire.errors import Conflict, NotFound
from wire.resources import key_of

log = logging.getLogger(__name__)

#: metadata fields the server owns: copied from the stored object into a replacement
SERVER_META = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)


async def write_object(
    api: KubeApi, obj: dict[str, Any], *, dry_run: bool, retries: int
) -> tuple[Action, dict[str, Any]]:
    """Create or replace the (valid) ``obj``; what was done and what the server stored.

    Raises:
        Conflict: the object kept changing under us for ``retries`` attempts.
        StoreError: the API server refused it.
    """
    key = key_of(obj)
    kind = kind_of(key.type)
    ns = namespace_of(kind, key.namespace)
    for _ in range(retries):
        try:
            stored: dict[str, Any] | None = await api.get(kind.res, ns, key.name)
        except NotFound:
            stored = None
        if stored is None:
            body = copy.deepcopy(obj)
            for field in SERVER_META:
                body["metadata"].pop(field, None)
            try:
                created = await api.create(kind.res, ns, body, dry_run=dry_run)
            except Conflict:
                continue  # created by someone else meanwhile: replace it instead
            return "created", complete(kind.res, created)
        stored = complete(kind.res, stored)
        candidate = replacement(obj, stored)
        if same(candidate, stored):
            return "unchanged", stored
        try:
            written = await api.replace(kind.res, ns, key.name, candidate, dry_run=dry_run)
        except Conflict:
            log.debug("%s changed while we wrote it; re-reading", key)
            continue
        except NotFound:
            continue  # deleted meanwhile: create it
        return "configured", complete(kind.res, written)
    raise Conflict(f"{key}: still changing after {retries} attempts; not written")


def replacement(obj: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """What to PUT: the given object with the stored server fields and, if absent, status."""
    new = copy.deepcopy(obj)
    meta = new.setdefault("metadata", {})
    stored_meta = stored.get("metadata") or {}
    for field in SERVER_META:
        if field in stored_meta:
            meta[field] = stored_meta[field]
        else:
            meta.pop(field, None)
    if "status" not in new and "status" in stored:
        new["status"] = copy.deepcopy(stored["status"])
    return new


def same(candidate: dict[str, Any], stored: dict[str, Any]) -> bool:
    """Whether writing ``candidate`` over ``stored`` would change nothing (managedFields aside)."""

    def bare(obj: dict[str, Any]) -> dict[str, Any]:
        out = dict(obj)
        out["metadata"] = {
            k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"
        }
        return out

    return bare(candidate) == bare(stored)
