"""How an edge's twin report lands in ``Device.status``: pure merge rules.

The edge reports KubeEdge's twin payload (``twin/edge_updated``): per property the edge's
``expected`` (the desired value it holds) and ``actual`` (the reported value), each with
``{cloud, edge}`` versions. Reported values are edge-owned, so the cloud keeps, per property,
the report with the greatest ``(cloud, edge)`` version and ignores older or repeated ones:
re-sent outbox rows and out-of-order deliveries change nothing, and nothing reverts
(KubeEdge can revert status: its §12 item 6). ``observedDesired`` follows the edge's expected
value by the same rule.

Versions are kept in ``metadata`` (string map, as in KubeEdge's CRD schema) under
``cloudVersion`` and ``edgeVersion``.
"""

from __future__ import annotations

import copy
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wire.errors import InvalidObject

_M = TypeVar("_M", bound=BaseModel)


class Version(BaseModel):
    model_config = ConfigDict(extra="ignore")
    cloud: int = 0
    edge: int = 0


class TwinValue(BaseModel):
    model_config = ConfigDict(extra="ignore")
    value: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class TwinProperty(BaseModel):
    model_config = ConfigDict(extra="ignore")
    expected: TwinValue | None = None
    actual: TwinValue | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    expected_version: Version = Field(default_factory=Version)
    actual_version: Version = Field(default_factory=Version)


class TwinReport(BaseModel):
    """KubeEdge's ``twin/edge_updated`` content."""

    model_config = ConfigDict(extra="ignore")
    event_id: str = ""
    timestamp: int = 0
    twin: dict[str, TwinProperty]


class StateReport(BaseModel):
    """KubeEdge's ``state/update`` content."""

    model_config = ConfigDict(extra="ignore")
    state: str
    timestamp: int = 0


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


def _stored_version(entry: dict[str, Any] | None) -> tuple[int, int]:
    meta = (entry or {}).get("metadata") or {}
    try:
        return int(meta.get("cloudVersion", -1)), int(meta.get("edgeVersion", -1))
    except (TypeError, ValueError):
        return (-1, -1)


def _entry(value: TwinValue, version: Version, typ: str | None, ts: int) -> dict[str, Any]:
    meta: dict[str, str] = {
        "timestamp": str(value.metadata.get("timestamp") or ts),
        "cloudVersion": str(version.cloud),
        "edgeVersion": str(version.edge),
    }
    if typ:
        meta["type"] = str(typ)
    return {"value": value.value if value.value is not None else "", "metadata": meta}


def merge_report(twins: list[dict[str, Any]], report: TwinReport) -> list[dict[str, Any]]:
    """``status.twins`` after applying ``report``; the input list is not modified."""
    out = copy.deepcopy(twins)
    by_name = {t.get("propertyName"): t for t in out if isinstance(t, dict)}
    for prop, incoming in report.twin.items():
        twin = by_name.get(prop)
        if twin is None:
            twin = {"propertyName": prop}
            out.append(twin)
            by_name[prop] = twin
        typ = incoming.metadata.get("type")
        if incoming.actual is not None:
            v = incoming.actual_version
            if (v.cloud, v.edge) > _stored_version(twin.get("reported")):
                twin["reported"] = _entry(incoming.actual, v, typ, report.timestamp)
        if incoming.expected is not None:
            v = incoming.expected_version
            if (v.cloud, v.edge) > _stored_version(twin.get("observedDesired")):
                # an expected without a value: the desired value was removed in the cloud
                entry = _entry(incoming.expected, v, typ, report.timestamp)
                if incoming.expected.value is None:
                    entry["metadata"]["removed"] = "true"
                twin["observedDesired"] = entry
    return out


def in_sync(device: dict[str, Any]) -> bool:
    """Every desired value has been observed by the edge and reported back."""
    desired = {
        p.get("name"): ((p.get("desired") or {}).get("value"))
        for p in (device.get("spec") or {}).get("properties") or []
        if (p.get("desired") or {}).get("value") is not None
    }
    twins = {t.get("propertyName"): t for t in (device.get("status") or {}).get("twins") or []}
    for name, want in desired.items():
        t = twins.get(name) or {}
        if (t.get("observedDesired") or {}).get("value") != want:
            return False
        if (t.get("reported") or {}).get("value") != want:
            return False
    return True
