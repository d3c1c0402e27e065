"""The edge's report as the cloud reads it, and whether a Device is in sync.

``twin/edge_updated`` content is :class:`wire.twin.outbound.TwinResult` (each property a
:class:`wire.twin.outbound.MsgTwin` with versions). The cloud parses it leniently and orders
each side with :meth:`wire.twin.merge.TwinValue.order`, the same total order the edge merges
with, so both ends keep the same winner.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from wire.twin.inbound import LenientIn, Text, TypeMetadata
from wire.twin.merge import TwinValue


class VersionIn(LenientIn):
    cloud: int = 0
    edge: int = 0


class SideIn(LenientIn):
    """One side as sent: a removed desired value has no ``value``."""

    value: Text | None = None
    metadata: dict[str, Any] | None = None


class PropertyReportIn(LenientIn):
    """One property of an upstream report (:class:`MsgTwin`, parsed leniently)."""

    expected: SideIn | None = None
    actual: SideIn | None = None
    metadata: TypeMetadata | None = None
    expected_version: VersionIn = Field(default_factory=VersionIn)
    actual_version: VersionIn = Field(default_factory=VersionIn)

    def side(self, name: str, default_ts: int = 0) -> TwinValue | None:
        """``expected`` or ``actual`` as a :class:`TwinValue` (``None`` when absent)."""
        value = self.expected if name == "expected" else self.actual
        version = self.expected_version if name == "expected" else self.actual_version
        if value is None:
            return None
        ts = (value.metadata or {}).get("timestamp")
        return TwinValue(
            value.value,
            version.cloud,
            version.edge,
            ts if isinstance(ts, int) and not isinstance(ts, bool) else default_ts,
            deleted=value.value is None,
        )


class EdgeUpdatedIn(LenientIn):
    """``twin/edge_updated`` content as the cloud reads it."""

    event_id: Text = ""
    timestamp: int = 0
    twin: dict[str, PropertyReportIn]


class StateIn(LenientIn):
    """Upstream ``state/update`` content (:class:`StateOut`) as the cloud reads it."""

    event_id: Text = ""
    timestamp: int = 0
    state: str
    reason: str | None = None


def json_side(entry: Mapping[str, Any], side: str) -> TwinValue | None:
    """One side of a :func:`twin_json` object (with versions) as a :class:`TwinValue`."""
    value = entry.get(side)
    version = entry.get(f"{side}_version")
    if not isinstance(value, dict) or not isinstance(version, dict):
        return None
    meta = value.get("metadata")
    ts = meta.get("timestamp") if isinstance(meta, dict) else None
    raw = value.get("value")
    return TwinValue(
        raw if isinstance(raw, str) else None,
        int(version.get("cloud", 0)),
        int(version.get("edge", 0)),
        ts if isinstance(ts, int) else 0,
        deleted=raw is None,
    )


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
