"""A link worker process: terminates TLS and websocket framing for edges, relays frames.

cloudhub starts ``python -m cloudhub.linkworker`` with two inherited descriptors: the wss
listening socket (every worker accepts on it; the kernel spreads the connections) and its end
of a socketpair to cloudhub (the *channel*, records of :mod:`cloudhub.linkworker.records`).

What a worker does per connection:

1. TLS with a client certificate chaining to the cloud CA (the same context as cloudhub's
   own), within ``handshake_timeout``; unauthenticated connections are capped by a
   :class:`~cloudhub.limits.ConnectionGate` of its own.
2. At the websocket upgrade it sends HELLO (the certificate, the request's path and headers)
   and waits for cloudhub's ACCEPT or REFUSE. It decides nothing itself: identity,
   revocation and impersonation checks all run in cloudhub.
3. Each message read becomes a TEXT/BINARY record, as soon as websockets has parsed it
   (:class:`RelayedConnection`); each SEND record becomes a frame written,
   at once when nothing could make it wait, else through a per-connection backlog drained by
   ``send`` within ``send_timeout`` (a frozen peer loses its link, as in-process).
   PAUSE/RESUME stop and restart reading a connection (cloudhub paces a node by not reading),
   and while the channel itself is congested no connection is read, so backpressure reaches
   the edges' TCP windows instead of piling up in memory.
4. CLOSE closes (or aborts) a connection; its end, for whatever reason, is a CLOSED record.

The worker exits when the channel ends: cloudhub stopped, or was killed. It never outlives
cloudhub holding the port.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import socket
import ssl
from collections import deque
from http import HTTPStatus
from pathlib import Path

from pydantic import BaseModel
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import BINARY, TEXT, Frame
from websockets.http11 import Request, Response
from websockets.protocol import OPEN, Event

from cloudhub.limits import ConnectionGate
from cloudhub.linkworker.channel import RecordChannel
from cloudhub.linkworker.records import Kind, Record
from cloudhub.pki import mtls_server_context
from cloudhub.tuning import freeze_after_bursts, tune_process
from hive.logs import LogFormat

log = logging.getLogger("cloudhub.linkworker")

#: bytes waiting for one slow peer beyond which its link is dropped rather than buffered
MAX_BACKLOG = 64 * 1024 * 1024


class WorkerConfig(BaseModel):
    """What cloudhub hands a worker on its command line (JSON)."""

    index: int
    listen_fd: int
    channel_fd: int
    server_cert: Path
    server_key: Path
    ca_cert: Path
    max_frame: int
    handshake_timeout: float
    #: seconds a frame may wait for a peer that stopped reading before its link is dropped
    send_timeout: float
    max_pending_handshakes: int
    max_pending_per_ip: int
    verbose: bool = False
    #: cloudhub's --log-format: the worker writes to the same stderr
    log_format: LogFormat = "text"


class _Channel(RecordChannel):
    """The worker's end of the socketpair: records from cloudhub drive the relay."""

    def __init__(self, relay: Relay) -> None:
        super().__init__("channel from cloudhub")
        self._relay = relay
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def received(self, records: list[Record]) -> None:
        for record in records:
            self._relay.dispatch(record)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


class RelayedConnection(ServerConnection):
    """A websocket whose whole messages go to the channel as they are parsed.

    websockets would queue each message for the handler task and wake it: a future, a task
    step and a record written a loop turn later, per ACK. Here a complete text or binary
    frame becomes its record in the callback that parsed it. Everything else takes the
    handler's way, in order: control frames, fragments, a text frame that is not UTF-8 (the
    handler's ``recv`` fails the link over it, code 1007), frames read before the handler
    started, and any frame while one is queued, reading is paused or the channel is
    congested (the queue then fills and websockets stops reading the socket).
    """

    #: set by :meth:`Relay.handler` once it serves this connection; 0 until then
    relay_conn = 0
    relay: Relay | None = None

    def process_event(self, event: Event) -> None:
        conn = self.relay_conn
        if (
            conn
            and isinstance(event, Frame)
            and event.fin
            and (event.opcode is TEXT or event.opcode is BINARY)
            and not len(self.recv_messages.frames)
        ):
            relay = self.relay
            assert relay is not None
            if relay.take(conn, event):
                return
        super().process_event(event)


class Relay:
    """The connections this worker holds and the records that drive them."""

    def __init__(self, config: WorkerConfig, gate: ConnectionGate) -> None:
        self._config = config
        self._gate = gate
        self.channel = _Channel(self)
        self._ids = itertools.count(1)
        #: id(ServerConnection) -> conn id, from the upgrade request to the handler
        self._conn_of: dict[int, int] = {}
        self._conns: dict[int, ServerConnection] = {}
        self._verdicts: dict[int, asyncio.Future[Record]] = {}
        #: conn id -> set while reading is allowed (cloudhub's PAUSE clears it)
        self._reading: dict[int, asyncio.Event] = {}
        #: conn id -> frames waiting for a slow peer, and their bytes
        self._backlog: dict[int, deque[bytes]] = {}
        self._backlog_bytes: dict[int, int] = {}
        #: links accepted / ended since start (for the GC tuning, as in cloudhub)
        self.accepted_total = 0
        self.closed_total = 0

    # -- the websocket server's hooks ----------------------------------------------------------

    async def process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        ssl_object = connection.transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        remote = connection.remote_address
        hello = {
            "der": base64.b64encode(der).decode() if der else "",
            "path": request.path,
            "headers": list(request.headers.raw_items()),
            "remote": list(remote) if isinstance(remote, tuple) else [str(remote)],
        }
        conn = next(self._ids)
        verdict: asyncio.Future[Record] = asyncio.get_running_loop().create_future()
        self._verdicts[conn] = verdict
        self.channel.emit(Kind.HELLO, conn, json.dumps(hello).encode())
        # If cloudhub accepts it after all, a CLOSED record tells it the link is gone (it
        # follows the HELLO on the channel, so cloudhub reads it after its decision).
        try:
            # A little under websockets' own limit on the whole opening handshake, so that the
            # edge hears why rather than seeing its connection dropped.
            async with asyncio.timeout(0.9 * self._config.handshake_timeout):
                record = await verdict
        except TimeoutError:
            self.channel.emit(Kind.CLOSED, conn, b"no answer from cloudhub in time")
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "cloudhub is busy\n")
        except BaseException:  # cancelled: websockets gave up on the handshake
            self.channel.emit(Kind.CLOSED, conn, b"handshake abandoned")
            raise
        finally:
            self._verdicts.pop(conn, None)
        if record.kind == Kind.REFUSE:
            answer = json.loads(record.payload)
            return connection.respond(HTTPStatus(int(answer["status"])), str(answer["body"]))
        self._gate.authenticated(connection.transport.get_extra_info("socket"))
        self._conn_of[id(connection)] = conn
        self._conns[conn] = connection
        self.accepted_total += 1
        reading = asyncio.Event()
        reading.set()
        self._reading[conn] = reading
        lost = getattr(connection, "connection_lost_waiter", None)
        if lost is not None:
            # The upgrade can still fail after this (the peer leaves before the 101): then no
            # handler runs, and cloudhub must hear of the end from here.
            lost.add_done_callback(lambda _: self._never_served(connection))
        return None

    def _never_served(self, connection: ServerConnection) -> None:
        conn = self._conn_of.pop(id(connection), None)
        if conn is None:
            return  # the handler took it, and reports its end itself
        self._forget(conn)
        self.channel.emit(Kind.CLOSED, conn, b"connection lost during the upgrade")

    async def handler(self, ws: ServerConnection) -> None:
        conn = self._conn_of.pop(id(ws), None)
        if conn is None:
            return  # lost before this ran: _never_served reported it
        reason = "connection closed"
        emit = self.channel.emit
        writable = self.channel.writable
        reading = self._reading[conn]
        if isinstance(ws, RelayedConnection):
            ws.relay = self
            ws.relay_conn = conn
        try:
            while True:
                if not reading.is_set():
                    await reading.wait()
                if not writable.is_set():
                    await writable.wait()
                frame = await ws.recv()
                if isinstance(frame, str):
                    emit(Kind.TEXT, conn, frame.encode())
                else:
                    emit(Kind.BINARY, conn, frame)
        except ConnectionClosed as exc:
            reason = f"connection closed: {exc}"
        finally:
            self._forget(conn)
            emit(Kind.CLOSED, conn, reason.encode())

    def take(self, conn: int, frame: Frame) -> bool:
        """Relay a whole message read on ``conn`` now, if nothing must make it wait."""
        reading = self._reading.get(conn)
        if reading is None or not reading.is_set() or not self.channel.writable.is_set():
            return False
        data = bytes(frame.data)  # the same object when it is bytes already
        if frame.opcode is TEXT:
            try:
                data.decode()  # cloudhub decodes TEXT payloads trusting this check
            except UnicodeDecodeError:
                return False
            self.channel.emit(Kind.TEXT, conn, data)
        else:
            self.channel.emit(Kind.BINARY, conn, data)
        return True

    def _forget(self, conn: int) -> None:
        self.closed_total += 1
        self._conns.pop(conn, None)
        self._reading.pop(conn, None)
        self._backlog.pop(conn, None)
        self._backlog_bytes.pop(conn, None)

    # -- records from cloudhub -----------------------------------------------------------------

    def dispatch(self, record: Record) -> None:
        kind = record.kind
        if kind == Kind.SEND:
            self._send(record.conn, record.payload)
        elif kind in (Kind.ACCEPT, Kind.REFUSE):
            verdict = self._verdicts.get(record.conn)
            if verdict is not None and not verdict.done():
                verdict.set_result(record)
        elif kind == Kind.CLOSE:
            self._close(record.conn, record.payload)
        elif kind in (Kind.PAUSE, Kind.RESUME):
            reading = self._reading.get(record.conn)
            if reading is not None:
                if kind == Kind.PAUSE:
                    reading.clear()
                else:
                    reading.set()
        else:
            log.warning("unexpected %s record from cloudhub", kind.name)

    def _send(self, conn: int, data: bytes) -> None:
        ws = self._conns.get(conn)
        if ws is None:
            return  # gone; cloudhub hears so from its CLOSED record
        backlog = self._backlog.get(conn)
        if backlog is None:
            if (
                ws.protocol.state is OPEN
                and ws.send_in_progress is None
                and not ws.paused
                and not ws.transport.is_closing()
            ):
                # What websockets' own send would do, minus its wait: nothing could wait here
                # (see cloudhub.hub.links.WebsocketLink.write_now).
                ws.protocol.send_text(data)
                ws.send_data()
                return
            backlog = self._backlog[conn] = deque()
            self._backlog_bytes[conn] = 0
            asyncio.get_running_loop().create_task(
                self._drain(conn, ws, backlog), name=f"backlog:{conn}"
            )
        backlog.append(data)
        size = self._backlog_bytes[conn] = self._backlog_bytes.get(conn, 0) + len(data)
        if size > MAX_BACKLOG:
            log.warning(
                "link %d: %d bytes wait for a peer that does not read; dropping it", conn, size
            )
            ws.transport.abort()

    async def _drain(self, conn: int, ws: ServerConnection, backlog: deque[bytes]) -> None:
        try:
            while backlog:
                data = backlog.popleft()
                self._backlog_bytes[conn] = self._backlog_bytes.get(conn, 0) - len(data)
                async with asyncio.timeout(self._config.send_timeout):
                    await ws.send(data.decode())
        except (ConnectionClosed, TimeoutError, OSError) as exc:
            log.info("link %d: write failed: %s", conn, exc or type(exc).__name__)
            ws.transport.abort()
        finally:
            if self._backlog.get(conn) is backlog:
                del self._backlog[conn]
                self._backlog_bytes.pop(conn, None)

    def _close(self, conn: int, payload: bytes) -> None:
        ws = self._conns.get(conn)
        if ws is None:
            return
        if not payload:
            ws.transport.abort()
            return
        how = json.loads(payload)
        asyncio.get_running_loop().create_task(
            ws.close(int(how["code"]), str(how["reason"])), name=f"close:{conn}"
        )


async def run_worker(config: WorkerConfig) -> None:
    """Serve until the channel to cloudhub ends."""
    # The same process tuning as cloudhub's: without it each TLS link holds CPython's 256 KiB
    # read buffer (2.5 GB for 10,000 edges), and the collector walks every link's objects.
    tune_process()
    loop = asyncio.get_running_loop()
    gate = ConnectionGate(
        name=f"wss (link worker {config.index})",
        max_pending=config.max_pending_handshakes,
        max_pending_per_ip=config.max_pending_per_ip,
    )
    listener = gate.adopt(config.listen_fd)
    context: ssl.SSLContext = mtls_server_context(
        config.server_cert,
        config.server_key,
        ssl.PEM_cert_to_DER_cert(config.ca_cert.read_text()),
    )
    relay = Relay(config, gate)
    channel_sock = socket.socket(fileno=config.channel_fd)
    await loop.connect_accepted_socket(lambda: relay.channel, channel_sock)
    server = await serve(
        relay.handler,
        sock=listener,
        ssl=context,
        ssl_handshake_timeout=config.handshake_timeout,
        process_request=relay.process_request,
        compression=None,
        max_size=config.max_frame,
        ping_interval=None,
        max_queue=64,
        open_timeout=config.handshake_timeout,
        create_connection=RelayedConnection,
    )
    log.info("link worker %d serving", config.index)
    gc_tuning = loop.create_task(
        freeze_after_bursts(
            lambda: relay.accepted_total,
            lambda: relay.closed_total,
            lambda: len(relay._conns),
        ),
        name="gc-tuning",
    )
    try:
        await relay.channel.lost
    finally:
        gc_tuning.cancel()
        log.info("link worker %d: cloudhub's channel closed; stopping", config.index)
        server.close(close_connections=False)
        with contextlib.suppress(Exception):
            for ws in list(relay._conns.values()):
                ws.transport.abort()
