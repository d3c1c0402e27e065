"""Built-in drivers, chosen by name on the command line (``--driver virtual``).

A name maps to a constructor rather than to an instance so every mapper gets its own device
state; adding a driver is one module here and one entry in :data:`NAMES` / :func:`create`.
"""

from __future__ import annotations

from devices.driver import Driver
from devices.drivers.virtual import VirtualThermostat
from wire.errors import ConfigError

#: Driver names :func:`create` accepts (KubeEdge's ``spec.protocol.protocolName``).
NAMES: tuple[str, ...] = ("virtual",)


def create(name: str, *, seed: int | None = None) -> Driver:
    """A new driver instance.

    Args:
        name: one of :data:`NAMES`.
        seed: for simulated drivers, seeds their randomness (``None``: from the OS).

    Raises:
        ConfigError: unknown driver name.
    """
    if name == "virtual":
        return VirtualThermostat(seed=seed)
    raise ConfigError(f"unknown driver {name!r} (available: {', '.join(NAMES)})")
