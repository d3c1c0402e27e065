"""A Device and its DeviceModel as the mapper needs them, parsed and checked, pure.

The inputs are KubeEdge ``devices.kubeedge.io/v1beta1`` objects exactly as the edge local API
serves them. The Device says how to reach the device (``spec.protocol.protocolName`` and its
``configData``) and, per property, where the value lives on it (``visitors.configData``) and
how often to read and report it (``collectCycle``, ``reportCycle``); the DeviceModel says each
property's ``type`` and ``accessMode``. ``configData`` is free-form in KubeEdge (each mapper
defines its own keys), so it stays a mapping here and each driver validates its part when it
is created (:mod:`devices.driver`).

Cycles are read as :mod:`wire.cycles` says (milliseconds, or nanoseconds from a million up).

Everything that is wrong comes back as one :class:`~wire.errors.ConfigError` naming the device
and the field, so the mapper can log it, report the device's state and go on with the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from devices.values import TYPES
from wire.cycles import DEFAULT_CYCLE, cycle_seconds
from wire.devicemodel import property_specs
from wire.errors import ConfigError


class _Loose(BaseModel):
    # KubeEdge's objects carry many fields the mapper does not use (pushMethod, dbMethod, ...)
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _Protocol(_Loose):
    protocol_name: str = Field(default="", alias="protocolName")
    config_data: dict[str, Any] = Field(default_factory=dict, alias="configData")


class _Property(_Loose):
    name: str = Field(min_length=1)
    visitors: _Protocol | None = None
    collect_cycle: int = Field(default=0, ge=0, alias="collectCycle")
    report_cycle: int = Field(default=0, ge=0, alias="reportCycle")
    report_to_cloud: bool = Field(default=True, alias="reportToCloud")


class _Ref(_Loose):
    name: str = ""


class _Spec(_Loose):
    device_model_ref: _Ref = Field(default_factory=_Ref, alias="deviceModelRef")
    node_name: str = Field(default="", alias="nodeName")
    protocol: _Protocol = Field(default_factory=_Protocol)
    properties: list[_Property] = Field(default_factory=list)


class _Meta(_Loose):
    name: str = Field(min_length=1)
    namespace: str = "default"


class _Device(_Loose):
    metadata: _Meta
    spec: _Spec = Field(default_factory=_Spec)


@dataclass(frozen=True, slots=True)
class Visitor:
    """One property as a driver sees it: where it lives on the device and what type it has."""

    #: the property's name (the twin key)
    name: str
    #: the DeviceModel's type, upper case: INT, FLOAT, DOUBLE, BOOLEAN or STRING
    type: str
    #: ``accessMode: ReadWrite``: the property takes desired values
    writable: bool
    #: ``visitors.configData``, as written in the Device (validated by the driver)
    config: Mapping[str, Any] = field(default_factory=dict)
    #: seconds between reads
    collect_cycle: float = DEFAULT_CYCLE
    #: seconds between reports
    report_cycle: float = DEFAULT_CYCLE
    #: whether the value goes to the twin at all (KubeEdge's ``reportToCloud``)
    report: bool = True


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """A Device and its model: everything the mapper needs to serve it.

    Equal configs serve the same way: the mapper rebuilds a device's driver only when its
    config changes, not on every status write or desired value (those travel on the twin).
    """

    name: str
    namespace: str
    #: ``spec.protocol.protocolName``: which driver serves it
    protocol: str
    #: ``spec.protocol.configData``
    protocol_config: Mapping[str, Any]
    properties: tuple[Visitor, ...]

    @property
    def key(self) -> str:
        """``namespace/name``, unique on a node."""
        return f"{self.namespace}/{self.name}"

    @property
    def collect_cycle(self) -> float:
        """The fastest collect cycle of the device's properties (its tick)."""
        return min((v.collect_cycle for v in self.properties), default=DEFAULT_CYCLE)

    def visitor(self, name: str) -> Visitor | None:
        """The property called ``name``, if the device has it."""
        for v in self.properties:
            if v.name == name:
                return v
        return None


def identify(device: Mapping[str, Any]) -> tuple[str, str]:
    """``(namespace, name)`` of a Device object, as far as it has them (for log lines)."""
    meta = device.get("metadata") if isinstance(device, Mapping) else None
    if not isinstance(meta, Mapping):
        return ("default", "?")
    return (str(meta.get("namespace") or "default"), str(meta.get("name") or "?"))


def model_key(device: Mapping[str, Any]) -> str | None:
    """``namespace/model`` the Device refers to, or ``None`` when it names none."""
    ns, _ = identify(device)
    spec = device.get("spec")
    ref = spec.get("deviceModelRef") if isinstance(spec, Mapping) else None
    name = ref.get("name") if isinstance(ref, Mapping) else None
    return f"{ns}/{name}" if isinstance(name, str) and name else None


def device_config(device: Mapping[str, Any], model: Mapping[str, Any] | None) -> DeviceConfig:
    """Parse a Device and its DeviceModel.

    Raises:
        ConfigError: one line naming the device and what is wrong with it.
    """
    ns, name = identify(device)
    where = f"device {ns}/{name}"
    try:
        obj = _Device.model_validate(device)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{where}: {loc}: {first['msg']}") from exc
    protocol = obj.spec.protocol.protocol_name
    if not protocol:
        raise ConfigError(f"{where}: spec.protocol.protocolName is not set")
    if model is None:
        ref = obj.spec.device_model_ref.name or "(none)"
        raise ConfigError(f"{where}: its DeviceModel {ref!r} is not on this edge")
    specs = property_specs(dict(model))
    visitors: list[Visitor] = []
    for prop in obj.spec.properties:
        spec = specs.get(prop.name)
        if spec is None:
            raise ConfigError(f"{where}: property {prop.name} is not in the DeviceModel")
        if spec.type not in TYPES:
            raise ConfigError(
                f"{where}: property {prop.name}: type {spec.type} is not supported by the mapper"
                f" (one of {', '.join(sorted(TYPES))})"
            )
        if prop.visitors is None:
            # a property without a visitor is the cloud's alone (a desired value nobody reads)
            continue
        if prop.visitors.protocol_name and prop.visitors.protocol_name != protocol:
            raise ConfigError(
                f"{where}: property {prop.name}: visitor protocol {prop.visitors.protocol_name!r}"
                f" differs from the device's {protocol!r}"
            )
        visitors.append(
            Visitor(
                name=prop.name,
                type=spec.type,
                writable=not spec.read_only,
                config=dict(prop.visitors.config_data),
                collect_cycle=cycle_seconds(prop.collect_cycle),
                report_cycle=cycle_seconds(prop.report_cycle),
                report=prop.report_to_cloud,
            )
        )
    return DeviceConfig(
        name=obj.metadata.name,
        namespace=obj.metadata.namespace or "default",
        protocol=protocol,
        protocol_config=dict(obj.spec.protocol.config_data),
        properties=tuple(visitors),
    )
