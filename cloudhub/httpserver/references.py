"""The admin API's two rules about objects that name each other (see :mod:`wire.references`):
warn about references to objects that do not exist, refuse to delete a DeviceModel in use.

Both read only through :class:`~cloudhub.store.base.ObjectStore`, so they hold alike for the
embedded store and for Kubernetes (where ``kubectl delete`` can still bypass them: the edge
then keeps the last model it had, see :mod:`edgecore.devicetwin.desired`).
"""

from __future__ import annotations

import logging
from typing import Any

from cloudhub.store.base import BulkReader, ObjectStore
from wire.errors import Conflict, NotFound
from wire.references import Reference, dangling_warning, references_of, users_of
from wire.resources import key_of

logger = logging.getLogger(__name__)

#: Devices named in a refusal; more are counted
_SHOWN = 10


async def dangling_references(store: ObjectStore, objects: list[dict[str, Any]]) -> list[str]:
    """Warnings for applied objects that name a node or device model that does not exist
    (accepted, as Kubernetes does: it may come later). One read for the batch where the store
    can (:class:`BulkReader`), else one per distinct referent."""
    known: dict[Reference, bool] = {}
    for obj in objects:
        key = key_of(obj)
        known[Reference(key.type, key.namespace, key.name)] = True
    named = list(
        dict.fromkeys(ref for obj in objects for ref in references_of(obj) if ref not in known)
    )
    if isinstance(store, BulkReader):
        found = await store.existing([(r.type, r.namespace, r.name) for r in named])
        known.update((r, (r.type, r.namespace, r.name) in found) for r in named)
    else:
        for ref in named:
            try:
                await store.get(ref.type, ref.namespace, ref.name)
                known[ref] = True
            except NotFound:
                known[ref] = False
    warnings = [
        dangling_warning(obj, ref)
        for obj in objects
        for ref in references_of(obj)
        if not known[ref]
    ]
    for warning in warnings:
        logger.warning("applied, but %s", warning)
    return warnings


async def refuse_used_model(store: ObjectStore, model: Reference) -> None:
    """Refuse to delete a DeviceModel that Devices use, naming them, as a finalizer would.

    Raises:
        Conflict: Devices refer to it.
    """
    devices, _ = await store.list("device")
    users = users_of(model, devices)
    if users:
        shown = ", ".join(users[:_SHOWN])
        if len(users) > _SHOWN:
            shown += f" and {len(users) - _SHOWN} more"
        raise Conflict(
            f"{model} is used by {shown}: delete those or change their deviceModelRef first"
        )
