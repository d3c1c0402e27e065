"""A simulated thermostat, so the device path can be demonstrated and tested without hardware.

Two properties, matching ``examples/devices/thermostat-model.yaml``:

- ``temperature`` (ReadOnly FLOAT, °C): moves a fixed fraction of the way toward the setpoint
  on every read, plus a little Gaussian noise, like a room warming up.
- ``setpoint`` (ReadWrite FLOAT, °C, 5-35, default 20.0): what the twin's desired value sets.

The simulation advances one step per *read* of ``temperature``, not with wall-clock time: the
mapper reads once per collect cycle, so the room still warms visibly in a demo, and a run with
``seed`` gives the same sequence of values however the event loop happens to schedule things.

As a driver (``protocolName: virtual``) its ``protocol.configData`` takes ``initialTemperature``,
``setpoint``, ``rate``, ``noise`` and ``seed``; a visitor's ``configData.field`` names the
simulated quantity (``temperature`` or ``setpoint``; the property name when absent).
"""

from __future__ import annotations

import math
import random
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from devices.config import DeviceConfig, Visitor
from devices.values import Value
from wire.errors import ConfigError, PropertyError

TEMPERATURE = "temperature"
SETPOINT = "setpoint"
FIELDS: Final = (TEMPERATURE, SETPOINT)

DEFAULT_SETPOINT = 20.0
#: Where the room starts: a little below the default setpoint, so the demo shows it warming.
DEFAULT_TEMPERATURE = 18.0
#: Fraction of the remaining gap closed per step: about ten reports to settle, quick enough for a
#: demo with the default one-second report interval, slow enough to watch.
DEFAULT_RATE = 0.3
#: Standard deviation of the per-step noise in °C: visible in two decimals, far below the drift.
DEFAULT_NOISE = 0.05
#: The range a real room thermostat offers; the DeviceModel's minimum/maximum say the same.
SETPOINT_MIN = 5.0
SETPOINT_MAX = 35.0


class VirtualThermostat:
    """A simulated room with a thermostat (the model behind :class:`VirtualDriver`).

    Args:
        seed: seeds the noise; the same seed and the same calls give the same values.
            ``None`` (default) seeds from the OS.
        setpoint: initial setpoint in °C (default 20.0).
        temperature: initial room temperature in °C (default 18.0).
        rate: fraction of the gap to the setpoint closed per step, in (0, 1] (default 0.3).
        noise: standard deviation of the per-step noise in °C, >= 0 (default 0.05).

    Raises:
        ConfigError: ``rate`` or ``noise`` out of range.
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        setpoint: float = DEFAULT_SETPOINT,
        temperature: float = DEFAULT_TEMPERATURE,
        rate: float = DEFAULT_RATE,
        noise: float = DEFAULT_NOISE,
    ) -> None:
        if not 0.0 < rate <= 1.0:
            raise ConfigError(f"rate must lie in (0, 1], got {rate}")
        if noise < 0.0:
            raise ConfigError(f"noise must be >= 0, got {noise}")
        self._rng = random.Random(seed)
        self._rate = rate
        self._noise = noise
        self._temperature = temperature
        self._setpoint = setpoint

    @property
    def setpoint(self) -> float:
        """The current setpoint in °C."""
        return self._setpoint

    @property
    def temperature(self) -> float:
        """The room temperature after the last step, in °C (reading it does not step)."""
        return self._temperature

    def step(self) -> float:
        """Advance the simulation one step and return the new temperature."""
        gap = self._setpoint - self._temperature
        self._temperature += self._rate * gap + self._rng.gauss(0.0, self._noise)
        return self._temperature

    def set_setpoint(self, value: float) -> None:
        """Set the setpoint in °C.

        Raises:
            PropertyError: not a finite number within 5-35 °C.
        """
        if not math.isfinite(value) or not SETPOINT_MIN <= value <= SETPOINT_MAX:
            raise PropertyError(
                f"setpoint {value:g} is outside {SETPOINT_MIN:g}-{SETPOINT_MAX:g} °C"
            )
        self._setpoint = value


class _Protocol(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    initial_temperature: float = Field(default=DEFAULT_TEMPERATURE, alias="initialTemperature")
    setpoint: float = Field(default=DEFAULT_SETPOINT, ge=SETPOINT_MIN, le=SETPOINT_MAX)
    rate: float = Field(default=DEFAULT_RATE, gt=0, le=1)
    noise: float = Field(default=DEFAULT_NOISE, ge=0)
    seed: int | None = None


class VirtualDriver:
    """The :class:`VirtualThermostat` as a :class:`~devices.driver.Driver`.

    Raises:
        ConfigError: bad configData, or a visitor naming a quantity the room does not have.
    """

    def __init__(self, device: DeviceConfig) -> None:
        where = f"device {device.key}"
        try:
            p = _Protocol.model_validate(dict(device.protocol_config))
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            loc = ".".join(str(x) for x in err["loc"])
            raise ConfigError(f"{where}: protocol configData: {loc}: {err['msg']}") from exc
        self._fields: dict[str, str] = {}
        for v in device.properties:
            field = str(v.config.get("field") or v.name)
            if field not in FIELDS:
                raise ConfigError(
                    f"{where}: property {v.name}: field {field!r} is not one of {', '.join(FIELDS)}"
                )
            self._fields[v.name] = field
        self.room = VirtualThermostat(
            seed=p.seed,
            setpoint=p.setpoint,
            temperature=p.initial_temperature,
            rate=p.rate,
            noise=p.noise,
        )

    async def connect(self) -> None:
        """Nothing to open: the room is in memory."""

    async def close(self) -> None:
        """Nothing to close."""

    def _field(self, visitor: Visitor) -> str:
        field = self._fields.get(visitor.name)
        if field is None:
            raise PropertyError(f"the virtual thermostat has no property {visitor.name!r}")
        return field

    async def read(self, visitor: Visitor) -> Value:
        """``temperature`` steps the simulation (two decimals); ``setpoint`` as set."""
        if self._field(visitor) == TEMPERATURE:
            return round(self.room.step(), 2)
        return self.room.setpoint

    async def write(self, visitor: Visitor, value: Value) -> None:
        """Set the setpoint; the temperature is read-only."""
        if self._field(visitor) == TEMPERATURE:
            raise PropertyError("temperature is read-only")
        if isinstance(value, str | bool):
            raise PropertyError(f"setpoint {value!r} is not a number")
        self.room.set_setpoint(float(value))
