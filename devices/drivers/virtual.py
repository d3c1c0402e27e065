"""A simulated thermostat, so the device path can be demonstrated and tested without hardware.

Two properties, matching ``examples/devices/thermostat-model.yaml``:

- ``temperature`` (ReadOnly FLOAT, °C): moves a fixed fraction of the way toward the setpoint
  on every read, plus a little Gaussian noise, like a room warming up.
- ``setpoint`` (ReadWrite FLOAT, °C, 5-35, default 20.0): what the twin's desired value sets.

The simulation advances one step per *read* of ``temperature``, not with wall-clock time: the
mapper reads once per report cycle, so the room still warms visibly in a demo, and a run with
``seed`` gives the same sequence of values however the event loop happens to schedule things.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from devices.driver import PropertySpec
from wire.errors import ConfigError, NotFound, WireError

TEMPERATURE = "temperature"
SETPOINT = "setpoint"

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

_PROPERTIES: tuple[PropertySpec, ...] = (
    PropertySpec(
        name=TEMPERATURE, type="float", writable=False, minimum=-50.0, maximum=100.0, unit="°C"
    ),
    PropertySpec(
        name=SETPOINT,
        type="float",
        writable=True,
        minimum=SETPOINT_MIN,
        maximum=SETPOINT_MAX,
        unit="°C",
    ),
)


class VirtualThermostat:
    """A :class:`devices.driver.Driver` for a room with a thermostat.

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
        # The setpoint is reported back exactly as it was written ("21.5" stays "21.5", "20"
        # stays "20"), so the edge sees reported == desired and stops sending the delta.
        self._setpoint_text = str(setpoint)

    def properties(self) -> Sequence[PropertySpec]:
        """``temperature`` then ``setpoint``."""
        return _PROPERTIES

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

    async def read(self, prop: str) -> str:
        """``temperature`` steps the simulation and returns two decimals; ``setpoint`` as written.

        Raises:
            NotFound: neither ``temperature`` nor ``setpoint``.
        """
        if prop == TEMPERATURE:
            return f"{self.step():.2f}"
        if prop == SETPOINT:
            return self._setpoint_text
        raise NotFound(f"virtual thermostat has no property {prop!r}")

    async def write(self, prop: str, value: str) -> None:
        """Set the setpoint from a decimal string within 5-35 °C.

        Raises:
            NotFound: no such property.
            WireError: ``temperature`` (read-only), or a value that is not a finite number in range.
        """
        if prop == TEMPERATURE:
            raise WireError("temperature is read-only")
        if prop != SETPOINT:
            raise NotFound(f"virtual thermostat has no property {prop!r}")
        text = value.strip()
        try:
            number = float(text)
        except ValueError as exc:
            raise WireError(f"setpoint {value!r} is not a number") from exc
        if not math.isfinite(number) or not SETPOINT_MIN <= number <= SETPOINT_MAX:
            raise WireError(f"setpoint {value!r} is outside {SETPOINT_MIN:g}-{SETPOINT_MAX:g} °C")
        self._setpoint = number
        self._setpoint_text = text
