"""FaultProxy forwards bytes, and cuts, freezes and refuses links on command."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from tests.support.proxy import FaultProxy

#: how long an assertion that nothing arrives waits: bounded, not synchronisation
QUIET = 0.2


class EchoServer:
    """Echoes every byte back; records each connection's end (EOF or reset)."""

    def __init__(self) -> None:
        self.port = 0
        self.opened = 0
        self.ended: list[str] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in self._writers:
            w.transport.abort()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.opened += 1
        self._writers.add(writer)
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            self.ended.append("eof")
            writer.close()
        except ConnectionError:
            self.ended.append("reset")
        finally:
            self._writers.discard(writer)


@contextlib.contextmanager
def socket_port() -> Iterator[int]:
    """A loopback port that is bound but not listening, so connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def wait_for(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Poll ``condition`` until it holds or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    server = EchoServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def proxy(echo: EchoServer) -> AsyncIterator[FaultProxy]:
    async with FaultProxy("127.0.0.1", echo.port) as p:
        yield p


async def _connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def _roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(b"ping")
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(4), 2.0)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def test_forwards_both_ways_and_counts_connections(proxy: FaultProxy) -> None:
    """Bytes go to the target and back; connections counts live links."""
    assert proxy.port > 0
    r1, w1 = await _connect(proxy)
    r2, w2 = await _connect(proxy)
    assert await _roundtrip(r1, w1) == b"ping"
    assert await _roundtrip(r2, w2) == b"ping"
    assert proxy.connections == 2
    await _close(w1)
    await wait_for(lambda: proxy.connections == 1)
    await _close(w2)
    await wait_for(lambda: proxy.connections == 0)


async def test_large_transfer_is_forwarded_intact(proxy: FaultProxy) -> None:
    """A megabyte goes through and comes back byte for byte."""
    reader, writer = await _connect(proxy)
    payload = bytes(range(256)) * 4096
    writer.write(payload)
    await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(len(payload)), 5.0) == payload
    await _close(writer)


async def test_half_close_is_forwarded(proxy: FaultProxy, echo: EchoServer) -> None:
    """A client's FIN reaches the server as EOF, and the server's close reaches the client."""
    reader, writer = await _connect(proxy)
    writer.write(b"last")
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 2.0) == b"last"
    await wait_for(lambda: echo.ended == ["eof"])
    await _close(writer)


async def test_cut_resets_current_connections(proxy: FaultProxy, echo: EchoServer) -> None:
    """cut() makes both ends see a reset, not an orderly close."""
    reader, writer = await _connect(proxy)
    assert await _roundtrip(reader, writer) == b"ping"
    proxy.cut()
    assert proxy.connections == 0
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(), 2.0)
    await wait_for(lambda: echo.ended == ["reset"])
    writer.transport.abort()


async def test_cut_keeps_accepting_new_connections(proxy: FaultProxy) -> None:
    """After a cut, a new connection is proxied normally."""
    _r, w = await _connect(proxy)
    await wait_for(lambda: proxy.connections == 1)
    proxy.cut()
    reader, writer = await _connect(proxy)
    assert await _roundtrip(reader, writer) == b"ping"
    await _close(writer)
    w.transport.abort()


async def test_freeze_holds_bytes_until_thaw(proxy: FaultProxy) -> None:
    """While frozen nothing is forwarded; after thaw the held bytes arrive."""
    reader, writer = await _connect(proxy)
    assert await _roundtrip(reader, writer) == b"ping"
    proxy.freeze()
    assert proxy.frozen
    writer.write(b"held")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(4), QUIET)
    assert proxy.connections == 1, "sockets stay up while frozen"
    proxy.thaw()
    assert await asyncio.wait_for(reader.readexactly(4), 2.0) == b"held"
    await _close(writer)


async def test_connections_accepted_while_frozen_are_frozen(proxy: FaultProxy) -> None:
    """A connection opened during a freeze is accepted but carries nothing until thaw."""
    proxy.freeze()
    reader, writer = await _connect(proxy)
    writer.write(b"ping")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(4), QUIET)
    proxy.thaw()
    assert await asyncio.wait_for(reader.readexactly(4), 2.0) == b"ping"
    await _close(writer)


async def test_freeze_holds_a_close_as_well(proxy: FaultProxy, echo: EchoServer) -> None:
    """A client that gives up during a freeze leaves the server's side half-open until thaw."""
    reader, writer = await _connect(proxy)
    assert await _roundtrip(reader, writer) == b"ping"
    proxy.freeze()
    writer.transport.abort()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wait_for(lambda: bool(echo.ended)), QUIET)
    assert echo.ended == [], "the server must not learn of the close while frozen"
    proxy.thaw()
    await wait_for(lambda: len(echo.ended) == 1)


async def test_cut_works_while_frozen(proxy: FaultProxy) -> None:
    """cut() resets connections even during a freeze."""
    reader, writer = await _connect(proxy)
    await wait_for(lambda: proxy.connections == 1)
    proxy.freeze()
    proxy.cut()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(), 2.0)
    writer.transport.abort()


async def test_refuse_resets_new_connections_only(proxy: FaultProxy, echo: EchoServer) -> None:
    """While refusing, new connections are reset at once; existing ones keep working."""
    old_r, old_w = await _connect(proxy)
    await wait_for(lambda: proxy.connections == 1)
    proxy.refuse()
    reader, writer = await _connect(proxy)
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(), 2.0)
    writer.transport.abort()
    assert proxy.refused == 1
    assert echo.opened == 1, "a refused connection never reaches the target"
    assert await _roundtrip(old_r, old_w) == b"ping"
    proxy.accept()
    reader, writer = await _connect(proxy)
    assert await _roundtrip(reader, writer) == b"ping"
    await _close(writer)
    await _close(old_w)


async def test_unreachable_target_resets_the_client() -> None:
    """When the target refuses, the client's connection is reset."""
    with socket_port() as dead_port:
        async with FaultProxy("127.0.0.1", dead_port) as proxy:
            reader, writer = await _connect(proxy)
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(reader.read(), 2.0)
            writer.transport.abort()
            assert proxy.connections == 0


async def test_retarget_sends_new_connections_elsewhere(
    proxy: FaultProxy, echo: EchoServer
) -> None:
    """After retarget(), new connections go to the new address."""
    other = EchoServer()
    await other.start()
    try:
        proxy.retarget("127.0.0.1", other.port)
        reader, writer = await _connect(proxy)
        assert await _roundtrip(reader, writer) == b"ping"
        assert other.opened == 1 and echo.opened == 0
        await _close(writer)
    finally:
        await other.stop()


async def test_stop_resets_links_and_stops_listening(echo: EchoServer) -> None:
    """stop() resets open connections and the port refuses afterwards; a second stop is fine."""
    proxy = FaultProxy()
    await proxy.start("127.0.0.1", echo.port)
    reader, writer = await _connect(proxy)
    assert await _roundtrip(reader, writer) == b"ping"
    await proxy.stop()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(), 2.0)
    writer.transport.abort()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", proxy.port)
    await proxy.stop()


async def test_context_manager_without_target_starts_later(echo: EchoServer) -> None:
    """FaultProxy() as a context manager leaves start() to the caller and stops on exit."""
    async with FaultProxy() as proxy:
        assert proxy.port == 0
        await proxy.start("127.0.0.1", echo.port)
        reader, writer = await _connect(proxy)
        assert await _roundtrip(reader, writer) == b"ping"
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(), 2.0)
    writer.transport.abort()


async def test_start_without_target_is_an_error() -> None:
    """start() with no target anywhere raises instead of listening to nowhere."""
    with pytest.raises(ValueError, match="target"):
        await FaultProxy().start()
