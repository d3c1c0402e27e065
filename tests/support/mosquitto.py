"""A real mosquitto for tests: its own directory under ``tmp_path``, a free 127.0.0.1 port.

Built on :class:`edgecore.eventbus.broker.Mosquitto` (the same config edgecore runs with:
persistence on, loopback only), without its supervisor, so a test decides when the broker
dies and comes back::

    async with MosquittoServer(tmp_path) as broker:
        ... broker.port, broker.url ...
        await broker.kill9()      # crash: no database save
        await broker.start()      # same port, same data: sessions and queued QoS 1 survive
        await broker.restart(wipe=True)   # same port, empty broker (no sessions)

Or take the ``mosquitto`` fixture: ``from tests.support.mosquitto import mosquitto`` in a
conftest (or test module) makes it available.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType

import pytest

from edgecore.eventbus.broker import DB_FILE, SUBDIR, Mosquitto
from tests.support.procs import free_port


class MosquittoServer:
    """One test broker; ``start`` / ``stop`` / ``kill9`` / ``restart`` as often as needed."""

    def __init__(self, tmp_path: Path, *, name: str = "broker", port: int | None = None) -> None:
        self.data_dir = tmp_path / name
        self.port = port or free_port()
        self.broker = Mosquitto(data_dir=self.data_dir, port=self.port, stop_timeout=2.0)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.broker.running

    @property
    def pid(self) -> int | None:
        return self.broker.pid

    async def start(self) -> None:
        """Start (again), on the same port with the same data; returns once it listens."""
        await self.broker.start()

    async def stop(self) -> None:
        """SIGTERM: mosquitto saves sessions and queued messages first."""
        await self.broker.stop()

    async def kill9(self) -> None:
        """SIGKILL: anything since the last autosave (≤ 1 s) is lost, as in a crash."""
        await self.broker.kill()

    async def restart(self, *, wipe: bool = False) -> None:
        """Stop and start; ``wipe=True`` deletes its database in between (a fresh broker)."""
        await self.stop()
        if wipe:
            (self.data_dir / SUBDIR / DB_FILE).unlink(missing_ok=True)
        await self.start()

    def log_text(self) -> str:
        """mosquitto's log, for failure messages."""
        path = self.broker.log_path
        return path.read_text(errors="replace") if path.exists() else ""

    async def __aenter__(self) -> MosquittoServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


@pytest.fixture
async def mosquitto(tmp_path: Path) -> AsyncIterator[MosquittoServer]:
    """A running :class:`MosquittoServer`, stopped after the test."""
    async with MosquittoServer(tmp_path) as server:
        yield server
