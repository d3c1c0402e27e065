"""How an edge's twin report lands in ``Device.status``: pure merge rules.

The edge reports KubeEdge's twin payload (``twin/edge_updated``, parsed by :mod:`wire.twin`):
per property the edge's ``expected`` (the desired value it holds) and ``actual`` (the reported
value), each with ``{cloud, edge}`` versions. Reported values are edge-owned, so the cloud keeps,
per property, the greatest report by the twin's total order (:meth:`wire.twin.TwinValue.order`,
the edge's own) and ignores older or repeated ones:
re-sent outbox rows and out-of-order deliveries change nothing, and nothing reverts
(KubeEdge can revert status: its §12 item 6). ``observedDesired`` follows the edge's expected
value by the same rule.

Versions are kept in ``metadata`` (string map, as in KubeEdge's CRD schema) under
``cloudVersion`` and ``edgeVersion``, beside the value's ``timestamp``.
"""

from __future__ import annotations

import copy
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from wire.errors import InvalidObject
from wire.twin import EdgeUpdatedIn, StateIn, TwinValue, merge

_M = TypeVar("_M", bound=BaseModel)


TwinReport = EdgeUpdatedIn
"""KubeEdge's ``twin/edge_updated`` content, as :mod:`wire.twin` parses it."""


StateReport = StateIn
"""KubeEdge's ``state/update`` content, as :mod:`wire.twin` parses it."""


def parse_twin_report(content: Any) -> TwinReport:
    """Raises InvalidObject with the first problem."""
    return _parse(TwinReport, content)


def parse_state_report(content: Any) -> StateReport:
    """Raises InvalidObject with the first problem."""
    return _parse(StateReport, content)


def _parse(model: type[_M], content: Any) -> _M:
    try:
        if isinstance(content, str):
            return model.model_validate_json(content)
        return model.model_validate(content)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "content"
        raise InvalidObject(f"{where}: {first['msg']}") from exc


def _stored(entry: dict[str, Any] | None) -> TwinValue | None:
    """A stored ``reported``/``observedDesired`` entry as the twin value it was made from."""
    if not isinstance(entry, dict):
        return None
    meta = entry.get("metadata") or {}
    try:
        cloud, edge = int(meta["cloudVersion"]), int(meta["edgeVersion"])
        ts = int(meta.get("timestamp") or 0)
    except (KeyError, TypeError, ValueError):
        return None  # written by someone else: any versioned report replaces it
    removed = meta.get("removed") == "true"
    value = entry.get("value")
    return TwinValue(
        None if removed else str(value if value is not None else ""),
        cloud,
        edge,
        ts,
        deleted=removed,
    )


def _entry(value: TwinValue, typ: str | None) -> dict[str, Any]:
    meta: dict[str, str] = {
        "timestamp": str(value.timestamp),
        "cloudVersion": str(value.cloud),
        "edgeVersion": str(value.edge),
    }
    if typ:
        meta["type"] = typ
    if value.deleted:
        # an expected without a value: the desired value was removed in the cloud
        meta["removed"] = "true"
    return {"value": value.value if value.value is not None else "", "metadata": meta}


def merge_report(twins: list[dict[str, Any]], report: TwinReport) -> list[dict[str, Any]]:
    """``status.twins`` after applying ``report``; the input list is not modified.

    Each side keeps the greater value by :meth:`wire.twin.TwinValue.order`, the order the edge
    merges with, so re-sent, duplicated and reordered reports end in the same status.
    """
    out = copy.deepcopy(twins)
    by_name = {t.get("propertyName"): t for t in out if isinstance(t, dict)}
    for prop, incoming in report.twin.items():
        twin = by_name.get(prop)
        if twin is None:
            twin = {"propertyName": prop}
            out.append(twin)
            by_name[prop] = twin
        typ = incoming.metadata.type if incoming.metadata and incoming.metadata.type else None
        for side, key in (("actual", "reported"), ("expected", "observedDesired")):
            candidate = incoming.side(side, report.timestamp)
            if candidate is None:
                continue
            held = _stored(twin.get(key))
            if held is None or (merge(held, candidate) is candidate and candidate != held):
                twin[key] = _entry(candidate, typ)
    return out
