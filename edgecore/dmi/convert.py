"""DMI <-> our objects and twin messages: pure conversions, no I/O.

Down (edge -> mapper): a Device / DeviceModel object from the edge's cache becomes the DMI
``Device`` / ``DeviceModel`` a stock mapper (mapper-framework) expects. Its protocol and
visitor ``configData`` maps hold each value as ``google.protobuf.Any`` wrapping a wrapper
type, as KubeEdge packs them: strings as ``StringValue``, booleans as ``BoolValue``, whole
numbers as ``Int32Value`` (``Int64Value`` beyond 32 bits), other numbers as ``FloatValue``;
anything structured goes as its JSON text in a ``StringValue``.

Cycles go down as the nanoseconds a mapper-framework mapper reads (``time.Duration``), whichever
unit the Device wrote them in (:mod:`wire.cycles`): a Device written for our mapper
(``collectCycle: 1000``, milliseconds) would otherwise make a stock mapper poll every
microsecond.

Up (mapper -> edge): ``ReportDeviceStatus`` and ``ReportDeviceStates`` become exactly the
MQTT requests a mapper would publish (``$hw/events/device/{id}/twin/update`` and
``.../state/update`` with KubeEdge's payloads), so the twin applies them by the same rules,
with the same validation, replies and upstream rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from google.protobuf import any_pb2, wrappers_pb2

from edgecore.dmi import api_pb2 as dmi
from wire import topics
from wire.cycles import cycle_nanoseconds

_INT32 = range(-(2**31), 2**31)


def pack_value(value: Any) -> any_pb2.Any:
    """One ``configData`` value as KubeEdge packs it (see the module notes)."""
    wrapped: Any
    if isinstance(value, bool):
        wrapped = wrappers_pb2.BoolValue(value=value)
    elif isinstance(value, int):
        wrapped = (
            wrappers_pb2.Int32Value(value=value)
            if value in _INT32
            else wrappers_pb2.Int64Value(value=value)
        )
    elif isinstance(value, float):
        wrapped = wrappers_pb2.FloatValue(value=value)
    elif isinstance(value, str):
        wrapped = wrappers_pb2.StringValue(value=value)
    else:
        wrapped = wrappers_pb2.StringValue(value=json.dumps(value, separators=(",", ":")))
    packed = any_pb2.Any()
    packed.Pack(wrapped)
    return packed


def unpack_value(packed: any_pb2.Any) -> Any:
    """The Python value of a packed ``configData`` entry (tests, ``GetDevice`` answers)."""
    for cls in (
        wrappers_pb2.StringValue,
        wrappers_pb2.Int32Value,
        wrappers_pb2.Int64Value,
        wrappers_pb2.FloatValue,
        wrappers_pb2.BoolValue,
    ):
        if packed.Is(cls.DESCRIPTOR):
            out = cls()
            packed.Unpack(out)
            return out.value
    raise ValueError(f"configData value of type {packed.type_url} is not a wrapper type")


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _custom(config: Any) -> dmi.CustomizedValue:
    data = config if isinstance(config, Mapping) else {}
    return dmi.CustomizedValue(data={str(k): pack_value(v) for k, v in data.items()})


def device_to_dmi(device: Mapping[str, Any]) -> dmi.Device:
    """A Device object as DMI ``Device`` (name, namespace, model, protocol, properties)."""
    meta = device.get("metadata") or {}
    spec = device.get("spec") or {}
    protocol = spec.get("protocol") or {}
    props = []
    for prop in spec.get("properties") or []:
        if not isinstance(prop, Mapping) or not prop.get("name"):
            continue
        desired = prop.get("desired") or {}
        visitors = prop.get("visitors") or {}
        props.append(
            dmi.DeviceProperty(
                name=str(prop["name"]),
                desired=dmi.TwinProperty(
                    value=str(desired.get("value") or ""),
                    metadata={str(k): str(v) for k, v in (desired.get("metadata") or {}).items()},
                ),
                visitors=dmi.VisitorConfig(
                    protocolName=str(visitors.get("protocolName") or ""),
                    configData=_custom(visitors.get("configData")),
                ),
                reportCycle=cycle_nanoseconds(_int(prop.get("reportCycle"))),
                collectCycle=cycle_nanoseconds(_int(prop.get("collectCycle"))),
                reportToCloud=bool(prop.get("reportToCloud", True)),
            )
        )
    return dmi.Device(
        name=str(meta.get("name") or ""),
        namespace=str(meta.get("namespace") or "default"),
        spec=dmi.DeviceSpec(
            deviceModelReference=str((spec.get("deviceModelRef") or {}).get("name") or ""),
            protocol=dmi.ProtocolConfig(
                protocolName=str(protocol.get("protocolName") or ""),
                configData=_custom(protocol.get("configData")),
            ),
            properties=props,
        ),
    )


def model_to_dmi(model: Mapping[str, Any]) -> dmi.DeviceModel:
    """A DeviceModel object as DMI ``DeviceModel``."""
    meta = model.get("metadata") or {}
    props = [
        dmi.ModelProperty(
            name=str(p.get("name") or ""),
            description=str(p.get("description") or ""),
            type=str(p.get("type") or ""),
            accessMode=str(p.get("accessMode") or ""),
            minimum=str(p.get("minimum") or ""),
            maximum=str(p.get("maximum") or ""),
            unit=str(p.get("unit") or ""),
        )
        for p in (model.get("spec") or {}).get("properties") or []
        if isinstance(p, Mapping)
    ]
    return dmi.DeviceModel(
        name=str(meta.get("name") or ""),
        namespace=str(meta.get("namespace") or "default"),
        spec=dmi.DeviceModelSpec(properties=props),
    )


def _device_id(name: str, namespace: str) -> str:
    return topics.device_id(namespace or "default", name)


def status_request(req: dmi.ReportDeviceStatusRequest, now_ms: int) -> tuple[str, str]:
    """A ``ReportDeviceStatus`` as the MQTT ``twin/update`` a mapper would publish:
    ``(topic, payload)``. Each twin's ``reported`` value is the property's ``actual``."""
    twin: dict[str, Any] = {}
    for t in req.reportedDevice.twins:
        if not t.propertyName or not t.HasField("reported"):
            continue
        entry: dict[str, Any] = {
            "actual": {"value": t.reported.value, "metadata": {"timestamp": now_ms}},
        }
        typ = t.reported.metadata.get("type")
        if typ:
            entry["metadata"] = {"type": typ}
        twin[t.propertyName] = entry
    payload = {"event_id": "", "timestamp": now_ms, "twin": twin}
    topic = topics.twin_update(_device_id(req.deviceName, req.deviceNamespace))
    return topic, json.dumps(payload, separators=(",", ":"))


def states_request(req: dmi.ReportDeviceStatesRequest, now_ms: int) -> tuple[str, str]:
    """A ``ReportDeviceStates`` as the MQTT ``state/update`` a mapper would publish."""
    payload = {"event_id": "", "timestamp": now_ms, "state": req.state}
    topic = topics.state_update(_device_id(req.deviceName, req.deviceNamespace))
    return topic, json.dumps(payload, separators=(",", ":"))
