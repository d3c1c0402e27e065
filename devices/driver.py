"""The driver boundary: the only code that knows how to talk to a particular kind of device.

KubeEdge's mapper framework splits a mapper into a generic half (twin protocol, cycles,
reconnects) and a ``driver/`` half that speaks Modbus, OPC UA, ... We keep the same split: a
protocol is one class that implements :class:`Driver` and one factory that builds it from a
:class:`~devices.config.DeviceConfig`; it never sees MQTT, cycles or twins.

Writing a driver (see ``docs/drivers.md``):

- the factory validates the Device's ``protocol.configData`` and every visitor's
  ``configData`` at once and raises :class:`~wire.errors.ConfigError` with one line naming the
  field, so a bad manifest is reported before any I/O;
- :meth:`Driver.read` returns a typed value (``int``, ``float``, ``bool``, ``str``); the mapper
  formats it for the twin. :meth:`Driver.write` gets a typed value of the property's type;
- a device that does not answer raises :class:`~wire.errors.DeviceUnreachable` (the mapper
  marks it offline and reconnects with back-off); a property the device refuses raises
  :class:`~wire.errors.PropertyError` (the other properties go on);
- a third-party package adds a protocol with an entry point in the group
  :data:`ENTRY_POINT_GROUP`, named as the ``protocolName`` it serves, pointing at the factory.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Final, Protocol, runtime_checkable

from devices.config import DeviceConfig, Visitor
from devices.values import Value
from wire.errors import ConfigError, PropertyError

log = logging.getLogger(__name__)

#: the entry-point group third-party drivers register in (name = protocolName)
ENTRY_POINT_GROUP: Final = "edgebridge.drivers"


@runtime_checkable
class Driver(Protocol):
    """One device, as the generic mapper sees it.

    The mapper calls these one at a time per device (never concurrently), so a driver needs no
    locking of its own. :meth:`connect` is called again after :meth:`close` when the device
    went away; it must start from scratch.
    """

    async def connect(self) -> None:
        """Open the connection to the device.

        Raises:
            DeviceUnreachable: the device does not answer.
        """

    async def read(self, visitor: Visitor) -> Value:
        """The property's current value, typed.

        Raises:
            DeviceUnreachable: the device stopped answering.
            PropertyError: the device refused this property.
        """

    async def write(self, visitor: Visitor, value: Value) -> None:
        """Set the property to ``value`` (already of the property's type).

        Raises:
            DeviceUnreachable: the device stopped answering.
            PropertyError: the device refused, or ``value`` does not fit the property.
        """

    async def close(self) -> None:
        """Release the connection; never raises."""


@runtime_checkable
class BatchReader(Protocol):
    """Optional: a driver that reads several properties in fewer round trips (Modbus does)."""

    async def read_many(self, visitors: list[Visitor]) -> dict[str, Value | PropertyError]:
        """Each property's value, or the PropertyError that refused it.

        Raises:
            DeviceUnreachable: the device stopped answering.
        """


#: builds a driver for a device; raises ConfigError for bad configData
DriverFactory = Callable[[DeviceConfig], Driver]


#: protocols edgebridge serves itself; an entry point of the same name is not loaded
BUILTIN: Final = ("modbus", "opcua", "virtual")


def _lazy(module: str, name: str) -> DriverFactory:
    """A factory that imports its driver on first use: a mapper serving only Modbus devices
    never loads asyncua (seconds of start-up and tens of MB), nor fails without it."""

    def factory(device: DeviceConfig) -> Driver:
        cls: DriverFactory = getattr(importlib.import_module(module), name)
        return cls(device)

    return factory


def _builtin() -> dict[str, DriverFactory]:
    return {
        "modbus": _lazy("devices.drivers.modbus", "ModbusDriver"),
        "opcua": _lazy("devices.drivers.opcua", "OpcUaDriver"),
        "virtual": _lazy("devices.drivers.virtual", "VirtualDriver"),
    }


class Registry:
    """Protocol name -> driver factory: the built-ins plus installed entry points.

    Args:
        extra: factories to add (tests, embedding); they override entry points of the same
            name but not the built-ins, so an installed package cannot hijack ``modbus``.
        load_entry_points: whether to look at installed packages (default yes).
    """

    def __init__(
        self,
        extra: Mapping[str, DriverFactory] | None = None,
        *,
        load_entry_points: bool = True,
    ) -> None:
        found: dict[str, DriverFactory] = {}
        if load_entry_points:
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                if ep.name in BUILTIN:
                    continue
                try:
                    found[ep.name] = ep.load()
                except Exception as exc:  # a broken plugin must not stop the built-ins
                    log.warning("driver %s (%s) failed to load: %s", ep.name, ep.value, exc)
        found.update(extra or {})
        found.update(_builtin())
        self._factories = found

    @property
    def names(self) -> tuple[str, ...]:
        """Every protocol name served, sorted."""
        return tuple(sorted(self._factories))

    def serves(self, protocol: str) -> bool:
        """Whether a driver for ``protocol`` is installed."""
        return protocol in self._factories

    def create(self, device: DeviceConfig) -> Driver:
        """A new driver for ``device``.

        Raises:
            ConfigError: no driver for its protocol, or its configData is wrong.
        """
        factory = self._factories.get(device.protocol)
        if factory is None:
            raise ConfigError(
                f"device {device.key}: no driver for protocol {device.protocol!r}"
                f" (installed: {', '.join(self.names)})"
            )
        return factory(device)
