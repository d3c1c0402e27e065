"""The mapper against a real mosquitto, with the test playing edgecore's side of the twin."""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from devices.drivers.virtual import VirtualThermostat
from tests.support.procs import wait_until

if TYPE_CHECKING:
    from tests.devices.conftest import FakeEdge, MapperFactory

T = "$hw/events/device/thermostat-1"
UPDATE = f"{T}/twin/update"
DELTA = f"{T}/twin/update/delta"
RESULT = f"{T}/twin/update/result"
GET = f"{T}/twin/get"
GET_RESULT = f"{T}/twin/get/result"
STATE = f"{T}/state/update"


def _actual(payload: Any, prop: str) -> str | None:
    entry = payload.get("twin", {}).get(prop) if isinstance(payload, dict) else None
    return entry["actual"]["value"] if entry else None


def _delta(props: dict[str, str]) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "timestamp": int(time.time() * 1000), "delta": props}


async def test_reports_have_kubeedge_shape(edge: FakeEdge, start_mapper: MapperFactory) -> None:
    """Periodic twin/update reports carry every property's actual string value and float type."""
    start_mapper()
    report = await edge.wait_for(UPDATE)
    uuid.UUID(report["event_id"])
    assert abs(report["timestamp"] - time.time() * 1000) < 5000
    assert set(report["twin"]) == {"temperature", "setpoint"}
    for prop in report["twin"].values():
        assert set(prop) == {"actual", "metadata"}  # actual only: desired is the cloud's
        assert isinstance(prop["actual"]["value"], str)
        float(prop["actual"]["value"])
        assert prop["actual"]["metadata"]["timestamp"] == report["timestamp"]
        assert prop["metadata"] == {"type": "float"}
    # And they keep coming, with the room drifting.
    await edge.wait_for(UPDATE, after=3)


async def test_connect_announces_online_and_asks_for_the_twin(
    edge: FakeEdge, start_mapper: MapperFactory
) -> None:
    """On connect the mapper publishes state ``online`` and a twin/get before reporting."""
    start_mapper()
    state = await edge.wait_for(STATE)
    assert state["state"] == "online" and set(state) == {"event_id", "timestamp", "state"}
    get = await edge.wait_for(GET)
    assert set(get) == {"event_id", "timestamp"}
    topics = [s.topic for s in edge.seen]
    assert topics.index(STATE) < topics.index(GET)


async def test_desired_from_get_result_is_applied_at_start(
    edge: FakeEdge, start_mapper: MapperFactory
) -> None:
    """A get/result with an expected setpoint is written to the device and reported back."""
    driver = VirtualThermostat(seed=2)
    mapper = start_mapper(driver)
    await edge.wait_for(GET)
    await edge.publish(
        GET_RESULT,
        {
            "event_id": "e1",
            "timestamp": 1,
            "twin": {
                "setpoint": {
                    "expected": {"value": "23.5", "metadata": {"timestamp": 1}},
                    "actual": {"value": "20", "metadata": {"timestamp": 1}},
                    "metadata": {"type": "float"},
                },
                "temperature": {"actual": {"value": "19"}, "metadata": {"type": "float"}},
            },
        },
    )
    await edge.wait_for(UPDATE, lambda p: _actual(p, "setpoint") == "23.5")
    assert driver.setpoint == 23.5
    assert mapper.desired == {"setpoint": "23.5"}


async def test_delta_is_written_and_reported_at_once(
    edge: FakeEdge, start_mapper: MapperFactory
) -> None:
    """A delta for setpoint is written to the driver and its actual reported without waiting."""
    driver = VirtualThermostat(seed=3)
    # A report interval far beyond the test: only the immediate report can carry the value.
    start_mapper(driver, report_interval=60)
    await edge.wait_for(GET)  # subscriptions are in place before the get is sent
    await edge.publish(DELTA, _delta({"setpoint": "21.5"}))
    report = await edge.wait_for(UPDATE)
    assert set(report["twin"]) == {"setpoint"}
    assert _actual(report, "setpoint") == "21.5"
    assert driver.setpoint == 21.5


async def test_status_line_shows_values_and_desired(
    edge: FakeEdge, start_mapper: MapperFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Each report logs one INFO line with every value and the desired one beside it."""
    caplog.set_level(logging.INFO, logger="devices")
    start_mapper()
    await edge.wait_for(GET)
    await edge.publish(DELTA, _delta({"setpoint": "21.5"}))
    await edge.wait_for(UPDATE, lambda p: "temperature" in p["twin"])

    def status_line() -> bool:
        return any(
            r.levelno == logging.INFO
            and r.getMessage().startswith("thermostat-1 temperature=")
            and r.getMessage().endswith(" setpoint=21.5 (desired 21.5)")
            for r in caplog.records
        )

    await wait_until(status_line, timeout=5)


async def test_deltas_for_read_only_or_unknown_properties_are_ignored(
    edge: FakeEdge, start_mapper: MapperFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A delta for temperature or an unknown property writes nothing; later deltas still apply."""
    driver = VirtualThermostat(seed=4)
    mapper = start_mapper(driver, report_interval=60)
    await edge.wait_for(GET)
    await edge.publish(DELTA, _delta({"temperature": "30", "humidity": "40"}))
    await edge.publish(DELTA, _delta({"setpoint": "22"}))
    report = await edge.wait_for(UPDATE)
    assert set(report["twin"]) == {"setpoint"}
    assert mapper.desired == {"setpoint": "22"}
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("read-only property temperature" in m for m in messages)
    assert any("unknown property humidity" in m for m in messages)


async def test_value_the_device_refuses_is_logged_and_not_reported(
    edge: FakeEdge, start_mapper: MapperFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A desired setpoint the driver refuses leaves it unchanged; the mapper keeps serving."""
    driver = VirtualThermostat(seed=5)
    start_mapper(driver, report_interval=60)
    await edge.wait_for(GET)
    await edge.publish(DELTA, _delta({"setpoint": "99"}))
    await edge.publish(DELTA, _delta({"setpoint": "24"}))
    report = await edge.wait_for(UPDATE)
    assert _actual(report, "setpoint") == "24"
    assert any("writing setpoint=99 failed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("topic", "body"),
    [
        (DELTA, "not json"),
        (DELTA, b"\xff\xfe"),
        (DELTA, "[1, 2]"),
        (DELTA, '{"delta": 5}'),
        (GET_RESULT, '{"twin": []}'),
        (RESULT, '{"code": "bad"}'),
    ],
)
async def test_malformed_messages_do_not_stop_the_mapper(
    edge: FakeEdge,
    start_mapper: MapperFactory,
    caplog: pytest.LogCaptureFixture,
    topic: str,
    body: str | bytes,
) -> None:
    """Garbage on any subscribed topic is logged and skipped; the next delta is still applied."""
    driver = VirtualThermostat(seed=6)
    start_mapper(driver, report_interval=60)
    await edge.wait_for(GET)
    await edge.publish(topic, body)
    await edge.publish(DELTA, _delta({"setpoint": "25"}))
    await edge.wait_for(UPDATE, lambda p: _actual(p, "setpoint") == "25")
    assert any("ignoring malformed message" in r.getMessage() for r in caplog.records)


async def test_error_results_are_logged_with_code_and_reason(
    edge: FakeEdge, start_mapper: MapperFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """An update/result with code 400 logs a warning with code and reason; success is quiet."""
    start_mapper(report_interval=60)
    await edge.wait_for(GET)
    await edge.publish(RESULT, {"event_id": "ok", "timestamp": 1, "twin": {}})
    await edge.publish(
        RESULT, {"event_id": "e2", "timestamp": 1, "code": 400, "reason": "value out of range"}
    )

    def warned() -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.levelno == logging.WARNING and "twin/update refused" in r.getMessage()
        ]

    found = await wait_until(warned, timeout=5)
    assert len(found) == 1
    assert "400" in found[0] and "value out of range" in found[0] and "e2" in found[0]


async def test_namespaced_device_uses_ns_slash_name_topics(
    edge: FakeEdge, start_mapper: MapperFactory
) -> None:
    """Outside the default namespace the device id in every topic is ``{ns}/{name}``."""
    mapper = start_mapper(namespace="factory")
    assert mapper.device_id == "factory/thermostat-1"
    base = "$hw/events/device/factory/thermostat-1"
    await edge.wait_for(f"{base}/state/update")
    await edge.wait_for(f"{base}/twin/get")
    await edge.publish(f"{base}/twin/update/delta", _delta({"setpoint": "26"}))
    await edge.wait_for(f"{base}/twin/update", lambda p: _actual(p, "setpoint") == "26")


async def test_clean_stop_announces_offline(edge: FakeEdge, start_mapper: MapperFactory) -> None:
    """Stopping the mapper publishes state ``offline`` before it disconnects."""
    mapper = start_mapper()
    await edge.wait_for(UPDATE)
    mapper.stop()
    offline = await edge.wait_for(STATE, lambda p: p["state"] == "offline")
    assert set(offline) == {"event_id", "timestamp", "state"}
