"""The driver boundary: the only code that knows how to talk to a particular device.

KubeEdge's mapper framework splits a mapper into a generic half (twin protocol, report cycles,
reconnects) and a ``driver/`` half that speaks Modbus, OPC UA, BLE... We keep the same split so
a new device type is one small class and never touches MQTT: :mod:`devices.mapper` only sees
:class:`Driver`.

Values cross the boundary as strings because that is how KubeEdge's twin protocol carries them
(``"21.5"``, ``"true"``); the property's type travels beside the value in ``metadata.type``.
A driver decides how to parse and format its own values and refuses what it cannot apply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

#: KubeEdge's twin ``metadata.type`` spellings (lower case on the MQTT side, upper case in the
#: DeviceModel's ``spec.properties[].type``).
PropertyType = Literal["int", "float", "double", "string", "boolean", "bytes"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PropertySpec:
    """What the mapper needs to know about one device property.

    Mirrors the DeviceModel's ``spec.properties[]`` entry for the same name, so a test can
    check that a model manifest and its driver agree.
    """

    name: str
    #: Sent as ``metadata.type`` with every reported value.
    type: PropertyType
    #: ``accessMode: ReadWrite`` in the DeviceModel; only writable properties take a desired value.
    writable: bool = False
    minimum: float | None = None
    maximum: float | None = None
    unit: str | None = None


@runtime_checkable
class Driver(Protocol):
    """A device as the generic mapper sees it.

    Implementations may block on real I/O inside ``read``/``write``; the mapper awaits them one
    at a time per device, so a driver needs no locking of its own.
    """

    def properties(self) -> Sequence[PropertySpec]:
        """Every property the device has, in a stable order (the order of status lines)."""
        ...

    async def read(self, prop: str) -> str:
        """The property's current value as its twin string.

        Raises:
            NotFound: the device has no such property.
        """
        ...

    async def write(self, prop: str, value: str) -> None:
        """Apply a desired value.

        Raises:
            NotFound: the device has no such property.
            WireError: the property is read-only, or ``value`` is not acceptable for it.
        """
        ...
