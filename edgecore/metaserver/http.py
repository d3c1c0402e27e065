"""A small HTTP/1.1 server for the local API: h11's state machine pumped by asyncio streams.

Why not aiohttp: an idle edgecore's memory is mostly the libraries it imports, and aiohttp
(with yarl, multidict, frozenlist, propcache, aiosignal and the SSL contexts its connector builds
at import) cost ~12 MiB of RSS for a server that answers GETs from a cache on loopback
(``bench/edge_footprint.py``). h11 (python-hyper, the HTTP/1.1 core under httpcore and
uvicorn's h11 mode) is sans-I/O and pure Python: it parses requests and frames responses,
including keep-alive and chunked bodies, and costs well under 1 MiB. What this module adds is
the pump: read bytes, hand events to the state machine, write what it frames.

What a handler gets is a :class:`Request` (method, decoded path, query); what it returns is a
:class:`Response`, whose body is bytes or, for watches, an async generator of chunks sent with
chunked encoding as they come. A streamed response is cancelled as soon as its client goes away
(the socket is read while streaming), so a watch whose client vanished releases its
subscription at once instead of at its next failed write. :meth:`HttpServer.close` stops
accepting, ends idle keep-alive connections, waits up to ``shutdown_timeout`` for responses in
flight (callers end their streams first, e.g. by closing watches) and cancels what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qsl, unquote, urlsplit

import h11

log = logging.getLogger(__name__)

#: bytes read from a socket at a time
READ_SIZE = 65536
#: a request body larger than this is refused (the local API takes none)
MAX_BODY = 1 << 20
#: seconds a connection may take to send its next whole request (idle keep-alive included)
#: before it is closed, as aiohttp's keep-alive timeout did: leaked client connections and
#: slow senders do not hold sockets for ever
REQUEST_TIMEOUT = 75.0

JSON = "application/json; charset=utf-8"
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Request:
    """What a handler is asked: ``path`` percent-decoded, ``query`` the first value per name."""

    method: str
    path: str
    query: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Response:
    """What a handler answers: ``body``, or ``stream`` (chunked, ended when it returns)."""

    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()
    stream: AsyncGenerator[bytes, None] | None = None


Handler = Callable[[Request], Awaitable[Response]]


def parse_target(target: bytes) -> tuple[str, dict[str, str]]:
    """A request target -> (percent-decoded path, query: the first value of each name, as
    aiohttp's ``request.query.get`` read it)."""
    parts = urlsplit(target.decode("ascii", "replace"))
    query: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        query.setdefault(name, value)
    return unquote(parts.path) or "/", query


def response_head(response: Response) -> h11.Response:
    """The status line and headers of ``response`` (framing: Content-Length or chunked)."""
    headers = [("Content-Type", response.content_type), *response.headers]
    if response.stream is None:
        headers.append(("Content-Length", str(len(response.body))))
    else:
        headers.append(("Transfer-Encoding", "chunked"))
    try:
        reason = HTTPStatus(response.status).phrase.encode()
    except ValueError:
        reason = b""
    return h11.Response(status_code=response.status, headers=headers, reason=reason)


@dataclass(eq=False)
class _Connection:
    """One client connection: its state machine and streams; ``busy`` while answering."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    state: h11.Connection = field(default_factory=lambda: h11.Connection(h11.SERVER))
    busy: bool = False

    async def send(self, event: h11.Event) -> None:
        data = self.state.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def next_event(self) -> object:
        """The next request-side event; ``None`` when the client closed (garbage raises
        ``h11.RemoteProtocolError``)."""
        while True:
            event = self.state.next_event()
            if event is not h11.NEED_DATA:
                return None if isinstance(event, h11.ConnectionClosed) else event
            data = await self.reader.read(READ_SIZE)
            self.state.receive_data(data)


class HttpServer:
    """Serves ``handler`` on one listening socket; see the module docstring."""

    def __init__(
        self,
        handler: Handler,
        *,
        shutdown_timeout: float,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self.handler = handler
        self.shutdown_timeout = shutdown_timeout
        self.request_timeout = request_timeout
        self.server: asyncio.Server | None = None
        self._connections: dict[_Connection, asyncio.Task[None]] = {}
        self._closing = False

    async def listen(self, host: str, port: int) -> None:
        """Bind and accept (``OSError`` when the address cannot be bound)."""
        self.server = await asyncio.start_server(self._accept, host, port)

    @property
    def port(self) -> int:
        """The TCP port listened on (useful after asking for port 0)."""
        assert self.server is not None, "not listening"
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop accepting; let responses in flight finish (up to the timeout), end the rest."""
        self._closing = True
        if self.server is not None:
            self.server.close()
        for conn, task in list(self._connections.items()):
            if not conn.busy:
                task.cancel()
        pending = set(self._connections.values())
        if pending:
            _, late = await asyncio.wait(pending, timeout=self.shutdown_timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(reader, writer)
        task = asyncio.current_task()
        assert task is not None
        self._connections[conn] = task
        try:
            await self._serve(conn)
        except (ConnectionError, asyncio.IncompleteReadError):
            log.debug("local API client went away")
        except Exception:
            log.exception("local API connection failed")
        finally:
            del self._connections[conn]
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _serve(self, conn: _Connection) -> None:
        """Answer requests on ``conn`` until either side closes it."""
        while not self._closing:
            try:
                async with asyncio.timeout(self.request_timeout):
                    request = await self._read_request(conn)
            except TimeoutError:
                return
            except h11.RemoteProtocolError as exc:
                if conn.state.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    code = exc.error_status_hint
                    await conn.send(response_head(Response(code, b"", TEXT)))
                    await conn.send(h11.EndOfMessage())
                return
            if request is None:
                return
            conn.busy = True
            try:
                response = await self.handler(request)
                log.debug("%s %s -> %d", request.method, request.path, response.status)
                await self._respond(conn, response, head_only=request.method == "HEAD")
            finally:
                conn.busy = False
            if conn.state.our_state is not h11.DONE or conn.state.their_state is not h11.DONE:
                return
            conn.state.start_next_cycle()

    async def _read_request(self, conn: _Connection) -> Request | None:
        """The next complete request (its body read and dropped); ``None``: no more."""
        event = await conn.next_event()
        if not isinstance(event, h11.Request):
            return None
        size = 0
        while True:
            part = await conn.next_event()
            if isinstance(part, h11.EndOfMessage):
                break
            if isinstance(part, h11.Data):
                size += len(part.data)
                if size > MAX_BODY:
                    raise h11.RemoteProtocolError("request body too large", 413)
            elif part is None:
                return None
        path, query = parse_target(event.target)
        return Request(event.method.decode("ascii", "replace"), path, query)

    async def _respond(self, conn: _Connection, response: Response, *, head_only: bool) -> None:
        await conn.send(response_head(response))
        if head_only or response.stream is None:
            if response.stream is not None:
                await response.stream.aclose()
            if response.body and not head_only:
                await conn.send(h11.Data(data=response.body))
            await conn.send(h11.EndOfMessage())
            return
        # The client's socket is read while the body streams: EOF means it went away.
        writing = asyncio.ensure_future(self._stream(conn, response.stream))
        gone = asyncio.ensure_future(self._until_eof(conn))
        try:
            await asyncio.wait((writing, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (writing, gone):
                task.cancel()
            await asyncio.gather(writing, gone, return_exceptions=True)
            await response.stream.aclose()
        if writing.cancelled() or writing.exception() is not None:
            raise ConnectionResetError("streamed response ended early")

    @staticmethod
    async def _stream(conn: _Connection, stream: AsyncGenerator[bytes, None]) -> None:
        async for chunk in stream:
            await conn.send(h11.Data(data=chunk))
        await conn.send(h11.EndOfMessage())

    @staticmethod
    async def _until_eof(conn: _Connection) -> None:
        """Return when the client closes; what it sends meanwhile (a pipelined request) is
        kept for the state machine's next cycle."""
        while data := await conn.reader.read(READ_SIZE):
            conn.state.receive_data(data)
