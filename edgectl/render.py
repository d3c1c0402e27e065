"""How edgectl shows objects: tables for people, ages and times in words (pure)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from wire.presentation import human_duration


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _age(obj: dict[str, Any], now: dt.datetime) -> str:
    created = _parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
    return "<unknown>" if created is None else human_duration((now - created).total_seconds())


def _ready_condition(node: dict[str, Any]) -> dict[str, Any]:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == "Ready":
            return cond
    return {}


def meta(obj: dict[str, Any], field: str) -> str:
    return str((obj.get("metadata") or {}).get(field) or "")


def _spec(obj: dict[str, Any], field: str) -> str:
    return str((obj.get("spec") or {}).get(field) or "<none>")


def table_rows(plural: str, items: list[dict[str, Any]], now: dt.datetime) -> list[list[str]]:
    """Header row and one row per object, as ``get -o table`` prints them."""
    rows: list[list[str]]
    if plural == "nodes":
        rows = [["NAME", "STATUS", "LAST-SEEN", "AGE"]]
        for node in items:
            ready = _ready_condition(node)
            seen = _parse_time(ready.get("lastHeartbeatTime"))
            rows.append(
                [
                    meta(node, "name"),
                    "online" if ready.get("status") == "True" else "offline",
                    "never"
                    if seen is None
                    else human_duration((now - seen).total_seconds()) + " ago",
                    _age(node, now),
                ]
            )
        return rows
    if plural == "pods":
        rows = [["NAMESPACE", "NAME", "NODE", "AGE"]]
        for pod in items:
            row = [meta(pod, "namespace"), meta(pod, "name"), _spec(pod, "nodeName")]
            rows.append([*row, _age(pod, now)])
        return rows
    if plural in ("configmaps", "secrets"):
        rows = [["NAMESPACE", "NAME", "DATA", "AGE"]]
        for obj in items:
            count = len(obj.get("data") or {}) + len(obj.get("binaryData") or {})
            rows.append([meta(obj, "namespace"), meta(obj, "name"), str(count), _age(obj, now)])
        return rows
    if plural == "devices":
        return device_rows(items, now)
    rows = [["NAMESPACE", "NAME", "AGE"]]
    for obj in items:
        rows.append([meta(obj, "namespace"), meta(obj, "name"), _age(obj, now)])
    return rows


def _twin_time(entry: dict[str, Any], now: dt.datetime) -> str:
    raw = str((entry.get("metadata") or {}).get("timestamp"))
    try:
        ts = dt.datetime.fromtimestamp(int(raw) / 1000, dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return "-"
    return human_duration(max(0.0, (now - ts).total_seconds())) + " ago"


def device_rows(items: list[dict[str, Any]], now: dt.datetime) -> list[list[str]]:
    """One row per device property: desired, reported, when reported, and whether in sync.

    SYNC is ``yes`` when the edge has observed the desired value and the device reports it,
    ``pending`` while either is behind, ``-`` for properties without a desired value.
    """
    rows = [["NAMESPACE", "NAME", "NODE", "PROPERTY", "DESIRED", "REPORTED", "UPDATED", "SYNC"]]
    for dev in items:
        spec = dev.get("spec") or {}
        twins = {
            t.get("propertyName"): t
            for t in (dev.get("status") or {}).get("twins") or []
            if isinstance(t, dict)
        }
        names = [p.get("name") for p in spec.get("properties") or [] if isinstance(p, dict)]
        names += [n for n in twins if n not in names]
        desired = {
            p.get("name"): (p.get("desired") or {}).get("value")
            for p in spec.get("properties") or []
            if isinstance(p, dict)
        }
        head = [meta(dev, "namespace"), meta(dev, "name"), _spec(dev, "nodeName")]
        if not names:
            rows.append([*head, "<none>", "-", "-", "-", "-"])
        for name in names:
            twin = twins.get(name) or {}
            reported = twin.get("reported") or {}
            want = desired.get(name)
            if want is None:
                sync = "-"
            elif (twin.get("observedDesired") or {}).get("value") == want == reported.get("value"):
                sync = "yes"
            else:
                sync = "pending"
            rows.append(
                [
                    *head,
                    str(name),
                    "-" if want is None else str(want),
                    str(reported.get("value", "-")),
                    _twin_time(reported, now) if reported else "-",
                    sync,
                ]
            )
    return rows


def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)
