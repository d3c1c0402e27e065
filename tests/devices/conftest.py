"""A real mosquitto for the mapper tests, a test client that plays edgecore's part, mappers.

The mapper's job is the wire, so the tests check the wire: a real broker on a free 127.0.0.1
port (config in ``tmp_path``, no persistence), restartable on the same port, and an aiomqtt
client that records what the mapper publishes and answers like the edge would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from devices.driver import Registry
from devices.mapper import Mapper, MapperSettings
from devices.source import StaticSource
from tests.support.procs import free_port, wait_until


def _mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None


class Broker:
    """One mosquitto process bound to 127.0.0.1:``port``."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.port = free_port()
        self.config = directory / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        )
        self.log = directory / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _accepting(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
            return True
        return False

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.config)], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 5
        while not self._accepting():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not start: {self.log.read_text()}")
            time.sleep(0.01)  # a subprocess readiness poll, not test synchronisation

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
        self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    binary = _mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto is not installed")
    b = Broker(binary, tmp_path)
    b.start()
    yield b
    b.stop()


@dataclass
class Seen:
    topic: str
    payload: Any


class FakeEdge:
    """Records every message under ``$hw/events/device/#`` and publishes like edgecore."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.seen: list[Seen] = []

    async def pump(self) -> None:
        async for message in self.client.messages:
            raw = message.payload
            try:
                payload: Any = json.loads(raw if isinstance(raw, str | bytes) else "")
            except ValueError:
                payload = raw
            self.seen.append(Seen(message.topic.value, payload))

    def on(self, topic: str) -> list[Any]:
        """Payloads seen on ``topic`` so far, oldest first."""
        return [s.payload for s in self.seen if s.topic == topic]

    async def wait_for(
        self, topic: str, predicate: Callable[[Any], bool] = lambda _: True, *, after: int = 0
    ) -> Any:
        """The first payload on ``topic`` (beyond the first ``after``) matching ``predicate``."""

        def found() -> Any:
            for payload in self.on(topic)[after:]:
                if predicate(payload):
                    return payload
            return None

        return await wait_until(found, timeout=5)

    async def publish(self, topic: str, payload: Any) -> None:
        body = payload if isinstance(payload, str | bytes) else json.dumps(payload)
        await self.client.publish(topic, body, qos=1)


@contextlib.asynccontextmanager
async def open_edge(port: int) -> AsyncIterator[FakeEdge]:
    """A fake edge connected to the broker on ``port``, recording from the start."""
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"fake-edge-{port}") as client:
        await client.subscribe("$hw/events/device/#", qos=1)
        fake = FakeEdge(client)
        task = asyncio.create_task(fake.pump())
        try:
            yield fake
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


@pytest.fixture
async def edge(broker: Broker) -> AsyncIterator[FakeEdge]:
    async with open_edge(broker.port) as fake:
        yield fake


@pytest.fixture
def connect_edge() -> Callable[[int], contextlib.AbstractAsyncContextManager[FakeEdge]]:
    """For tests that restart the broker and so need a fresh edge connection afterwards."""
    return open_edge


@dataclass
class Running:
    """A mapper running in-process against the test broker, fed by a static source."""

    mapper: Mapper
    source: StaticSource
    task: asyncio.Task[None]

    def serve(self, *objects: dict[str, Any]) -> None:
        """Add or replace Devices/DeviceModels; the mapper reconciles."""
        self.source.put(*objects)


MapperFactory = Callable[..., Running]


@pytest.fixture
async def start_mapper(broker: Broker) -> AsyncIterator[MapperFactory]:
    """Start in-process mappers against ``broker``; stopped (they say offline) at the end."""
    running: list[Running] = []

    def factory(
        *objects: dict[str, Any], registry: Registry | None = None, **settings: Any
    ) -> Running:
        options: dict[str, Any] = {
            "broker": broker.url,
            "reconnect_initial": 0.1,
            "reconnect_cap": 0.2,
            "device_reconnect_cap": 0.3,
        }
        options.update(settings)
        source = StaticSource()
        source.put(*objects)
        mapper = Mapper(MapperSettings(**options), source, registry=registry or Registry())
        run = Running(mapper, source, asyncio.create_task(mapper.run()))
        running.append(run)
        return run

    yield factory
    for run in running:
        run.mapper.stop()
    for run in running:
        try:
            await asyncio.wait_for(run.task, 5)
        except TimeoutError:
            run.task.cancel()
