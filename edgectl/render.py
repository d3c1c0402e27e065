"""How edgectl shows objects: tables for people, ages and times in words (pure).

Tables follow kubectl's conventions: a NAMESPACE column only when a list spans namespaces,
``-o wide`` adds columns, names print as ``pod/nginx`` when several kinds share one output,
and a pod's READY, STATUS and RESTARTS are computed from its ``status.containerStatuses`` the
way kubectl computes them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from wire.kinds import BY_PLURAL
from wire.presentation import human_duration, parse_time, pod_summary, property_states


def since(value: Any, now: dt.datetime, *, missing: str = "<unknown>") -> str:
    """The age of a timestamp (``5m``), or ``missing``."""
    when = parse_time(value)
    return missing if when is None else human_duration((now - when).total_seconds())


def age(obj: dict[str, Any], now: dt.datetime) -> str:
    return since((obj.get("metadata") or {}).get("creationTimestamp"), now)


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    """The status condition of type ``kind`` (``{}`` when absent)."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == kind:
            return cond
    return {}


def meta(obj: dict[str, Any], field: str) -> str:
    return str((obj.get("metadata") or {}).get(field) or "")


def _spec(obj: dict[str, Any], field: str) -> str:
    return str((obj.get("spec") or {}).get(field) or "<none>")


def name_of(plural: str, obj: dict[str, Any]) -> str:
    """``pod/nginx``: how ``-o name`` and multi-kind tables name an object."""
    return f"{BY_PLURAL[plural].type}/{meta(obj, 'name')}"


# -- pods, as kubectl prints them ------------------------------------------------------------


def pod_columns(pod: dict[str, Any], now: dt.datetime) -> tuple[str, str, str]:
    """``(READY, STATUS, RESTARTS)`` as ``get pods`` prints them (:func:`pod_summary`, with the
    last restart's age beside the count, as kubectl shows it)."""
    summary = pod_summary(pod)
    restarts = str(summary.restarts)
    if summary.restarts and summary.last_restart is not None:
        restarts += f" ({human_duration((now - summary.last_restart).total_seconds())} ago)"
    return summary.ready, summary.status, restarts


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


# -- tables ----------------------------------------------------------------------------------


def table_rows(
    plural: str,
    items: list[dict[str, Any]],
    now: dt.datetime,
    *,
    wide: bool = False,
    namespaces: bool = True,
    kind_names: bool = False,
) -> list[list[str]]:
    """Header row and one row per object, as ``get`` prints them.

    Args:
        wide: ``-o wide``'s extra columns.
        namespaces: add the NAMESPACE column (a list across namespaces; never for nodes).
        kind_names: names as ``pod/nginx`` (several kinds in one output).
    """

    def label(obj: dict[str, Any]) -> str:
        return name_of(plural, obj) if kind_names else meta(obj, "name")

    if plural == "events":
        items = sorted(items, key=event_time)
    header, rows = _columns(plural, items, now, wide=wide, label=label)
    if namespaces and BY_PLURAL[plural].namespaced:
        header = ["NAMESPACE", *header]
        rows = [[ns, *row] for ns, row in zip(_row_namespaces(plural, items), rows, strict=True)]
    return [header, *rows]


def _row_namespaces(plural: str, items: list[dict[str, Any]]) -> list[str]:
    if plural != "devices":
        return [meta(obj, "namespace") for obj in items]
    return [meta(dev, "namespace") for dev in items for _ in _device_properties(dev) or [""]]


Label = Callable[[dict[str, Any]], str]


def _columns(
    plural: str, items: list[dict[str, Any]], now: dt.datetime, *, wide: bool, label: Label
) -> tuple[list[str], list[list[str]]]:
    if plural == "nodes":
        return _node_columns(items, now, wide=wide, label=label)
    if plural == "pods":
        header = ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        header += ["IP", "NODE"] if wide else ["NODE"]
        rows = []
        for pod in items:
            row = [label(pod), *pod_columns(pod, now), age(pod, now)]
            if wide:
                row.append(str((pod.get("status") or {}).get("podIP") or "<none>"))
            rows.append([*row, _spec(pod, "nodeName")])
        return header, rows
    if plural in ("configmaps", "secrets"):
        header = ["NAME", "TYPE", "DATA", "AGE"] if plural == "secrets" else ["NAME", "DATA", "AGE"]
        rows = []
        for obj in items:
            count = str(len(obj.get("data") or {}) + len(obj.get("binaryData") or {}))
            kind = [str(obj.get("type") or "Opaque")] if plural == "secrets" else []
            rows.append([label(obj), *kind, count, age(obj, now)])
        return header, rows
    if plural == "devices":
        return _device_columns(items, now, wide=wide, label=label)
    if plural == "events":
        return _event_columns(items, now)
    return ["NAME", "AGE"], [[label(obj), age(obj, now)] for obj in items]


def _node_columns(
    items: list[dict[str, Any]], now: dt.datetime, *, wide: bool, label: Label
) -> tuple[list[str], list[list[str]]]:
    header = ["NAME", "STATUS", "LAST-SEEN", "AGE"]
    if wide:
        header += ["INTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "VERSION"]
    rows = []
    for node in items:
        ready = condition(node, "Ready")
        row = [
            label(node),
            "online" if ready.get("status") == "True" else "offline",
            _seen(ready.get("lastHeartbeatTime"), now),
            age(node, now),
        ]
        if wide:
            status = node.get("status") or {}
            info = status.get("nodeInfo") or {}
            internal = [
                a.get("address")
                for a in _dicts(status.get("addresses"))
                if a.get("type") == "InternalIP"
            ]
            row += [
                str(internal[0]) if internal else "<none>",
                str(info.get("osImage") or "<unknown>"),
                str(info.get("kernelVersion") or "<unknown>"),
                str(info.get("kubeletVersion") or "<unknown>"),
            ]
        rows.append(row)
    return header, rows


def _seen(value: Any, now: dt.datetime) -> str:
    when = parse_time(value)
    return "never" if when is None else human_duration((now - when).total_seconds()) + " ago"


def _event_columns(
    items: list[dict[str, Any]], now: dt.datetime
) -> tuple[list[str], list[list[str]]]:
    header = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    rows = []
    for ev in items:
        involved = ev.get("involvedObject") or {}
        kind = str(involved.get("kind") or "")
        rows.append(
            [
                since(event_time(ev), now),
                str(ev.get("type") or "Normal"),
                str(ev.get("reason") or ""),
                f"{kind.lower()}/{involved.get('name', '')}",
                " ".join(str(ev.get("message") or "").split()),
            ]
        )
    return header, rows


def event_time(ev: dict[str, Any]) -> str:
    """When an event last happened (``lastTimestamp``, else ``eventTime``, else created)."""
    return str(
        ev.get("lastTimestamp")
        or ev.get("eventTime")
        or (ev.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def _device_properties(dev: dict[str, Any]) -> list[str]:
    return [state.name for state in property_states(dev)]


def property_rows(dev: dict[str, Any], now: dt.datetime) -> list[list[str]]:
    """Per property of a device: name, desired, reported, when reported, in sync
    (:func:`wire.presentation.property_states`)."""
    rows = []
    for state in property_states(dev):
        when = "-"
        if state.reported is not None and state.reported_at_ms is not None:
            seconds = now.timestamp() - state.reported_at_ms / 1000
            when = human_duration(max(0.0, seconds)) + " ago"
        rows.append(
            [
                state.name,
                "-" if state.desired is None else state.desired,
                "-" if state.reported is None else state.reported,
                when,
                state.sync,
            ]
        )
    return rows


def _device_columns(
    items: list[dict[str, Any]], now: dt.datetime, *, wide: bool, label: Label
) -> tuple[list[str], list[list[str]]]:
    """One row per device property (a device without properties gets one row)."""
    header = ["NAME", "NODE", "PROPERTY", "DESIRED", "REPORTED", "UPDATED", "SYNC"]
    if wide:
        header += ["MODEL", "PROTOCOL"]
    rows = []
    for dev in items:
        spec = dev.get("spec") or {}
        head = [label(dev), _spec(dev, "nodeName")]
        extra = []
        if wide:
            model = (spec.get("deviceModelRef") or {}).get("name") or "<none>"
            protocol = (spec.get("protocol") or {}).get("protocolName") or "<none>"
            extra = [str(model), str(protocol)]
        props = property_rows(dev, now) or [["<none>", "-", "-", "-", "-"]]
        rows += [[*head, *prop, *extra] for prop in props]
    return header, rows


def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)
