"""The edge's outgoing twin payloads built as plain dicts, for the hot path.

Several payloads go out per report, thousands of reports a second, all on one event loop:
constructing and dumping the models of :mod:`wire.twin.outbound` costs several times more.
Each builder returns exactly what :func:`wire.twin.outbound.dump` of the model named in its
docstring would; the tests validate every payload the twin publishes against those models.
"""

from __future__ import annotations

from typing import Any

from wire.twin.merge import Twin, TwinValue


def _value_json(v: TwinValue) -> dict[str, Any]:
    if v.deleted or v.value is None:
        return {"metadata": {"timestamp": v.timestamp}}
    return {"value": v.value, "metadata": {"timestamp": v.timestamp}}


def twin_json(
    twin: Twin, *, type_: str = "", optional: bool | None = None, versions: bool = True
) -> dict[str, Any]:
    """One property as :class:`MsgTwin` (deltas leave the versions out)."""
    e, a = twin.expected, twin.actual
    out: dict[str, Any] = {}
    if e is not None:
        out["expected"] = _value_json(e)
    if a is not None:
        out["actual"] = _value_json(a)
    if optional is not None:
        out["optional"] = optional
    if type_:
        out["metadata"] = {"type": type_}
    if versions:
        if e is not None:
            out["expected_version"] = {"cloud": e.cloud, "edge": e.edge}
        if a is not None:
            out["actual_version"] = {"cloud": a.cloud, "edge": a.edge}
    return out


def twin_result(event_id: str, timestamp: int, twin: dict[str, Any]) -> dict[str, Any]:
    """:class:`TwinResult`: ``twin`` maps property names to :func:`twin_json` objects."""
    return {"event_id": event_id, "timestamp": timestamp, "twin": twin}


def twin_document(
    event_id: str, timestamp: int, changes: dict[str, tuple[dict[str, Any] | None, dict[str, Any]]]
) -> dict[str, Any]:
    """:class:`TwinDocument` from ``{property: (last, current)}``."""
    docs: dict[str, Any] = {}
    for name, (last, current) in changes.items():
        docs[name] = {"current": current} if last is None else {"last": last, "current": current}
    return {"event_id": event_id, "timestamp": timestamp, "twin": docs}


def twin_delta(
    event_id: str, timestamp: int, twin: dict[str, Any], delta: dict[str, str]
) -> dict[str, Any]:
    """:class:`TwinDelta`."""
    return {"event_id": event_id, "timestamp": timestamp, "twin": twin, "delta": delta}


def error_result(event_id: str, timestamp: int, code: int, reason: str) -> dict[str, Any]:
    """:class:`ErrorResult`."""
    return {"event_id": event_id, "timestamp": timestamp, "code": code, "reason": reason}


def base_result(event_id: str, timestamp: int) -> dict[str, Any]:
    """:class:`BaseOut`: the answer to ``state/update``."""
    return {"event_id": event_id, "timestamp": timestamp}


def state_out(
    event_id: str, timestamp: int, state: str, reason: str | None = None
) -> dict[str, Any]:
    """:class:`StateOut`: upstream ``state/update`` content (also what a mapper publishes)."""
    out: dict[str, Any] = {"event_id": event_id, "timestamp": timestamp, "state": state}
    if reason:
        out["reason"] = reason
    return out


def membership_device(
    *,
    id: str,
    name: str,
    namespace: str,
    state: str,
    last_online: str,
    twin: dict[str, Any],
) -> dict[str, Any]:
    """:class:`MembershipDevice` (``last_online`` left out when empty)."""
    out: dict[str, Any] = {"id": id, "name": name, "namespace": namespace, "state": state}
    if last_online:
        out["last_online"] = last_online
    out["twin"] = twin
    return out


def membership_result(
    event_id: str, timestamp: int, devices: list[dict[str, Any]]
) -> dict[str, Any]:
    """:class:`MembershipResult`."""
    return {"event_id": event_id, "timestamp": timestamp, "devices": devices}


def membership_updated(
    event_id: str, timestamp: int, added: list[dict[str, Any]], removed: list[dict[str, Any]]
) -> dict[str, Any]:
    """:class:`MembershipUpdated`."""
    return {
        "event_id": event_id,
        "timestamp": timestamp,
        "added_devices": added,
        "removed_devices": removed,
    }
