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


def human_duration(seconds: float) -> str:
    """kubectl's short age (``HumanDuration``): ``42s``, ``5m30s``, ``3h``, ``2d4h``, ``3y``."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes, hours = s // 60, s // 3600
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24 - 365 * (hours // 24 // 365)
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def parse_time(value: Any) -> dt.datetime | None:
    """An RFC 3339 timestamp as Kubernetes writes it, or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


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


def pod_summary(pod: dict[str, Any], now: dt.datetime) -> tuple[str, str, str]:
    """``(READY, STATUS, RESTARTS)`` of a pod, computed as kubectl's printer does.

    READY counts running, ready containers out of the spec's; STATUS is the last container's
    waiting or terminated reason (``CrashLoopBackOff``, ``ErrImagePull``, ``ExitCode:1``), an
    init container's progress (``Init:0/1``), ``Terminating`` while being deleted, else the
    phase. A pod nobody has reported on yet (``--runtime none``) is ``Pending``, as the API
    server would have it. RESTARTS sums restart counts, with the last restart's age.
    """
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    total = len(spec.get("containers") or [])
    ready = 0
    restarts = 0
    last_restart: dt.datetime | None = None
    reason = str(status.get("phase") or "Pending")
    if status.get("reason"):
        reason = str(status["reason"])

    def note_restart(cs: dict[str, Any]) -> None:
        nonlocal restarts, last_restart
        restarts += _int(cs.get("restartCount"))
        finished = parse_time(
            ((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        )
        if finished is not None and (last_restart is None or finished > last_restart):
            last_restart = finished

    init_specs = spec.get("initContainers") or []
    initializing = False
    for i, cs in enumerate(_dicts(status.get("initContainerStatuses"))):
        note_restart(cs)
        state = cs.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if isinstance(terminated, dict) and _int(terminated.get("exitCode")) == 0:
            continue
        initializing = True
        if isinstance(terminated, dict):
            reason = "Init:" + (terminated.get("reason") or _exit_text(terminated))
        elif isinstance(waiting, dict) and waiting.get("reason") not in (
            None,
            "",
            "PodInitializing",
        ):
            reason = f"Init:{waiting['reason']}"
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        break
    if not initializing or condition(pod, "Initialized").get("status") == "True":
        has_running = False
        for cs in reversed(_dicts(status.get("containerStatuses"))):
            note_restart(cs)
            state = cs.get("state") or {}
            waiting, terminated = state.get("waiting"), state.get("terminated")
            if isinstance(waiting, dict) and waiting.get("reason"):
                reason = str(waiting["reason"])
            elif isinstance(terminated, dict):
                reason = str(terminated.get("reason") or _exit_text(terminated))
            elif cs.get("ready") and isinstance(state.get("running"), dict):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if condition(pod, "Ready").get("status") == "True" else "NotReady"
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    shown = str(restarts)
    if restarts and last_restart is not None:
        shown += f" ({human_duration((now - last_restart).total_seconds())} ago)"
    return f"{ready}/{total}", reason, shown


def _exit_text(terminated: dict[str, Any]) -> str:
    signal = _int(terminated.get("signal"))
    return f"Signal:{signal}" if signal else f"ExitCode:{_int(terminated.get('exitCode'))}"


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


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
            row = [label(pod), *pod_summary(pod, now), age(pod, now)]
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


def _twin_time(entry: dict[str, Any], now: dt.datetime) -> str:
    raw = str((entry.get("metadata") or {}).get("timestamp"))
    try:
        ts = dt.datetime.fromtimestamp(int(raw) / 1000, dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return "-"
    return human_duration(max(0.0, (now - ts).total_seconds())) + " ago"


def _device_properties(dev: dict[str, Any]) -> list[str]:
    spec = dev.get("spec") or {}
    names = [str(p.get("name")) for p in _dicts(spec.get("properties"))]
    twins = [str(t.get("propertyName")) for t in _dicts((dev.get("status") or {}).get("twins"))]
    return names + [n for n in twins if n not in names]


def property_rows(dev: dict[str, Any], now: dt.datetime) -> list[list[str]]:
    """Per property of a device: name, desired, reported, when reported, in sync.

    SYNC is ``yes`` when the edge has observed the desired value and the device reports it,
    ``pending`` while either is behind, ``-`` for properties without a desired value.
    """
    spec = dev.get("spec") or {}
    twins = {t.get("propertyName"): t for t in _dicts((dev.get("status") or {}).get("twins"))}
    desired = {
        p.get("name"): (p.get("desired") or {}).get("value") for p in _dicts(spec.get("properties"))
    }
    rows = []
    for name in _device_properties(dev):
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
                name,
                "-" if want is None else str(want),
                str(reported.get("value", "-")),
                _twin_time(reported, now) if reported else "-",
                sync,
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
