"""A small MQTT 3.1.1 client: a pure codec and one asyncio protocol, just what the eventbus needs.

Why not aiomqtt/paho: at the twin's target rate (thousands of QoS 1 messages per second in and
out, on two cores shared with mosquitto and the mappers) their per-message cost dominated:
paho sends every packet with its own ``send()`` and reads headers a byte per ``recv()``, and
aiomqtt adds a task and an event per publish and a task per received message. Measured on
the 2-core box: ~190 µs of CPU per message in+out with aiomqtt, against ~40 µs here. This
client reads whatever arrived in one go, parses every complete packet in it, and writes all
packets produced in one loop iteration with one ``send()``.

Scope (what edgecore uses, nothing else): CONNECT with a persistent session, username and
password, TLS through asyncio; SUBSCRIBE; PUBLISH in at QoS 0/1 and out at QoS 1; PUBACK both
ways; PINGREQ keepalive with dead-broker detection; DISCONNECT. No QoS 2, no MQTT 5, no will.

Errors: link failures are the builtin ``ConnectionError``/``OSError``/``TimeoutError``; a broker
that breaks the protocol raises :class:`wire.errors.WireError`; refused credentials or
subscriptions raise :class:`wire.errors.AuthError`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from wire.errors import AuthError, MessageTooLarge, WireError

log = logging.getLogger(__name__)

# packet types (high nibble of the first byte), MQTT 3.1.1 §2.2.1
CONNECT: Final = 1
CONNACK: Final = 2
PUBLISH: Final = 3
PUBACK: Final = 4
SUBSCRIBE: Final = 8
SUBACK: Final = 9
PINGREQ: Final = 12
PINGRESP: Final = 13
DISCONNECT: Final = 14

PINGREQ_PACKET: Final = b"\xc0\x00"
DISCONNECT_PACKET: Final = b"\xe0\x00"
#: the largest packet we accept, bytes (the internal broker is configured with the same limit)
DEFAULT_MAX_PACKET: Final = 16 * 1024 * 1024
_MAX_REMAINING: Final = 268_435_455  # 4 varint bytes, §2.2.3

_CONNACK_REASONS: Final = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


# -- codec (pure) ------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        if n:
            out.append(digit | 0x80)
        else:
            out.append(digit)
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    if len(b) > 0xFFFF:
        raise ValueError("MQTT strings are at most 65535 bytes")
    return struct.pack("!H", len(b)) + b


def _packet(first: int, body: bytes) -> bytes:
    if len(body) > _MAX_REMAINING:
        raise MessageTooLarge(len(body), _MAX_REMAINING)
    return bytes((first,)) + _varint(len(body)) + body


def encode_connect(
    client_id: str,
    *,
    clean_session: bool,
    keepalive: int,
    username: str | None = None,
    password: str | None = None,
) -> bytes:
    """CONNECT for MQTT 3.1.1 (protocol level 4)."""
    flags = 0x02 if clean_session else 0
    payload = _str(client_id)
    if username is not None:
        flags |= 0x80
        payload += _str(username)
        if password is not None:
            flags |= 0x40
            payload += _str(password)
    body = _str("MQTT") + bytes((4, flags)) + struct.pack("!H", keepalive) + payload
    return _packet(CONNECT << 4, body)


def encode_publish(
    topic: str, payload: bytes, *, qos: int, packet_id: int = 0, dup: bool = False
) -> bytes:
    """PUBLISH (never retained). ``packet_id`` is required for QoS 1."""
    first = (PUBLISH << 4) | (qos << 1) | (0x08 if dup else 0)
    head = _str(topic)
    if qos:
        head += struct.pack("!H", packet_id)
    return _packet(first, head + payload)


def encode_puback(packet_id: int) -> bytes:
    return struct.pack("!BBH", PUBACK << 4, 2, packet_id)


def encode_subscribe(packet_id: int, subscriptions: Iterable[tuple[str, int]]) -> bytes:
    body = struct.pack("!H", packet_id)
    for topic, qos in subscriptions:
        body += _str(topic) + bytes((qos,))
    return _packet((SUBSCRIBE << 4) | 0x02, body)


@dataclass(frozen=True, slots=True)
class Publish:
    """A received PUBLISH."""

    topic: str
    payload: bytes
    qos: int
    packet_id: int
    dup: bool
    retain: bool


def decode_publish(flags: int, body: bytes) -> Publish:
    """The PUBLISH in ``body`` (the bytes after the fixed header).

    Raises:
        WireError: truncated, or QoS 3.
    """
    qos = (flags >> 1) & 3
    if qos == 3:
        raise WireError("PUBLISH with QoS 3")
    if len(body) < 2:
        raise WireError("truncated PUBLISH")
    (n,) = struct.unpack_from("!H", body)
    end = 2 + n
    if qos:
        if len(body) < end + 2:
            raise WireError("truncated PUBLISH")
        (packet_id,) = struct.unpack_from("!H", body, end)
        start = end + 2
    else:
        if len(body) < end:
            raise WireError("truncated PUBLISH")
        packet_id = 0
        start = end
    return Publish(
        topic=body[2:end].decode(errors="replace"),
        payload=body[start:],
        qos=qos,
        packet_id=packet_id,
        dup=bool(flags & 0x08),
        retain=bool(flags & 0x01),
    )


class PacketReader:
    """Splits a byte stream into packets: ``feed`` bytes, get ``(type, flags, body)`` back."""

    def __init__(self, *, max_packet: int = DEFAULT_MAX_PACKET) -> None:
        self._buf = bytearray()
        self._max = max_packet

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        """Every packet completed by ``data``, in order.

        Raises:
            WireError: a malformed length.
            MessageTooLarge: a packet over ``max_packet``.
        """
        buf = self._buf
        buf += data
        out: list[tuple[int, int, bytes]] = []
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            # remaining length: 1-4 bytes, 7 bits each, least significant first (§2.2.3)
            length = 0
            multiplier = 1
            i = pos + 1
            complete = False
            for _ in range(4):
                if i >= size:
                    break
                b = buf[i]
                i += 1
                length += (b & 0x7F) * multiplier
                multiplier *= 128
                if not b & 0x80:
                    complete = True
                    break
            else:
                raise WireError("malformed remaining length")
            if not complete:
                break  # the length itself is not all here yet
            if length > self._max:
                raise MessageTooLarge(length, self._max)
            end = i + length
            if end > size:
                break
            first = buf[pos]
            out.append((first >> 4, first & 0x0F, bytes(buf[i:end])))
            pos = end
        if pos:
            del buf[:pos]
        return out


# -- client (asyncio) --------------------------------------------------------------------------

#: ``on_message(connection, publish)`` returns ``True`` when the message is handled (it is
#: acknowledged at once) or ``False`` when the consumer keeps it for later and calls
#: :meth:`Connection.ack` itself. Unacknowledged QoS 1 messages count against the broker's
#: in-flight limit, which is how a slow consumer slows the broker down: reading never stops,
#: so PUBACKs for our own publishes keep arriving.
OnMessage = Callable[["Connection", Publish], bool]


class Connection(asyncio.Protocol):
    """One MQTT connection. Build it with :func:`connect`."""

    def __init__(
        self, *, on_message: OnMessage, keepalive: int, window: int, max_packet: int
    ) -> None:
        self._on_message = on_message
        self._reader = PacketReader(max_packet=max_packet)
        self._keepalive = keepalive
        self._window = max(1, window)
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._wbuf = bytearray()
        self._flush_scheduled = False
        self._connack: asyncio.Future[bool] = self._loop.create_future()
        self._subacks: dict[int, asyncio.Future[bytes]] = {}
        self._next_id = 0
        self._window_open = asyncio.Event()
        self._window_open.set()
        self._writable = asyncio.Event()
        self._writable.set()
        self._last_received = self._loop.time()
        self._pinger: asyncio.TimerHandle | None = None
        #: packet id -> caller's token, in send order (QoS 1 publishes awaiting their PUBACK)
        self.inflight: dict[int, object] = {}
        #: called with the token of every acknowledged publish
        self.on_puback: Callable[[object], None] = lambda _token: None
        #: resolves when the link is gone: to the error, or ``None`` after :meth:`disconnect`
        self.closed: asyncio.Future[BaseException | None] = self._loop.create_future()

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(exc or ConnectionResetError("MQTT broker closed the connection"))

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def data_received(self, data: bytes) -> None:
        self._last_received = self._loop.time()
        try:
            for ptype, flags, body in self._reader.feed(data):
                if self.closed.done():
                    return
                self._handle(ptype, flags, body)
        except WireError as exc:
            self.abort(exc)
        except Exception as exc:  # a consumer bug must not leave a half-dead link behind
            log.exception("MQTT message handling failed; dropping the connection")
            self.abort(exc)

    def _handle(self, ptype: int, flags: int, body: bytes) -> None:
        if ptype == PUBLISH:
            msg = decode_publish(flags, body)
            if msg.qos == 2:
                raise WireError("broker sent QoS 2 on a QoS 1 subscription")
            if self._on_message(self, msg) and msg.qos:
                self._write(encode_puback(msg.packet_id))
        elif ptype == PUBACK:
            if len(body) != 2:
                raise WireError("malformed PUBACK")
            token = self.inflight.pop(struct.unpack("!H", body)[0], None)
            if token is not None:
                self.on_puback(token)
            if len(self.inflight) < self._window:
                self._window_open.set()
        elif ptype == CONNACK:
            self._handle_connack(body)
        elif ptype == SUBACK:
            if len(body) < 3:
                raise WireError("malformed SUBACK")
            fut = self._subacks.pop(struct.unpack_from("!H", body)[0], None)
            if fut is not None and not fut.done():
                fut.set_result(body[2:])
        elif ptype != PINGRESP:
            raise WireError(f"unexpected MQTT packet type {ptype}")

    def _handle_connack(self, body: bytes) -> None:
        if len(body) != 2:
            raise WireError("malformed CONNACK")
        if self._connack.done():
            raise WireError("second CONNACK")
        code = body[1]
        if code == 0:
            self._connack.set_result(bool(body[0] & 1))
            return
        reason = f"MQTT broker refused the connection: {_CONNACK_REASONS.get(code, code)}"
        err: Exception = AuthError(reason) if code in (4, 5) else ConnectionRefusedError(reason)
        self._connack.set_exception(err)
        self._connack.exception()  # connect() re-raises it; nothing to log if it gave up
        self.abort(err)

    # -- writing: everything produced in one loop iteration goes out in one send()

    def _write(self, data: bytes) -> None:
        self._wbuf += data
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._wbuf and self._transport is not None and not self._transport.is_closing():
            self._transport.write(bytes(self._wbuf))
        self._wbuf.clear()

    def _packet_id(self) -> int:
        while True:
            self._next_id = self._next_id % 0xFFFF + 1
            if self._next_id not in self.inflight and self._next_id not in self._subacks:
                return self._next_id

    # -- API

    async def wait_window(self) -> None:
        """Until a publish may go out: fewer than ``window`` in flight, socket not backed up.

        Returns at once when the connection is closed (check :attr:`closed`).
        """
        while not self.closed.done():
            if not self._writable.is_set():
                await self._writable.wait()
            elif len(self.inflight) >= self._window:
                self._window_open.clear()
                await self._window_open.wait()
            else:
                return

    def publish(self, topic: str, payload: bytes, token: object) -> None:
        """Queue a QoS 1 PUBLISH; ``on_puback(token)`` once the broker has it.

        Raises:
            ConnectionResetError: the connection is closed.
        """
        if self.closed.done():
            raise ConnectionResetError("MQTT connection is closed")
        pid = self._packet_id()
        self.inflight[pid] = token
        self._write(encode_publish(topic, payload, qos=1, packet_id=pid))

    async def subscribe(self, subscriptions: list[tuple[str, int]], *, timeout: float) -> None:
        """Subscribe and wait for the SUBACK.

        Raises:
            AuthError: the broker refused one of them.
            TimeoutError, ConnectionError: no SUBACK.
        """
        pid = self._packet_id()
        fut: asyncio.Future[bytes] = self._loop.create_future()
        self._subacks[pid] = fut
        self._write(encode_subscribe(pid, subscriptions))
        try:
            async with asyncio.timeout(timeout):
                await asyncio.wait((fut, self.closed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._subacks.pop(pid, None)
        if not fut.done():
            fut.cancel()
            raise self.closed.result() or ConnectionResetError("MQTT connection closed")
        codes = fut.result()
        refused = [t for (t, _), c in zip(subscriptions, codes, strict=False) if c & 0x80]
        if refused:
            raise AuthError(f"MQTT broker refused the subscription to {', '.join(refused)}")

    def ack(self, publish: Publish) -> None:
        """Acknowledge a message whose ``on_message`` returned ``False``."""
        if publish.qos and not self.closed.done():
            self._write(encode_puback(publish.packet_id))

    def abort(self, exc: BaseException | None = None) -> None:
        """Drop the link now."""
        self._finish(exc)
        if self._transport is not None:
            self._transport.abort()

    async def disconnect(self) -> None:
        """Send DISCONNECT (a persistent session stays on the broker) and close."""
        if self._transport is not None and not self._transport.is_closing():
            self._flush()
            self._transport.write(DISCONNECT_PACKET)
            self._transport.close()
        self._finish(None)

    def _finish(self, exc: BaseException | None) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
            self._pinger = None
        if not self._connack.done():
            self._connack.set_exception(exc or ConnectionResetError("MQTT connection closed"))
            self._connack.exception()  # mark it retrieved: connect() may have given up already
        if not self.closed.done():
            self.closed.set_result(exc)
        # wake publishers so they see the close
        self._window_open.set()
        self._writable.set()

    # -- keepalive

    def _start_keepalive(self) -> None:
        if self._keepalive > 0:
            self._pinger = self._loop.call_later(self._keepalive / 2, self._ping)

    def _ping(self) -> None:
        # a broker silent for 1.5 keepalives is gone (the rule the spec gives the server)
        silent = self._loop.time() - self._last_received
        if silent > 1.5 * self._keepalive:
            self.abort(TimeoutError(f"MQTT broker silent for {silent:.0f}s"))
            return
        self._write(PINGREQ_PACKET)
        self._pinger = self._loop.call_later(self._keepalive / 2, self._ping)


async def connect(
    host: str,
    port: int,
    *,
    client_id: str,
    on_message: OnMessage,
    clean_session: bool = False,
    keepalive: int = 15,
    username: str | None = None,
    password: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    window: int = 256,
    timeout: float = 10.0,
    max_packet: int = DEFAULT_MAX_PACKET,
) -> tuple[Connection, bool]:
    """Open a connection and wait for its CONNACK.

    Args:
        host, port: the broker.
        client_id: with ``clean_session=False``, the broker keeps this id's subscriptions and
            queued QoS 1 messages while we are away.
        on_message: called for every PUBLISH received, in order (see :data:`OnMessage`).
        keepalive: seconds; we ping every ``keepalive/2`` and drop a broker silent for 1.5x.
        username, password: sent in CONNECT (use TLS when they matter).
        ssl_context: TLS; the host name is checked against ``host``.
        window: QoS 1 publishes in flight at once (see :meth:`Connection.wait_window`).
        timeout: seconds for TCP, TLS and CONNACK together.
        max_packet: larger incoming packets drop the connection (:class:`MessageTooLarge`).

    Returns:
        The connection and the broker's *session present* flag.

    Raises:
        OSError, TimeoutError: cannot reach the broker.
        AuthError: bad credentials or not authorised.
        WireError: the broker broke the protocol.
    """
    loop = asyncio.get_running_loop()
    conn = Connection(
        on_message=on_message, keepalive=keepalive, window=window, max_packet=max_packet
    )
    try:
        async with asyncio.timeout(timeout):
            await loop.create_connection(
                lambda: conn,
                host,
                port,
                ssl=ssl_context,
                server_hostname=host if ssl_context is not None else None,
            )
            conn._write(
                encode_connect(
                    client_id,
                    clean_session=clean_session,
                    keepalive=keepalive,
                    username=username,
                    password=password,
                )
            )
            present = await conn._connack
    except BaseException:
        conn.abort()
        raise
    conn._start_keepalive()
    return conn, present
