"""``python -m devices`` as a user runs it: reports, a readable status line, clean exits."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.devices.conftest import Broker, FakeEdge

T = "$hw/events/device/thermostat-1"


@pytest.fixture
async def mapper_process(
    broker: Broker, tmp_path: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    log = (tmp_path / "mapper.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devices",
        "--broker",
        broker.url,
        "--device",
        "thermostat-1",
        "--seed",
        "3",
        "--report-interval",
        "0.1",
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    log.close()
    yield proc
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def test_cli_reports_prints_status_and_stops_cleanly(
    edge: FakeEdge, mapper_process: asyncio.subprocess.Process, tmp_path: Path
) -> None:
    """The command reports, logs ``thermostat-1 temperature=...``, and exits 0 on SIGTERM."""
    await edge.wait_for(f"{T}/twin/update", lambda p: "temperature" in p["twin"])
    mapper_process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(mapper_process.wait(), 5) == 0
    await edge.wait_for(f"{T}/state/update", lambda p: p["state"] == "offline")
    output = (tmp_path / "mapper.log").read_text()
    assert "thermostat-1 temperature=" in output
    assert " setpoint=20.0" in output


async def test_killed_mapper_is_announced_offline_by_its_will(
    edge: FakeEdge, mapper_process: asyncio.subprocess.Process
) -> None:
    """After kill -9 of the mapper the broker publishes its Last Will: state ``offline``."""
    await edge.wait_for(f"{T}/twin/update")
    mapper_process.kill()
    await mapper_process.wait()
    await edge.wait_for(f"{T}/state/update", lambda p: p["state"] == "offline")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--broker", "http://127.0.0.1"], 1, "scheme must be mqtt:// or tcp://"),
        (["--report-interval", "0"], 2, "argument --report-interval: '0': must be more than 0"),
        (["--driver", "modbus"], 2, "invalid choice"),
        ([], 2, "--device"),
    ],
)
async def test_bad_usage_exits_with_one_line(args: list[str], code: int, message: str) -> None:
    """Bad settings exit 1 and bad usage exits 2, each with the reason in one line on stderr."""
    device = ["--device", "thermostat-1"] if args else []
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devices",
        *device,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == code
    assert message in err.decode()
    assert err.decode().count("\n") == 1 and "Traceback" not in err.decode()
