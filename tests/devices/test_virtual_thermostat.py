"""The simulated thermostat: drift toward the setpoint, seeded determinism, refused writes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.config import DeviceConfig, Visitor
from devices.driver import Driver, Registry
from devices.drivers.virtual import VirtualDriver, VirtualThermostat
from wire.errors import ConfigError, PropertyError

TEMP = Visitor(name="temperature", type="FLOAT", writable=False)
SETPOINT = Visitor(name="setpoint", type="FLOAT", writable=True)


def _device(**config: object) -> DeviceConfig:
    return DeviceConfig(
        name="thermostat-1",
        namespace="default",
        protocol="virtual",
        protocol_config=config,
        properties=(TEMP, SETPOINT),
    )


async def _temperatures(driver: VirtualDriver, n: int) -> list[object]:
    return [await driver.read(TEMP) for _ in range(n)]


async def test_temperature_settles_at_the_setpoint() -> None:
    """From 18 °C the room reaches the 20 °C default, then follows a new setpoint to 25 °C."""
    t = VirtualDriver(_device(seed=1))
    readings = [float(str(v)) for v in await _temperatures(t, 30)]
    assert readings[0] < 19.0 < readings[5]
    assert abs(readings[-1] - 20.0) < 0.3
    await t.write(SETPOINT, 25.0)
    readings = [float(str(v)) for v in await _temperatures(t, 30)]
    assert readings[0] < 23.0
    assert abs(readings[-1] - 25.0) < 0.3


async def test_noise_free_step_closes_a_fixed_fraction_of_the_gap() -> None:
    """Without noise one step moves the temperature ``rate`` of the way to the setpoint."""
    t = VirtualDriver(_device(noise=0.0, initialTemperature=18.0, setpoint=20.0, rate=0.3))
    assert await t.read(TEMP) == 18.6
    assert t.room.temperature == pytest.approx(18.6)


@given(
    start=st.floats(min_value=-50, max_value=100),
    setpoint=st.floats(min_value=5, max_value=35),
    rate=st.floats(min_value=0.01, max_value=1.0),
)
def test_noise_free_drift_never_overshoots(start: float, setpoint: float, rate: float) -> None:
    """Without noise the gap to the setpoint shrinks every step and never changes sign."""
    t = VirtualThermostat(noise=0.0, temperature=start, setpoint=setpoint, rate=rate)
    gap = setpoint - start
    for _ in range(20):
        new_gap = setpoint - t.step()
        assert abs(new_gap) <= abs(gap) + 1e-9
        assert new_gap * gap >= -1e-9
        gap = new_gap


async def test_same_seed_gives_the_same_readings() -> None:
    """Two thermostats with one seed and the same calls read the same values; another seed not."""
    a, b, c = (VirtualDriver(_device(seed=s)) for s in (7, 7, 8))
    first = await _temperatures(a, 10)
    assert first == await _temperatures(b, 10)
    assert first != await _temperatures(c, 10)
    await a.write(SETPOINT, 30.0)
    await b.write(SETPOINT, 30.0)
    assert await _temperatures(a, 10) == await _temperatures(b, 10)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 4.9, 35.01, -1.0, "warm"])
async def test_bad_setpoint_is_refused_and_kept(value: float | str) -> None:
    """A setpoint that is not a finite number within 5-35 °C is refused; the old one stays."""
    t = VirtualDriver(_device(seed=1))
    with pytest.raises(PropertyError):
        await t.write(SETPOINT, value)
    assert await t.read(SETPOINT) == 20.0


async def test_temperature_is_read_only_and_unknown_properties_are_refused() -> None:
    """Writing temperature is refused; a property the room lacks is a PropertyError."""
    t = VirtualDriver(_device(seed=1))
    with pytest.raises(PropertyError):
        await t.write(TEMP, 30.0)
    with pytest.raises(PropertyError):
        await t.read(Visitor(name="humidity", type="FLOAT", writable=False))


@pytest.mark.parametrize(
    "config", [{"rate": 0.0}, {"rate": 1.5}, {"noise": -0.1}, {"setpoint": 50}]
)
def test_bad_tuning_is_a_config_error(config: dict[str, float]) -> None:
    """A rate outside (0, 1], a negative noise or a setpoint out of range is refused."""
    with pytest.raises(ConfigError, match="thermostat-1"):
        VirtualDriver(_device(**config))


def test_a_visitor_naming_an_unknown_field_is_a_config_error() -> None:
    """``configData.field`` must name temperature or setpoint."""
    device = _device()
    bad = Visitor(name="humidity", type="FLOAT", writable=False, config={"field": "humidity"})
    with pytest.raises(ConfigError, match="humidity"):
        VirtualDriver(DeviceConfig(device.name, device.namespace, "virtual", {}, (bad,)))


def test_drivers_are_created_by_protocol_name() -> None:
    """The registry makes a fresh Driver per device; an unknown protocol is a ConfigError."""
    reg = Registry(load_entry_points=False)
    a, b = reg.create(_device()), reg.create(_device())
    assert isinstance(a, Driver) and a is not b
    assert {"modbus", "opcua", "virtual"} <= set(reg.names)
    alien = DeviceConfig("x", "default", "zigbee", {}, ())
    with pytest.raises(ConfigError, match="no driver for protocol 'zigbee'"):
        reg.create(alien)
