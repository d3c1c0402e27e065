"""The mapper's pure parts: topic names, broker URLs and KubeEdge-shaped payloads."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.driver import PropertySpec
from devices.mapper import (
    DeltaMessage,
    DeviceTopics,
    MapperSettings,
    TwinResult,
    device_id,
    parse_broker,
    report_payload,
    state_payload,
)
from wire.errors import ConfigError


def test_device_id_omits_the_default_namespace() -> None:
    """The topic id is the bare name in ``default`` and ``ns/name`` elsewhere."""
    assert device_id("thermostat-1") == "thermostat-1"
    assert device_id("thermostat-1", "default") == "thermostat-1"
    assert device_id("thermostat-1", "factory") == "factory/thermostat-1"


def test_topics_follow_kubeedge_names() -> None:
    """Every twin topic hangs off ``$hw/events/device/{id}``."""
    t = DeviceTopics.for_device("factory/t1")
    assert t.update == "$hw/events/device/factory/t1/twin/update"
    assert t.update_result == "$hw/events/device/factory/t1/twin/update/result"
    assert t.update_delta == "$hw/events/device/factory/t1/twin/update/delta"
    assert t.get == "$hw/events/device/factory/t1/twin/get"
    assert t.get_result == "$hw/events/device/factory/t1/twin/get/result"
    assert t.state_update == "$hw/events/device/factory/t1/state/update"


@pytest.mark.parametrize(
    ("url", "host", "port", "user", "password"),
    [
        ("mqtt://127.0.0.1:1883", "127.0.0.1", 1883, None, None),
        ("tcp://broker.local", "broker.local", 1883, None, None),
        ("localhost:18830", "localhost", 18830, None, None),
        ("mqtt://edge:s%40cret@10.0.0.1:1884", "10.0.0.1", 1884, "edge", "s@cret"),
    ],
)
def test_broker_urls_parse(
    url: str, host: str, port: int, user: str | None, password: str | None
) -> None:
    """mqtt://, tcp:// and bare host:port parse, with URL-escaped credentials."""
    b = parse_broker(url)
    assert (b.host, b.port, b.username, b.password) == (host, port, user, password)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1", "mqtts://x:8883", "mqtt://:1883", "mqtt://h:x"]
)
def test_bad_broker_urls_are_config_errors(url: str) -> None:
    """Other schemes, a missing host or a bad port are refused with a ConfigError."""
    with pytest.raises(ConfigError):
        parse_broker(url)


def test_broker_repr_hides_the_password() -> None:
    """Logging a broker address never shows its password."""
    b = parse_broker("mqtt://edge:hunter2@127.0.0.1:1883")
    assert "hunter2" not in repr(b) and "hunter2" not in str(b)


def test_report_payload_has_kubeedge_shape() -> None:
    """A report carries event_id, timestamp, and per property actual value, timestamp and type."""
    specs = {"temperature": PropertySpec(name="temperature", type="float")}
    p = report_payload({"temperature": "20.4"}, specs, timestamp=1700000000000)
    uuid.UUID(p["event_id"])
    assert p["timestamp"] == 1700000000000
    assert p["twin"] == {
        "temperature": {
            "actual": {"value": "20.4", "metadata": {"timestamp": 1700000000000}},
            "metadata": {"type": "float"},
        }
    }


def test_state_payload_has_kubeedge_shape() -> None:
    """A state update is ``{event_id, timestamp, state}``."""
    p = state_payload("online", timestamp=5)
    assert set(p) == {"event_id", "timestamp", "state"}
    assert (p["timestamp"], p["state"]) == (5, "online")


def test_delta_values_become_strings() -> None:
    """Delta values are strings; a bare JSON number or boolean from a sloppy edge is accepted."""
    d = DeltaMessage.model_validate({"delta": {"a": "1", "b": 2.5, "c": True}, "extra": 1})
    assert d.delta == {"a": "1", "b": "2.5", "c": "true"}
    assert not d.failed


def test_twin_result_exposes_expected_values_and_errors() -> None:
    """get/result yields each property's expected value; a code outside 2xx marks a failure."""
    r = TwinResult.model_validate(
        {
            "event_id": "e",
            "timestamp": 1,
            "twin": {
                "setpoint": {"expected": {"value": "21.5"}, "actual": {"value": "20"}},
                "temperature": {"actual": {"value": "19"}},
                "gone": None,
            },
        }
    )
    assert r.expected() == {"setpoint": "21.5"}
    assert not r.failed
    err = TwinResult.model_validate({"code": 404, "reason": "device not found"})
    assert err.failed and err.reason == "device not found"
    assert not TwinResult.model_validate({"code": 200}).failed


@given(st.dictionaries(st.text(min_size=1), st.text()))
def test_any_string_delta_round_trips(delta: dict[str, str]) -> None:
    """Any mapping of strings is taken as the delta unchanged."""
    assert DeltaMessage.model_validate({"delta": delta}).delta == delta


def test_settings_refuse_nonsense() -> None:
    """A non-positive report interval or an empty device name is refused."""
    with pytest.raises(ValueError):
        MapperSettings(device="t", report_interval=0)
    with pytest.raises(ValueError):
        MapperSettings(device="")
