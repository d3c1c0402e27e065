"""The DMI socket before gRPC is loaded: listen, and load it when the first mapper knocks.

An edge serves DMI by default, but most edges never see a stock mapper, and gRPC costs ~15 MiB
of resident memory (:mod:`edgecore.dmi.rpc`). So the socket is first held by a plain asyncio
listener, the door. When a client connects, ``open`` starts the gRPC server, which binds beside
the socket and is renamed over it: from then on clients reach gRPC directly. The connections
the door accepted before that are relayed byte for byte to the gRPC socket for as long as they
live (a mapper keeps its one HTTP/2 connection, so usually that is the first mapper's only
connection; a relay costs a copy per read, negligible at mapper report rates).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger(__name__)

#: bytes relayed per read
CHUNK = 65536


class Door:
    """The listener at ``path`` until ``open`` (called once, at the first connection) has put
    the real server there. Close with :meth:`close`."""

    def __init__(self, path: Path, open: Callable[[], Awaitable[None]]) -> None:
        self.path = path
        self._open = open
        self._opened: asyncio.Future[None] | None = None
        self._server: asyncio.Server | None = None
        #: relays, each a task of the door's server, cancelled by :meth:`close`
        self._relays: set[asyncio.Task[None]] = set()

    async def listen(self) -> None:
        """Listen at ``path`` (``OSError`` when it cannot)."""
        self._server = await asyncio.start_unix_server(self._knock, self.path)

    async def _knock(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        try:
            if self._opened is None:
                log.info("DMI: a mapper connected on %s; starting the gRPC server", self.path)
                self._opened = asyncio.ensure_future(self._open())
            await asyncio.shield(self._opened)
            if self._server is not None:
                self._server.close()  # the path is gRPC's now; this only drops our listener
            up_reader, up_writer = await asyncio.open_unix_connection(self.path)
            try:
                async with asyncio.TaskGroup() as relay:
                    relay.create_task(_pipe(reader, up_writer))
                    relay.create_task(_pipe(up_reader, writer))
            finally:
                up_writer.close()
        except Exception as exc:
            log.warning("DMI: connection on %s dropped: %s", self.path, exc)
        finally:
            self._relays.discard(task)
            writer.close()

    async def close(self) -> None:
        """Stop listening and relaying (the gRPC server, if started, is its owner's)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._relays):
            task.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)
        if self._opened is not None and not self._opened.done():
            self._opened.cancel()
            await asyncio.gather(self._opened, return_exceptions=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then pass the EOF on (HTTP/2 peers half-close)."""
    while data := await reader.read(CHUNK):
        writer.write(data)
        await writer.drain()
    with contextlib.suppress(OSError):
        if writer.can_write_eof():
            writer.write_eof()
