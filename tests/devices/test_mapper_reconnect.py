"""The mapper outlives its broker: restarts and a late start are retried with backoff."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from devices.drivers.virtual import VirtualThermostat
from tests.support.procs import wait_until

if TYPE_CHECKING:
    from tests.devices.conftest import Broker, FakeEdge, MapperFactory

    ConnectEdge = Callable[[int], contextlib.AbstractAsyncContextManager[FakeEdge]]

T = "$hw/events/device/thermostat-1"


def _logged(caplog: pytest.LogCaptureFixture, text: str) -> Callable[[], bool]:
    return lambda: any(text in r.getMessage() for r in caplog.records)


async def test_broker_restart_reconnects_and_resubscribes(
    broker: Broker,
    connect_edge: ConnectEdge,
    start_mapper: MapperFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After mosquitto restarts the mapper reports again and still receives deltas."""
    caplog.set_level(logging.INFO, logger="devices")
    driver = VirtualThermostat(seed=1)
    start_mapper(driver)
    async with connect_edge(broker.port) as edge:
        await edge.wait_for(f"{T}/twin/update")
    broker.stop()
    await wait_until(_logged(caplog, "connection lost"), timeout=5)
    broker.start()
    async with connect_edge(broker.port) as edge:
        # Periodic reports resume on the new connection...
        await edge.wait_for(f"{T}/twin/update")
        # ...and the subscriptions were restored: a delta is applied and reported.
        delta = {"event_id": str(uuid.uuid4()), "timestamp": int(time.time() * 1000)}
        await edge.publish(f"{T}/twin/update/delta", {**delta, "delta": {"setpoint": "22.5"}})
        await edge.wait_for(
            f"{T}/twin/update",
            lambda p: p["twin"].get("setpoint", {}).get("actual", {}).get("value") == "22.5",
        )
    assert driver.setpoint == 22.5
    assert sum("connected to broker" in r.getMessage() for r in caplog.records) == 2


async def test_mapper_started_before_the_broker_waits_for_it(
    broker: Broker,
    connect_edge: ConnectEdge,
    start_mapper: MapperFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With the broker down at start the mapper retries until it is up, then reports."""
    broker.stop()
    start_mapper()
    await wait_until(_logged(caplog, "unavailable"), timeout=5)
    broker.start()
    async with connect_edge(broker.port) as edge:
        state = await edge.wait_for(f"{T}/state/update")
        assert state["state"] == "online"
        await edge.wait_for(f"{T}/twin/update")
