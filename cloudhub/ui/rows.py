"""What each page shows, shaped from the fleet view: pure functions over plain data.

The handlers in :mod:`cloudhub.ui.pages` fetch (the view, presence, events) and render; the
shaping lives here so it is tested without a server or a browser.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wire.events import Event, parse_time
from wire.presentation import PodSummary, PropertyState, human_duration, pod_summary

if TYPE_CHECKING:
    from cloudhub.routes import NodePresence

#: sparkline size, CSS pixels
SPARK_WIDTH = 96
SPARK_HEIGHT = 22


def ago(unix: float | None, now: float) -> str:
    return "never" if unix is None else human_duration(now - unix) + " ago"


def sparkline(values: list[float], width: int = SPARK_WIDTH, height: int = SPARK_HEIGHT) -> str:
    """The ``points`` of an SVG polyline through ``values`` (left to right, oldest first);
    empty for fewer than two finite values."""
    vals = [v for v in values if math.isfinite(v)]
    if len(vals) < 2:
        return ""
    low, high = min(vals), max(vals)
    step = (width - 2) / (len(vals) - 1)
    pad = 2

    def y(v: float) -> float:
        if high == low:
            return height / 2  # a steady value: a line through the middle
        return pad + (height - 2 * pad) * (1 - (v - low) / (high - low))

    return " ".join(f"{1 + i * step:.1f},{y(v):.1f}" for i, v in enumerate(vals))


@dataclass(frozen=True, slots=True)
class NodeRow:
    name: str
    online: bool
    last_seen: str
    link_age: str
    version: str
    address: str
    pods: int
    devices: int


def node_row(
    name: str, node: dict[str, Any], presence: NodePresence, pods: int, devices: int, now: float
) -> NodeRow:
    status = node.get("status") or {}
    info = status.get("nodeInfo") or {}
    addresses = [a for a in status.get("addresses") or [] if isinstance(a, dict)]
    internal = next((a.get("address") for a in addresses if a.get("type") == "InternalIP"), "")
    return NodeRow(
        name=name,
        online=presence.online,
        last_seen="now" if presence.online else ago(presence.last_seen, now),
        link_age=human_duration(now - presence.connected_at) if presence.connected_at else "-",
        version=str(info.get("kubeletVersion") or "-"),
        address=str(internal or "-"),
        pods=pods,
        devices=devices,
    )


@dataclass(frozen=True, slots=True)
class PodRow:
    namespace: str
    name: str
    node: str
    summary: PodSummary
    ip: str


def pod_row(pod: dict[str, Any]) -> PodRow:
    meta = pod.get("metadata") or {}
    return PodRow(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name") or ""),
        node=str((pod.get("spec") or {}).get("nodeName") or ""),
        summary=pod_summary(pod),
        ip=str((pod.get("status") or {}).get("podIP") or "-"),
    )


@dataclass(frozen=True, slots=True)
class PropertyRow:
    state: PropertyState
    when: str
    spark: str


@dataclass(frozen=True, slots=True)
class DeviceRow:
    namespace: str
    name: str
    node: str
    state: str
    properties: list[PropertyRow]


def device_row(
    device: dict[str, Any], states: list[PropertyState], history: dict[str, list[float]]
) -> DeviceRow:
    now_ms = time.time() * 1000
    meta = device.get("metadata") or {}
    props = [
        PropertyRow(
            state=s,
            when="-"
            if s.reported_at_ms is None
            else human_duration((now_ms - s.reported_at_ms) / 1000) + " ago",
            spark=sparkline(history.get(s.name, [])),
        )
        for s in states
    ]
    return DeviceRow(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name") or ""),
        node=str((device.get("spec") or {}).get("nodeName") or ""),
        state=str((device.get("status") or {}).get("state") or "unknown"),
        properties=props,
    )


@dataclass(frozen=True, slots=True)
class EventRow:
    type: str
    reason: str
    object: str
    message: str
    count: int
    last: str


def event_rows(events: list[Event], now: float, limit: int = 20) -> list[EventRow]:
    """The ``limit`` most recently seen events, newest first."""
    newest = sorted(events, key=lambda e: e.last_timestamp, reverse=True)[:limit]
    return [
        EventRow(
            type=e.type,
            reason=e.reason,
            object=f"{e.involved_object.kind.lower()}/{e.involved_object.name}",
            message=e.message,
            count=e.count,
            last=ago(parse_time(e.last_timestamp) or None, now),
        )
        for e in newest
    ]
