"""Stock KubeEdge (v1.15) edgecores on this cloudhub: what they send, what they must get.

A fleet swaps the cloud first and keeps its stock edgecores, so the hub speaks their dialect
where it differs from our edgecore's (facts from KubeEdge's ``edge/pkg/devicetwin``,
``edge/pkg/edgehub`` and ``cloud/pkg/devicecontroller``):

- a stock edge announces no heartbeat (our edgecore sends :data:`HEARTBEAT_HEADER`), sends no
  inventory and expects no ``pong`` to its keepalives;
- its twin and state reports are ``device/{name}/twin/edge_updated`` and
  ``device/{name}/state/update`` from source ``twin``, without a namespace: the name is
  resolved by devicecontroller among the devices bound to the node;
- its devicetwin takes only messages from source ``devicecontroller``: Devices and
  DeviceModels (group ``resource``), membership updates (``membership``, group ``twin``, with
  the twins inside the added devices), desired values (``device/{id}/twin/cloud_updated``)
  and the answer to its ``membership/detail`` get; none carries a ``parent_msg_id`` (stock
  edgehub would treat it as the answer to a synchronous call and drop it);
- the Node object (``null/node/NAME``) is never pushed to it;
- right after connecting it sends one empty message (no id, no route, no content), which
  answers nothing and asks nothing: it is dropped without an error reply.

Everything here is pure: the hub decides *when*, this module says *what*.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cloudhub.routes import MEMBERSHIP_DETAIL, bare_resource

#: the source stock devicetwin writes its cloud-bound messages with
TWIN_SOURCE = "twin"
#: the only source (with ``edgemgr``) stock devicetwin accepts device messages from
DEVICECONTROLLER_SOURCE = "devicecontroller"
TWIN_GROUP = "twin"
MEMBERSHIP = "membership"
#: operation of stock devicetwin's membership detail request
GET = "get"
#: object kinds stock cloudcore's devicecontroller (not edgecontroller) sends
DEVICE_KINDS = frozenset({"device", "devicemodel"})

#: unACKed objects in flight to a stock edge at most: its receive queue (viaduct's FIFO) holds
#: 100 messages and drops the oldest when full, so a larger window only buys retries
WINDOW = 64


def is_empty_message(frame: str | bytes) -> bool:
    """Whether ``frame`` is the empty message a stock edge sends after connecting."""
    if len(frame) > 200:  # the empty message is ~70 bytes: never parse a big frame for it
        return False
    try:
        doc = json.loads(frame)
    except ValueError:
        return False
    if not isinstance(doc, dict):
        return False
    header = doc.get("header") or {}
    return (
        isinstance(header, dict)
        and not header.get("msg_id")
        and not doc.get("route")
        and doc.get("content") is None
    )


def bare_report(source: str, resource: str) -> tuple[str, str] | None:
    """:func:`bare_resource` of a stock edge's twin or state report (source ``twin``)."""
    return bare_resource(resource) if source == TWIN_SOURCE else None


def node_object_key(node: str) -> str:
    """The key of the node's own Node object (never pushed to a stock edge)."""
    return f"null/node/{node}"


def is_node_object(key: str, node: str) -> bool:
    """Whether ``key`` is the node's own Node object (never pushed to a stock edge)."""
    return key == node_object_key(node)


def object_source(key: str) -> str:
    """The route source an object goes down with: devicecontroller for devices and models
    (a stock metamanager hands only those to devicetwin), edgecontroller for the rest."""
    if "/device" not in key:  # most objects: no split per frame
        return "edgecontroller"
    parts = key.split("/")
    if len(parts) == 3 and parts[1] in DEVICE_KINDS:
        return DEVICECONTROLLER_SOURCE
    return "edgecontroller"


def _int(text: Any) -> int:
    try:
        return int(str(text))
    except ValueError:
        return 0


def cloud_version(device: Mapping[str, Any]) -> int:
    """A cloud version that grows with every spec change: the generation, else the
    resourceVersion when it is a number."""
    meta = device.get("metadata") or {}
    return max(_int(meta.get("generation") or 0), _int(meta.get("resourceVersion") or 0), 1)


def _observed(device: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """Per property, the (cloud, edge) version of the desired value the edge reported holding."""
    out: dict[str, tuple[int, int]] = {}
    for twin in (device.get("status") or {}).get("twins") or []:
        if not isinstance(twin, dict):
            continue
        meta = (twin.get("observedDesired") or {}).get("metadata") or {}
        out[str(twin.get("propertyName"))] = (
            _int(meta.get("cloudVersion") or 0),
            _int(meta.get("edgeVersion") or 0),
        )
    return out


def desired_twins(device: Mapping[str, Any], timestamp_ms: int) -> dict[str, dict[str, Any]]:
    """The device's desired values as stock ``MsgTwin`` entries with an ``expected_version``
    at least the edge's own (stock devicetwin refuses a sync older than what it holds)."""
    version = cloud_version(device)
    observed = _observed(device)
    twins: dict[str, dict[str, Any]] = {}
    for prop in (device.get("spec") or {}).get("properties") or []:
        if not isinstance(prop, dict) or not prop.get("name"):
            continue
        name = str(prop["name"])
        desired = prop.get("desired") or {}
        value = desired.get("value")
        if value is None:
            continue
        seen_cloud, seen_edge = observed.get(name, (0, 0))
        typ = str((desired.get("metadata") or {}).get("type") or "string")
        twins[name] = {
            "expected": {"value": str(value), "metadata": {"timestamp": timestamp_ms}},
            "optional": False,
            "metadata": {"type": typ},
            "expected_version": {"cloud": max(version, seen_cloud), "edge": seen_edge},
        }
    return twins


def edge_device(device: Mapping[str, Any], timestamp_ms: int) -> dict[str, Any]:
    """A Device as stock ``types.Device`` (id and name are the object's name), with twins."""
    meta = device.get("metadata") or {}
    out: dict[str, Any] = {"id": meta.get("name", ""), "name": meta.get("name", "")}
    description = (meta.get("labels") or {}).get("description")
    if description:
        out["description"] = description
    twins = desired_twins(device, timestamp_ms)
    if twins:
        out["twin"] = twins
    return out


def _frame(msg_id: str, timestamp_ms: int, group: str, resource: str, content: Any) -> str:
    return json.dumps(
        {
            "header": {
                "msg_id": msg_id,
                "parent_msg_id": "",
                "timestamp": timestamp_ms,
                "resourceversion": "",
                "sync": False,
                "type": "",
            },
            "route": {
                "source": DEVICECONTROLLER_SOURCE,
                "destination": "",
                "group": group,
                "operation": "update",
                "resource": resource,
            },
            "content": content,
        },
        separators=(",", ":"),
    )


def membership_frame(
    *,
    msg_id: str,
    event_id: str,
    timestamp_ms: int,
    added: Iterable[Mapping[str, Any]] = (),
    removed: Iterable[str] = (),
) -> str:
    """A membership update: devices bound to the node (with their twins) and names gone."""
    content = {
        "event_id": event_id,
        "timestamp": timestamp_ms,
        "added_devices": [edge_device(d, timestamp_ms) for d in added],
        "removed_devices": [{"id": name, "name": name} for name in removed],
    }
    return _frame(msg_id, timestamp_ms, TWIN_GROUP, MEMBERSHIP, content)


def membership_detail_frame(
    *, msg_id: str, event_id: str, timestamp_ms: int, devices: Iterable[Mapping[str, Any]]
) -> str:
    """The answer to a stock edge's ``membership/detail`` get: every device of the node (the
    edge removes those it holds and the list lacks)."""
    content = {
        "event_id": event_id,
        "timestamp": timestamp_ms,
        "devices": [edge_device(d, timestamp_ms) for d in devices],
    }
    return _frame(msg_id, timestamp_ms, TWIN_GROUP, MEMBERSHIP_DETAIL, content)


def cloud_updated_frame(
    *, msg_id: str, event_id: str, timestamp_ms: int, device: Mapping[str, Any]
) -> str | None:
    """The device's desired values as ``device/{id}/twin/cloud_updated``, or ``None`` when it
    has none."""
    twins = desired_twins(device, timestamp_ms)
    if not twins:
        return None
    name = (device.get("metadata") or {}).get("name", "")
    content = {"event_id": event_id, "timestamp": timestamp_ms, "twin": twins}
    return _frame(msg_id, timestamp_ms, TWIN_GROUP, f"device/{name}/twin/cloud_updated", content)


def device_frames(
    *,
    key: str,
    device: Mapping[str, Any] | None,
    new: bool,
    new_id: Callable[[], str],
    timestamp_ms: int,
) -> list[str]:
    """What a stock edge gets besides the object itself when Device ``key`` changes on it.

    A device ``new`` to the edge: a membership update adding it with its desired values as
    twins (which fills the edge's ``device`` and ``device_twin`` tables). A changed one: its
    desired values as ``cloud_updated`` (once: re-adding it would send the mapper the same
    delta twice). A removal (``device`` is ``None``): a membership update removing it.
    """
    if "/device/" not in key:  # most objects: no split per frame
        return []
    parts = key.split("/")
    if len(parts) != 3 or parts[1] != "device":
        return []
    if device is None:
        return [
            membership_frame(
                msg_id=new_id(), event_id=new_id(), timestamp_ms=timestamp_ms, removed=[parts[2]]
            )
        ]
    if new:
        return [
            membership_frame(
                msg_id=new_id(), event_id=new_id(), timestamp_ms=timestamp_ms, added=[device]
            )
        ]
    update = cloud_updated_frame(
        msg_id=new_id(), event_id=new_id(), timestamp_ms=timestamp_ms, device=device
    )
    return [] if update is None else [update]


__all__ = [
    "DEVICECONTROLLER_SOURCE",
    "GET",
    "TWIN_SOURCE",
    "WINDOW",
    "bare_report",
    "cloud_updated_frame",
    "device_frames",
    "edge_device",
    "is_node_object",
    "membership_detail_frame",
    "membership_frame",
    "node_object_key",
    "object_source",
]
