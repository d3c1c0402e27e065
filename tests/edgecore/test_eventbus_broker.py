"""Internal mosquitto: starts and stops, loopback only, restarted after a crash, persistent."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
from pathlib import Path

import aiomqtt
import pytest

from edgecore.eventbus.broker import Mosquitto, find_binary
from tests.support.mosquitto import MosquittoServer
from tests.support.procs import free_port, listening_addresses, port_open, wait_until
from wire.errors import ConfigError


async def test_starts_listening_and_stops(tmp_path: Path) -> None:
    """start() returns once clients can connect; stop() ends the process and frees the port."""
    broker = Mosquitto(data_dir=tmp_path, port=free_port())
    await broker.start()
    try:
        assert broker.running
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="probe"):
            pass
    finally:
        await broker.stop()
    assert not broker.running
    assert not port_open(broker.port)


async def test_binds_loopback_only_with_private_files(tmp_path: Path) -> None:
    """The only listener is 127.0.0.1:PORT, and its directory and files are owner-only."""
    broker = Mosquitto(data_dir=tmp_path, port=free_port())
    await broker.start()
    try:
        assert listening_addresses(broker.port) == {"0100007F"}  # 127.0.0.1, nothing else
        conf = broker.config_path.read_text()
        assert [ln for ln in conf.splitlines() if ln.startswith("listener")] == [
            f"listener {broker.port} 127.0.0.1"
        ]
        assert stat.S_IMODE(broker.dir.stat().st_mode) == 0o700
        for f in broker.dir.iterdir():
            assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, f
    finally:
        await broker.stop()


@pytest.mark.parametrize("bind", ["0.0.0.0", "192.168.1.10", "::"])
def test_refuses_non_loopback_bind(tmp_path: Path, bind: str) -> None:
    """An anonymous broker may not listen beyond this machine."""
    with pytest.raises(ConfigError, match="loopback"):
        Mosquitto(data_dir=tmp_path, port=1883, bind=bind)


async def test_port_in_use_fails_clearly(tmp_path: Path) -> None:
    """A taken port is reported as such, from mosquitto's own log."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        broker = Mosquitto(data_dir=tmp_path, port=port)
        with pytest.raises(ConfigError, match="in use"):
            await broker.start()
        assert not broker.running


def test_missing_binary_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without mosquitto installed the error says how to install it."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="apt-get install mosquitto"):
        find_binary(fallback=str(tmp_path / "none"))


async def test_supervisor_restarts_after_kill9(tmp_path: Path) -> None:
    """A mosquitto killed with SIGKILL is restarted on the same port by supervise()."""
    broker = Mosquitto(data_dir=tmp_path, port=free_port(), restart_initial=0.05)
    await broker.start()
    supervisor = asyncio.create_task(broker.supervise(), name="test:supervise")
    try:
        first = broker.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await wait_until(lambda: broker.restarts == 1 and broker.running, timeout=5)
        assert broker.pid != first
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="probe"):
            pass
    finally:
        await broker.stop()
        await asyncio.wait_for(supervisor, 5)  # stop() ends the supervisor by itself
    assert not broker.running


async def test_queued_messages_survive_restart(tmp_path: Path) -> None:
    """A QoS 1 message queued for an offline persistent session is delivered after a restart."""
    async with MosquittoServer(tmp_path) as server:
        sub = aiomqtt.Client("127.0.0.1", server.port, identifier="sub", clean_session=False)
        async with sub:
            await sub.subscribe("t/#", qos=1)
        async with aiomqtt.Client("127.0.0.1", server.port, identifier="pub") as pub:
            await pub.publish("t/1", b"kept", qos=1)
        await server.restart()
        async with sub:
            async with asyncio.timeout(2):
                msg = await anext(aiter(sub.messages))
        assert (msg.topic.value, msg.payload) == ("t/1", b"kept")


async def test_saved_messages_survive_kill9(tmp_path: Path) -> None:
    """Once saved (autosave runs every second), a queued message survives a SIGKILL."""
    async with MosquittoServer(tmp_path) as server:
        sub = aiomqtt.Client("127.0.0.1", server.port, identifier="sub", clean_session=False)
        async with sub:
            await sub.subscribe("t/#", qos=1)
        async with aiomqtt.Client("127.0.0.1", server.port, identifier="pub") as pub:
            await pub.publish("t/1", b"saved-before-crash", qos=1)
        assert "autosave_interval 1\n" in server.broker.config_text()
        db = server.data_dir / "mosquitto" / "mosquitto.db"
        assert server.pid is not None
        os.kill(server.pid, signal.SIGUSR1)  # save now rather than wait for the autosave
        await wait_until(
            lambda: db.exists() and b"saved-before-crash" in db.read_bytes(), timeout=3
        )
        await server.kill9()
        await server.start()
        async with sub:
            async with asyncio.timeout(2):
                msg = await anext(aiter(sub.messages))
        assert msg.payload == b"saved-before-crash"


async def test_leftover_broker_of_a_previous_run_is_replaced(tmp_path: Path) -> None:
    """A mosquitto still holding our port from an earlier edgecore is killed, not fought."""
    port = free_port()
    old = Mosquitto(data_dir=tmp_path, port=port)
    await old.start()
    new = Mosquitto(data_dir=tmp_path, port=port)  # as a restarted edgecore would
    try:
        await new.start()
        assert new.running
        await wait_until(lambda: not old.running, timeout=2)
    finally:
        await new.stop()
        await old.stop()
