"""The checks of an apply batch that need more than one object: both stores run them.

A Device's desired values are checked against its DeviceModel (type, range, access). The edge
checks too, but refusing at apply answers the operator at once instead of storing a value
every edge will refuse. The model is taken from the same batch when it is there, else read
from the store; a model that does not exist yet is not an error (it may come later, and the
edge checks once it has both).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from wire.devicemodel import desired_problems
from wire.errors import InvalidObject, NotFound
from wire.resources import key_of

#: ``get(type, namespace, name)`` as :meth:`cloudhub.store.base.ObjectStore.get`
Getter = Callable[[str, str | None, str], Awaitable[dict[str, Any]]]


def has_devices(objects: list[dict[str, Any]]) -> bool:
    """Whether :func:`check_desired` has anything to check in ``objects``."""
    return any(isinstance(o, dict) and o.get("kind") == "Device" for o in objects)


async def check_desired(objects: list[dict[str, Any]], get: Getter) -> None:
    """Refuse the batch if a Device's desired values are forbidden by its DeviceModel.

    ``objects`` are validated already (:func:`wire.manifests.validate_all`).

    Raises:
        InvalidObject: the first forbidden value, naming the Device.
    """
    models: dict[tuple[str | None, str], dict[str, Any]] = {}
    for obj in objects:
        if obj.get("kind") == "DeviceModel":
            key = key_of(obj)
            models[key.namespace, key.name] = obj
    for obj in objects:
        if obj.get("kind") != "Device":
            continue
        key = key_of(obj)
        ref = ((obj.get("spec") or {}).get("deviceModelRef") or {}).get("name")
        if not ref:
            continue
        model = models.get((key.namespace, str(ref)))
        if model is None:
            try:
                model = await get("devicemodel", key.namespace, str(ref))
            except NotFound:
                continue
        problems = desired_problems(obj, model)
        if problems:
            raise InvalidObject(f"Device {key.namespace}/{key.name}: {problems[0]}")
