"""Third-party drivers: found through the entry-point group, and their bugs stay contained."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from devices.config import DeviceConfig, Visitor
from devices.driver import Registry
from devices.values import Value
from tests.support.fielddevices import device_objects

if TYPE_CHECKING:
    from tests.devices.conftest import FakeEdge, MapperFactory

pytestmark = pytest.mark.timeout(30)


class EchoDriver:
    """A plugin driver: every property reads its own name's length."""

    def __init__(self, device: DeviceConfig) -> None:
        self.device = device

    async def connect(self) -> None:
        pass

    async def read(self, visitor: Visitor) -> Value:
        return len(visitor.name)

    async def write(self, visitor: Visitor, value: Value) -> None:
        pass

    async def close(self) -> None:
        pass


class BrokenRead(EchoDriver):
    async def read(self, visitor: Visitor) -> Value:
        raise RuntimeError("plugin bug")


def broken_factory(device: DeviceConfig) -> EchoDriver:
    raise ZeroDivisionError("plugin bug at construction")


async def test_an_installed_plugin_is_listed(tmp_path: Path) -> None:
    """A package with an ``edgebridge.drivers`` entry point shows in --list-drivers."""
    dist = tmp_path / "edgebridge_echo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: edgebridge-echo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[edgebridge.drivers]\necho = tests.devices.test_driver_plugins:EchoDriver\n"
        "modbus = tests.devices.test_driver_plugins:EchoDriver\n"
    )
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.getcwd()}")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "devices", "--list-drivers", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err
    assert set(out.decode().split()) == {"echo", "modbus", "opcua", "virtual"}
    registry = Registry()
    assert "echo" not in registry.names  # not on this process's path


async def test_plugin_bugs_are_contained(edge: FakeEdge, start_mapper: MapperFactory) -> None:
    """A driver that crashes when built or when reading: its device says why; others go on."""
    registry = Registry(
        {"echo": EchoDriver, "brokenread": BrokenRead, "brokenmake": broken_factory},
        load_entry_points=False,
    )
    props = [{"name": "x", "type": "INT", "access": "ReadOnly", "visitor": {}}]
    objects = [
        *device_objects("good-1", "echo", {}, props),
        *device_objects("read-1", "brokenread", {}, props),
        *device_objects("make-1", "brokenmake", {}, props),
    ]
    start_mapper(*objects, registry=registry)
    dev = "$hw/events/device/{}/state/update"
    unknown = await edge.wait_for(dev.format("make-1"), lambda p: p["state"] == "unknown")
    assert "ZeroDivisionError" in unknown["reason"]
    offline = await edge.wait_for(dev.format("read-1"), lambda p: p["state"] == "offline")
    assert "plugin bug" in offline["reason"]
    await edge.wait_for(
        "$hw/events/device/good-1/twin/update",
        lambda p: p["twin"]["x"]["actual"]["value"] == "1",
        after=2,
    )
