"""The simulated thermostat: drift toward the setpoint, seeded determinism, refused writes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices import drivers
from devices.driver import Driver
from devices.drivers.virtual import VirtualThermostat
from wire.errors import ConfigError, NotFound, WireError


async def _temperatures(driver: VirtualThermostat, n: int) -> list[str]:
    return [await driver.read("temperature") for _ in range(n)]


async def test_temperature_settles_at_the_setpoint() -> None:
    """From 18 °C the room reaches the 20 °C default, then follows a new setpoint to 25 °C."""
    t = VirtualThermostat(seed=1)
    readings = [float(v) for v in await _temperatures(t, 30)]
    assert readings[0] < 19.0 < readings[5]
    assert abs(readings[-1] - 20.0) < 0.3
    await t.write("setpoint", "25")
    readings = [float(v) for v in await _temperatures(t, 30)]
    assert readings[0] < 23.0
    assert abs(readings[-1] - 25.0) < 0.3


async def test_noise_free_step_closes_a_fixed_fraction_of_the_gap() -> None:
    """Without noise one step moves the temperature ``rate`` of the way to the setpoint."""
    t = VirtualThermostat(noise=0.0, temperature=18.0, setpoint=20.0, rate=0.3)
    assert await t.read("temperature") == "18.60"
    assert t.temperature == pytest.approx(18.6)


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
    a, b, c = VirtualThermostat(seed=7), VirtualThermostat(seed=7), VirtualThermostat(seed=8)
    first = await _temperatures(a, 10)
    assert first == await _temperatures(b, 10)
    assert first != await _temperatures(c, 10)
    await a.write("setpoint", "30")
    await b.write("setpoint", "30")
    assert await _temperatures(a, 10) == await _temperatures(b, 10)


async def test_setpoint_reads_back_as_written() -> None:
    """The setpoint defaults to 20.0 and reads back exactly as written, so reported == desired."""
    t = VirtualThermostat(seed=1)
    assert await t.read("setpoint") == "20.0"
    await t.write("setpoint", "21.5")
    assert await t.read("setpoint") == "21.5"
    assert t.setpoint == 21.5
    await t.write("setpoint", " 20 ")
    assert await t.read("setpoint") == "20"


@pytest.mark.parametrize("value", ["warm", "", "nan", "inf", "4.9", "35.01", "-1"])
async def test_bad_setpoint_is_refused_and_kept(value: str) -> None:
    """A setpoint that is not a finite number within 5-35 °C is refused; the old one stays."""
    t = VirtualThermostat(seed=1)
    with pytest.raises(WireError):
        await t.write("setpoint", value)
    assert await t.read("setpoint") == "20.0"


async def test_temperature_is_read_only_and_unknown_properties_are_not_found() -> None:
    """Writing temperature is refused; an unknown property raises NotFound on read and write."""
    t = VirtualThermostat(seed=1)
    with pytest.raises(WireError):
        await t.write("temperature", "30")
    with pytest.raises(NotFound):
        await t.read("humidity")
    with pytest.raises(NotFound):
        await t.write("humidity", "40")


def test_properties_describe_the_thermostat() -> None:
    """temperature is a read-only float, setpoint a writable float within 5-35."""
    props = {p.name: p for p in VirtualThermostat().properties()}
    assert list(props) == ["temperature", "setpoint"]
    assert props["temperature"].type == "float" and not props["temperature"].writable
    assert props["setpoint"].writable
    assert (props["setpoint"].minimum, props["setpoint"].maximum) == (5.0, 35.0)


@pytest.mark.parametrize(("rate", "noise"), [(0.0, 0.05), (1.5, 0.05), (0.3, -0.1)])
def test_bad_tuning_is_a_config_error(rate: float, noise: float) -> None:
    """A rate outside (0, 1] or a negative noise is refused at construction."""
    with pytest.raises(ConfigError):
        VirtualThermostat(rate=rate, noise=noise)


def test_drivers_are_created_by_name() -> None:
    """``virtual`` makes a fresh Driver each time; an unknown name is a ConfigError."""
    a, b = drivers.create("virtual", seed=1), drivers.create("virtual", seed=1)
    assert isinstance(a, Driver) and a is not b
    with pytest.raises(ConfigError, match="unknown driver 'modbus'"):
        drivers.create("modbus")
