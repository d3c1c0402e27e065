"""Which objects an object refers to by name, pure.

A Pod names the node it is bound to (``spec.nodeName``); a Device names its node and its
DeviceModel (``spec.deviceModelRef.name``, in the Device's namespace). Kubernetes accepts an
object whose references dangle (the referent may come later), and so do we, with a warning;
but deleting a DeviceModel that Devices still use is refused, as a finalizer would: without
its model an edge can no longer check those Devices' values.

The one place these references are read, used by the admin API for both rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wire.resources import KIND_TO_TYPE


@dataclass(frozen=True, slots=True)
class Reference:
    """An object named by another: ``type`` as the store names types, ``namespace`` None for
    cluster-scoped ones."""

    type: str
    namespace: str | None
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.type} {where}{self.name}"


def _meta(obj: dict[str, Any], field: str) -> str:
    return str((obj.get("metadata") or {}).get(field) or "")


def references_of(obj: dict[str, Any]) -> list[Reference]:
    """The objects ``obj`` names and needs: its node, its device model."""
    kind = KIND_TO_TYPE.get(str(obj.get("kind")))
    spec = obj.get("spec")
    if kind not in ("pod", "device") or not isinstance(spec, dict):
        return []
    refs: list[Reference] = []
    node = spec.get("nodeName")
    if isinstance(node, str) and node:
        refs.append(Reference("node", None, node))
    if kind == "device":
        model = (spec.get("deviceModelRef") or {}).get("name")
        if isinstance(model, str) and model:
            refs.append(Reference("devicemodel", _meta(obj, "namespace") or "default", model))
    return refs


def describe(obj: dict[str, Any]) -> str:
    """``device default/thermostat-1``: how a referring object is named in messages."""
    kind = KIND_TO_TYPE.get(str(obj.get("kind")), str(obj.get("kind")).lower())
    ns = _meta(obj, "namespace")
    return f"{kind} {ns + '/' if ns else ''}{_meta(obj, 'name')}"


def users_of(target: Reference, objects: list[dict[str, Any]]) -> list[str]:
    """The objects among ``objects`` that refer to ``target``, described, sorted."""
    return sorted(describe(o) for o in objects if target in references_of(o))


def dangling_warning(obj: dict[str, Any], missing: Reference) -> str:
    """The warning for an object accepted although ``missing`` does not exist."""
    if missing.type == "devicemodel":
        consequence = "the edge cannot check its values until it exists"
    else:
        consequence = "nothing runs or reports there until it exists"
    return f"{describe(obj)} refers to {missing}, which does not exist: {consequence}"
