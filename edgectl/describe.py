"""``edgectl describe``: one object in words, with what relates to it (pure).

Laid out as kubectl lays it out: ``Field:  value`` lines, indented sections, small tables,
and the object's events last. For a node, the pods and devices bound to it are listed too.
The caller fetches; these functions only format.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from edgectl.render import (
    age,
    condition,
    event_time,
    format_table,
    meta,
    pod_columns,
    property_rows,
    since,
)
from wire.kinds import ApiKind
from wire.presentation import parse_time

NONE = "<none>"


def describe(
    kind: ApiKind,
    obj: dict[str, Any],
    *,
    events: list[dict[str, Any]] | None,
    pods: list[dict[str, Any]] | None = None,
    devices: list[dict[str, Any]] | None = None,
    now: dt.datetime,
) -> str:
    """The text of ``edgectl describe`` for one object.

    Args:
        events: all events the server has (those about ``obj`` are picked); None when the
            server keeps none.
        pods, devices: for a node, the pods and devices bound to it.
    """
    lines = _header(kind, obj, now)
    body = {
        "nodes": lambda: _node(obj, pods or [], devices or [], now),
        "pods": lambda: _pod(obj, now),
        "devices": lambda: _device(obj, now),
        "devicemodels": lambda: _device_model(obj),
        "configmaps": lambda: _data(obj, secret=False),
        "secrets": lambda: _data(obj, secret=True),
        "events": lambda: _event(obj, now),
    }.get(kind.plural)
    if body is not None:
        lines += body()
    if kind.plural != "events":
        lines += _events(kind, obj, events, now)
    return "\n".join(lines)


def _field(name: str, value: Any, indent: int = 0) -> str:
    return f"{' ' * indent}{name + ':':<14}{value}"


def _pairs(mapping: Any) -> list[str]:
    if not isinstance(mapping, dict) or not mapping:
        return [NONE]
    return [f"{k}={v}" for k, v in sorted(mapping.items())]


def _multi(name: str, values: list[str]) -> list[str]:
    out = [_field(name, values[0])]
    out += [" " * 14 + v for v in values[1:]]
    return out


def _header(kind: ApiKind, obj: dict[str, Any], now: dt.datetime) -> list[str]:
    lines = [_field("Name", meta(obj, "name"))]
    if kind.namespaced:
        lines.append(_field("Namespace", meta(obj, "namespace") or "default"))
    m = obj.get("metadata") or {}
    lines += _multi("Labels", _pairs(m.get("labels")))
    lines += _multi("Annotations", _pairs(m.get("annotations")))
    created = m.get("creationTimestamp")
    lines.append(_field("Created", f"{created} ({age(obj, now)} ago)" if created else NONE))
    return lines


def _table(rows: list[list[str]], indent: int = 2) -> list[str]:
    return [" " * indent + line for line in format_table(rows).splitlines()]


def _conditions(obj: dict[str, Any], times: dict[str, str], now: dt.datetime) -> list[str]:
    """The conditions table; ``times``: column title -> the condition's timestamp field."""
    conds = [c for c in (obj.get("status") or {}).get("conditions") or [] if isinstance(c, dict)]
    if not conds:
        return ["Conditions:    " + NONE]
    rows = [["Type", "Status", *times, "Reason", "Message"]]
    for c in conds:
        ages = [since(c.get(field), now, missing="-") for field in times.values()]
        rows.append(
            [
                str(c.get("type", "")),
                str(c.get("status", "")),
                *ages,
                str(c.get("reason") or ""),
                " ".join(str(c.get("message") or "").split()),
            ]
        )
    return ["Conditions:", *_table(rows)]


def _node(
    node: dict[str, Any],
    pods: list[dict[str, Any]],
    devices: list[dict[str, Any]],
    now: dt.datetime,
) -> list[str]:
    status = node.get("status") or {}
    ready = condition(node, "Ready")
    seen = parse_time(ready.get("lastHeartbeatTime"))
    state = "online" if ready.get("status") == "True" else "offline"
    last = "never" if seen is None else f"{since(ready.get('lastHeartbeatTime'), now)} ago"
    lines = [_field("Status", f"{state} (last seen {last})")]
    times = {"LastHeartbeat": "lastHeartbeatTime", "LastTransition": "lastTransitionTime"}
    lines += _conditions(node, times, now)
    addresses = [
        f"{a.get('type')}: {a.get('address')}"
        for a in status.get("addresses") or []
        if isinstance(a, dict)
    ]
    lines.append("Addresses:" + ("" if addresses else "     " + NONE))
    lines += [f"  {a}" for a in addresses]
    info = status.get("nodeInfo") or {}
    if isinstance(info, dict) and info:
        lines.append("System Info:")
        lines += [f"  {k}: {v}" for k, v in info.items()]
    lines.append(f"Pods:          ({len(pods)} bound)" if pods else "Pods:          " + NONE)
    if pods:
        rows = [["Namespace", "Name", "Ready", "Status", "Restarts", "Age"]]
        for pod in pods:
            rows.append([meta(pod, "namespace"), meta(pod, "name"), *pod_columns(pod, now)])
            rows[-1].append(age(pod, now))
        lines += _table(rows)
    lines.append(f"Devices:       ({len(devices)} bound)" if devices else "Devices:       " + NONE)
    if devices:
        rows = [["Namespace", "Name", "Model", "State", "Properties"]]
        for dev in devices:
            spec = dev.get("spec") or {}
            rows.append(
                [
                    meta(dev, "namespace"),
                    meta(dev, "name"),
                    str((spec.get("deviceModelRef") or {}).get("name") or NONE),
                    _device_state(dev),
                    str(len(spec.get("properties") or [])),
                ]
            )
        lines += _table(rows)
    return lines


def _pod(pod: dict[str, Any], now: dt.datetime) -> list[str]:
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    ready, shown, restarts = pod_columns(pod, now)
    lines = [
        _field("Node", spec.get("nodeName") or NONE),
        _field("Status", shown),
        _field("IP", status.get("podIP") or NONE),
        _field("Ready", ready),
        _field("Restarts", restarts),
    ]
    statuses = {
        cs.get("name"): cs for cs in status.get("containerStatuses") or [] if isinstance(cs, dict)
    }
    lines.append("Containers:")
    for container in spec.get("containers") or []:
        if not isinstance(container, dict):
            continue
        cs = statuses.get(container.get("name")) or {}
        lines.append(f"  {container.get('name')}:")
        lines.append(_field("Image", container.get("image") or NONE, 4))
        if cs.get("containerID"):
            lines.append(_field("Container ID", cs["containerID"], 4))
        lines += _container_state("State", cs.get("state"), now)
        if cs.get("lastState"):
            lines += _container_state("Last State", cs.get("lastState"), now)
        lines.append(_field("Ready", "True" if cs.get("ready") else "False", 4))
        lines.append(_field("Restarts", cs.get("restartCount", 0), 4))
    lines += _conditions(pod, {"LastTransition": "lastTransitionTime"}, now)
    return lines


def _container_state(label: str, state: Any, now: dt.datetime) -> list[str]:
    if not isinstance(state, dict) or not state:
        return [_field(label, "Waiting (no status reported yet)", 4)]
    name, detail = next(iter(state.items()))
    detail = detail if isinstance(detail, dict) else {}
    lines = [_field(label, name.capitalize(), 4)]
    for key in ("reason", "message", "exitCode", "signal", "startedAt", "finishedAt"):
        if detail.get(key) not in (None, ""):
            value = detail[key]
            if key.endswith("At"):
                value = f"{value} ({since(value, now)} ago)"
            lines.append(_field("  " + key[0].upper() + key[1:], value, 4))
    return lines


def _device_state(dev: dict[str, Any]) -> str:
    status = dev.get("status") or {}
    state = status.get("state") or (status.get("extensions") or {}).get("state")
    return str(state or "unknown")


def _device(dev: dict[str, Any], now: dt.datetime) -> list[str]:
    spec = dev.get("spec") or {}
    protocol = spec.get("protocol") or {}
    lines = [
        _field("Model", (spec.get("deviceModelRef") or {}).get("name") or NONE),
        _field("Node", spec.get("nodeName") or NONE),
        _field("Protocol", protocol.get("protocolName") or NONE),
        _field("State", _device_state(dev)),
    ]
    rows = property_rows(dev, now)
    if not rows:
        return [*lines, "Properties:    " + NONE]
    header = ["Property", "Desired", "Reported", "Updated", "Sync"]
    return [*lines, "Properties:", *_table([header, *rows])]


def _device_model(model: dict[str, Any]) -> list[str]:
    props = [p for p in (model.get("spec") or {}).get("properties") or [] if isinstance(p, dict)]
    if not props:
        return ["Properties:    " + NONE]
    rows = [["Name", "Type", "Access", "Minimum", "Maximum", "Unit"]]
    for p in props:
        rows.append(
            [
                str(p.get(k) if p.get(k) not in (None, "") else "-")
                for k in ("name", "type", "accessMode", "minimum", "maximum", "unit")
            ]
        )
    return ["Properties:", *_table(rows)]


def _data(obj: dict[str, Any], *, secret: bool) -> list[str]:
    data = {**(obj.get("data") or {}), **(obj.get("binaryData") or {})}
    if not data:
        return ["Data:          " + NONE]
    lines = ["Data:"]
    for key, value in sorted(data.items()):
        if secret:
            lines.append(f"  {key}:  {len(str(value)) * 3 // 4} bytes")
        else:
            lines += [f"  {key}:", "  ----", *(f"  {line}" for line in str(value).splitlines())]
    return lines


def _event(ev: dict[str, Any], now: dt.datetime) -> list[str]:
    involved = ev.get("involvedObject") or {}
    return [
        _field("Type", ev.get("type") or "Normal"),
        _field("Reason", ev.get("reason") or NONE),
        _field("Object", f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"),
        _field("From", (ev.get("source") or {}).get("component") or NONE),
        _field("Count", ev.get("count") or 1),
        _field("Last Seen", f"{since(event_time(ev), now)} ago"),
        _field("Message", " ".join(str(ev.get("message") or "").split())),
    ]


def events_about(
    kind: ApiKind, obj: dict[str, Any], events: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The events whose ``involvedObject`` is ``obj``, oldest first."""
    name, namespace = meta(obj, "name"), meta(obj, "namespace")
    found = []
    for ev in events:
        inv = ev.get("involvedObject") or {}
        if inv.get("kind") != kind.kind or inv.get("name") != name:
            continue
        if kind.namespaced and inv.get("namespace") and inv.get("namespace") != namespace:
            continue
        found.append(ev)
    return sorted(found, key=event_time)


def _events(
    kind: ApiKind, obj: dict[str, Any], events: list[dict[str, Any]] | None, now: dt.datetime
) -> list[str]:
    mine = events_about(kind, obj, events or [])
    if not mine:
        return ["Events:        " + NONE]
    rows = [
        ["Type", "Reason", "Age", "From", "Message"],
        ["----", "------", "----", "----", "-------"],
    ]
    for ev in mine:
        count = ev.get("count") or 1
        when = since(event_time(ev), now)
        rows.append(
            [
                str(ev.get("type") or "Normal"),
                str(ev.get("reason") or ""),
                f"{when} (x{count})" if isinstance(count, int) and count > 1 else when,
                str((ev.get("source") or {}).get("component") or ""),
                " ".join(str(ev.get("message") or "").split()),
            ]
        )
    return ["Events:", *_table(rows)]
