"""A TCP proxy that breaks the link on command, for integration tests of link faults.

Real networks fail in ways a process kill does not reproduce: a NAT box forgets a flow and
answers with RST, a mobile link stalls with both sockets still up (half-open), a firewall
starts refusing. :class:`FaultProxy` sits between edge and cloud on 127.0.0.1 and plays each
of those on demand:

- :meth:`FaultProxy.cut` resets every current connection (RST on both sides) and keeps
  accepting new ones, like a router reboot.
- :meth:`FaultProxy.freeze` stops every byte, FIN and RST in both directions while leaving
  the sockets open, like a stalled link; connections accepted meanwhile are frozen too.
  :meth:`FaultProxy.thaw` lets the held bytes through, as TCP retransmission would.
- :meth:`FaultProxy.refuse` resets new connections as soon as they are accepted, until
  :meth:`FaultProxy.accept`.

Only the loopback interface and only asyncio streams: no root, no iptables, no sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from types import TracebackType
from typing import Self

log = logging.getLogger(__name__)

#: bytes read per forwarding step; large enough that a websocket frame rarely takes two.
_CHUNK = 64 * 1024
#: SO_LINGER on with a zero timeout: close() then sends RST instead of FIN.
_LINGER_RST = struct.pack("ii", 1, 0)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close a stream abruptly so the peer sees ECONNRESET, not an orderly EOF."""
    transport = writer.transport
    if transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    transport.abort()


class _Link:
    """One proxied connection: the client's stream, the upstream stream, the two pumps."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.pumps: list[asyncio.Task[None]] = []

    def reset(self) -> None:
        _reset(self.client)
        _reset(self.upstream)
        for pump in self.pumps:
            pump.cancel()


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to a target, and breaks that link on command.

    Use as ``async with FaultProxy() as proxy: await proxy.start(host, port)``, or pass the
    target to the constructor and ``async with`` starts it. All controls are synchronous and
    take effect at once.
    """

    def __init__(
        self,
        target_host: str | None = None,
        target_port: int | None = None,
        *,
        listen_host: str = "127.0.0.1",
    ) -> None:
        """
        Args:
            target_host, target_port: where connections go; may instead be given to
                :meth:`start`.
            listen_host: interface to listen on (default loopback only).
        """
        self.listen_host = listen_host
        #: the port the proxy listens on; 0 until :meth:`start`
        self.port = 0
        #: connections accepted and reset at once because the proxy was refusing
        self.refused = 0
        self._target: tuple[str, int] | None = None
        if target_host is not None and target_port is not None:
            self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        #: set while bytes may flow; cleared by freeze()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._refusing = False
        self._stopping = False

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, target_host: str | None = None, target_port: int | None = None) -> None:
        """Listen on ``listen_host`` with a free port (see :attr:`port`) and forward to target."""
        if target_host is not None and target_port is not None:
            self._target = (target_host, target_port)
        if self._target is None:
            raise ValueError("FaultProxy.start needs a target host and port")
        if self._server is not None:
            raise RuntimeError("FaultProxy already started")
        self._stopping = False
        self._server = await asyncio.start_server(self._on_client, self.listen_host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        log.debug("proxy 127.0.0.1:%d -> %s:%d", self.port, *self._target)

    async def stop(self) -> None:
        """Stop listening and reset every connection. Safe to call twice."""
        self._stopping = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self.cut()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> Self:
        if self._target is not None and self._server is None:
            await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- controls -----------------------------------------------------------------------------

    @property
    def connections(self) -> int:
        """Connections currently proxied (accepted and connected upstream, not yet closed)."""
        return len(self._links)

    @property
    def frozen(self) -> bool:
        return not self._flowing.is_set()

    def cut(self) -> None:
        """Reset every current connection on both sides (RST); new ones are still accepted."""
        links, self._links = self._links, set()
        for link in links:
            link.reset()
        if links:
            log.debug("proxy :%d cut %d connection(s)", self.port, len(links))

    def freeze(self) -> None:
        """Stop forwarding anything (data, FIN, RST) both ways; sockets stay open."""
        self._flowing.clear()

    def thaw(self) -> None:
        """Forward again, starting with whatever was held while frozen."""
        self._flowing.set()

    def refuse(self) -> None:
        """Reset each new connection right after accepting it, until :meth:`accept`."""
        self._refusing = True

    def accept(self) -> None:
        """Proxy new connections again."""
        self._refusing = False

    def retarget(self, target_host: str, target_port: int) -> None:
        """Send new connections to another address (a restarted server on a new port)."""
        self._target = (target_host, target_port)

    # -- forwarding ---------------------------------------------------------------------------

    def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Our own task rather than a coroutine callback, so stop() can cancel and await it.
        task = asyncio.get_running_loop().create_task(
            self._serve(reader, writer), name=f"fault-proxy:{self.port}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing or self._stopping or self._target is None:
            self.refused += 1
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError as exc:
            log.debug("proxy :%d upstream %s:%d refused: %s", self.port, *self._target, exc)
            _reset(writer)
            return
        except asyncio.CancelledError:
            _reset(writer)
            raise
        if self._refusing or self._stopping:
            # refuse() or stop() happened while we were connecting upstream
            _reset(writer)
            _reset(up_writer)
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        loop = asyncio.get_running_loop()
        link.pumps = [
            loop.create_task(self._pump(link, reader, up_writer)),
            loop.create_task(self._pump(link, up_reader, writer)),
        ]
        try:
            await asyncio.gather(*link.pumps, return_exceptions=True)
        finally:
            self._links.discard(link)
            for pump in link.pumps:
                pump.cancel()
            for w in (writer, up_writer):
                if not w.transport.is_closing():
                    w.close()

    async def _pump(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Copy one direction; hold everything, EOF and errors included, while frozen."""
        try:
            while True:
                data = await reader.read(_CHUNK)
                await self._flowing.wait()
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            # One side reset: pass the reset on, as a router would, once traffic may flow.
            await self._flowing.wait()
            self._links.discard(link)
            link.reset()
            return
        # Orderly EOF: half-close the other side and keep the opposite direction running.
        if writer.can_write_eof() and not writer.transport.is_closing():
            with contextlib.suppress(OSError):
                writer.write_eof()
