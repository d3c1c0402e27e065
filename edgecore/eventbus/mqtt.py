"""paho-mqtt driven by the asyncio event loop: the eventbus's MQTT connection.

paho owns the protocol: packet codec, CONNECT/SUBSCRIBE/PUBLISH/PUBACK flows, keepalive, and
the QoS 1 publishes not yet acknowledged, which it keeps across reconnects of the same
:class:`Client` and sends again (DUP set) after the next CONNACK. This module only connects paho
to the event loop and turns its callbacks into futures and exceptions.

Why no paho thread (``loop_start``) and no aiomqtt: the eventbus runs in edgecore's event loop next
to the twin, and at thousands of messages per second every thread hop and every task costs CPU the
twin needs. Here the loop calls paho directly: ``add_reader`` on paho's socket runs ``loop_read``;
writes paho queues during one loop iteration go out at the end of it in one ``send`` (``call_soon``,
with ``add_writer`` only while the socket is backed up); a 1 s timer runs ``loop_misc`` (keepalive).
aiomqtt on the same paho adds a task per received message and a future, an event and a timeout per
publish, and acknowledges a message before the consumer has it. Paho's socket reads and writes go
through buffers (:class:`_BufferedPaho`) and QoS 0 answers share one info object
(:class:`_SharedInfo`) because per message, both were a large share of the eventbus's CPU;
``bench/mqtt_client_overhead.py`` measures it (figures in ``bench/README.md``).

Why connect in a thread: paho's ``reconnect`` resolves the name, connects and does the TLS
handshake blocking. Nothing else touches the client meanwhile, and the socket is attached to
the loop only after the thread returned, so paho is otherwise only driven from the loop thread.

Why manual acknowledgements: a received QoS 1 message is acknowledged only once the consumer
took it (:data:`OnMessage`), so a slow consumer makes the broker hold the backlog (its in-flight
limit) instead of this process. Reading never stops: the PUBACKs for our own publishes arrive
on the same socket.

Errors: link failures are the builtin ``ConnectionError``/``OSError``/``TimeoutError``; refused
credentials or subscriptions raise :class:`wire.errors.AuthError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any, Final, TypeVar

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from wire.errors import AuthError

log = logging.getLogger(__name__)

#: the largest packet the internal broker accepts, bytes (mosquitto's ``max_packet_size``)
DEFAULT_MAX_PACKET: Final = 16 * 1024 * 1024
#: paho's CONNACK reason codes (MQTT 3.1.1 return codes 4 and 5 mapped to MQTT 5 numbers)
_BAD_CREDENTIALS: Final = frozenset({134, 135})
#: paho's disconnect reason when the broker did not answer a PINGREQ in time
_KEEPALIVE_TIMEOUT: Final = 141
#: ``loop_misc`` period, seconds: paho sends PINGREQ and notices a silent broker from there
_MISC_PERIOD: Final = 1.0
#: ``loop_read`` rounds per readable event: enough to drain a burst, bounded so that one busy
#: socket cannot starve the rest of the loop (epoll reports it again next iteration)
_READ_ROUNDS: Final = 32

#: bytes read from the socket at once; paho asks for a packet in 3 pieces (type, length, rest)
_RECV_SIZE: Final = 64 * 1024

Message = paho.MQTTMessage
_T = TypeVar("_T")


class _SharedInfo(paho.MQTTMessageInfo):
    """The one :class:`paho.MQTTMessageInfo` all QoS 0 publishes of a client share.

    paho builds one per publish, each with a ``threading.Condition`` for ``wait_for_publish``,
    and marks it published (taking that lock) once the packet is written. Nothing here waits
    on a QoS 0 publish, and at thousands of answers a second those objects were ~5 % of
    edgecore's CPU, so they are made once and told nothing.
    """

    __slots__ = ()

    def _set_as_published(self) -> None:
        return


class _BufferedPaho(paho.Client):
    """paho reading and writing its socket through buffers.

    Why: paho reads every packet with three ``recv`` calls (its type byte, its length bytes,
    the rest) and writes every packet with its own ``send``, one system call each; at
    thousands of small packets a second those were a fifth of edgecore's CPU. Here one
    ``recv`` fills a 64 KiB buffer that paho's reads are served from, and paho's writes go to
    a buffer that :class:`Client` sends with one ``send`` per event-loop iteration.
    ``_sock_recv``/``_sock_send``/``_sock_close`` are paho's only socket paths (private, hence
    paho < 3 in ``pyproject.toml``; the eventbus tests exercise them against mosquitto).

    epoll cannot see bytes already in the read buffer: :meth:`Client._on_readable` keeps
    reading while :meth:`buffered` says there are some.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self._wbuf = bytearray()
        self._qos0_info = _SharedInfo(0)

    def publish_qos0(self, topic: str, payload: bytes) -> int:
        """What ``publish(topic, payload, qos=0)`` does, checks included, with the shared
        :class:`_SharedInfo`; returns the message id. paho < 3's ``_send_publish`` is private,
        like the socket paths above (the eventbus tests cover it).

        Raises:
            ValueError: an invalid topic or a payload over MQTT's limit.
        """
        if not topic:
            raise ValueError("Invalid topic.")
        topic_bytes = topic.encode("utf-8")
        self._raise_for_invalid_topic(topic_bytes)
        if len(payload) > 268435455:
            raise ValueError("Payload too large.")
        mid = self._mid_generate()
        self._send_publish(mid, topic_bytes, payload, 0, False, False, self._qos0_info, None)
        return mid

    def _sock_recv(self, bufsize: int) -> bytes:
        buf, pos = self._rbuf, self._rpos
        if pos >= len(buf):
            buf = super()._sock_recv(_RECV_SIZE)  # BlockingIOError when there is nothing
            if not buf:
                return buf  # the end of the stream
            pos = 0
        end = min(pos + bufsize, len(buf))
        self._rbuf, self._rpos = buf, end
        return buf[pos:end]

    def _sock_send(self, buf: bytes | bytearray) -> int:
        if self._sock is None:
            raise ConnectionError("self._sock is None")
        self._wbuf += buf
        return len(buf)

    def _sock_close(self) -> None:
        # paho closes right after "writing" a DISCONNECT: send it (best effort) first
        if self._sock is not None and self._wbuf:
            with contextlib.suppress(OSError):
                self._sock.send(self._wbuf)
        self._wbuf.clear()
        super()._sock_close()

    def buffered(self) -> int:
        """Bytes read from the socket that paho has not taken yet."""
        return len(self._rbuf) - self._rpos

    def send_buffered(self) -> bool:
        """Send what paho wrote; ``True`` once all of it went, ``False`` if the kernel is full.

        Raises:
            OSError: the link is broken.
        """
        wbuf, sock = self._wbuf, self._sock
        while wbuf and sock is not None:
            try:
                n = sock.send(wbuf)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return False
            del wbuf[:n]
        return True

    def new_connection(self) -> None:
        """Forget what the previous connection left unread or unsent."""
        self._rbuf, self._rpos = b"", 0
        self._wbuf.clear()


#: ``on_message(message)`` returns ``True`` when the message is handled (a QoS 1 message is
#: acknowledged at once) or ``False`` when the consumer keeps it and calls :meth:`Client.ack`
#: later. Unacknowledged QoS 1 messages count against the broker's in-flight limit.
OnMessage = Callable[[paho.MQTTMessage], bool]


def _shutdown(sock: object) -> None:
    """End both directions: the next read sees the end of the stream, and so does the broker."""
    if isinstance(sock, socket.socket):  # an ssl.SSLSocket too
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class Client:
    """One paho client for the life of the eventbus, connected again and again.

    Keep the same object across reconnects: paho resends the publishes still unacknowledged
    from the previous connection, and a persistent session (``clean_session=False``) lets the
    broker keep our subscriptions and queue for us while we are away.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        on_message: OnMessage,
        on_published: Callable[[int], None],
        clean_session: bool = False,
        keepalive: int = 15,
        username: str | None = None,
        password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 10.0,
    ) -> None:
        """
        Args:
            host, port: the broker.
            client_id: with ``clean_session=False`` the broker keeps this id's session.
            on_message: every PUBLISH received, in order (see :data:`OnMessage`).
            on_published: the message id of every publish the broker acknowledged.
            keepalive: seconds; paho pings after this long without traffic and drops a broker
                that does not answer within another keepalive.
            username, password: sent in CONNECT (use TLS when they matter).
            ssl_context: TLS; paho checks the host name against ``host``.
            timeout: seconds for TCP and TLS, and again for the CONNACK.
        """
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._on_message = on_message
        self._on_published = on_published
        self._timeout = timeout
        c = _BufferedPaho(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=MQTTProtocolVersion.MQTTv311,
            reconnect_on_failure=False,
            manual_ack=True,
        )
        c.connect_timeout = timeout
        # no limits in paho: the eventbus hands over at most ``window`` publishes at a time,
        # and paho's own limit walks every unacknowledged publish on every PUBACK
        c.max_inflight_messages_set(0)
        c.max_queued_messages_set(0)
        if username is not None:
            c.username_pw_set(username, password)
        if ssl_context is not None:
            c.tls_set_context(ssl_context)
        if log.isEnabledFor(logging.DEBUG):
            # a log call per packet otherwise, even when filtered out
            c.enable_logger(logging.getLogger(f"{__name__}.paho"))
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_paho_message
        c.on_publish = self._on_publish
        c.on_socket_close = self._on_socket_close
        c.on_socket_register_write = self._on_register_write
        c.connect_async(host, port, keepalive)
        self._paho = c
        self._fd = -1
        self._writer = False
        self._flush_scheduled = False
        self._misc: asyncio.TimerHandle | None = None
        self._closing = False
        self._progress = 0  # callbacks run: tells the read loop it decoded something
        self._connack: asyncio.Future[bool] = self._loop.create_future()
        self._connecting: asyncio.Future[Any] | None = None
        self._subacks: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        #: bumped on every connection: an ack for an older one is dropped
        self.generation = 0
        #: resolves when the current connection is gone: to the error, or ``None`` after
        #: :meth:`disconnect`; a done future while not connected
        self.closed: asyncio.Future[BaseException | None] = self._loop.create_future()
        self.closed.set_result(None)

    # -- connection

    async def connect(self) -> bool:
        """Open a connection and wait for its CONNACK; returns the *session present* flag.

        Raises:
            OSError, TimeoutError: cannot reach the broker.
            AuthError: bad credentials or not authorised.
            ConnectionRefusedError: the broker refused for another reason.
        """
        if self._connecting is not None:
            # a connect abandoned by a cancelled caller: paho is not ours until it returns
            await asyncio.wait((self._connecting,))
        self._drop()  # a connection aborted earlier but not yet read to its end
        self.generation += 1  # from now on, acks for the previous connection are dropped
        self._closing = False
        self._connack = self._loop.create_future()
        self.closed = self._loop.create_future()
        self._paho.new_connection()
        pending = self._connecting = self._in_thread(self._paho.reconnect)
        try:
            await asyncio.shield(pending)
        except asyncio.CancelledError:
            # the thread still runs; close what it opens once it is done
            pending.add_done_callback(self._abandoned)
            raise
        except BaseException as exc:
            self._connecting = None
            self._finish(exc)
            raise
        self._connecting = None
        self._attach()
        try:
            async with asyncio.timeout(self._timeout):
                return await self._connack
        except BaseException as exc:
            self.abort(exc)
            self._drop()
            raise

    async def subscribe(self, subscriptions: list[tuple[str, int]], *, timeout: float) -> None:
        """Subscribe and wait for the SUBACK.

        Raises:
            AuthError: the broker refused one of them.
            TimeoutError, ConnectionError: no SUBACK.
        """
        rc, mid = self._paho.subscribe(subscriptions)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise ConnectionResetError(f"MQTT subscribe failed: {paho.error_string(rc)}")
        fut: asyncio.Future[list[ReasonCode]] = self._loop.create_future()
        self._subacks[mid] = fut
        try:
            async with asyncio.timeout(timeout):
                await asyncio.wait((fut, self.closed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._subacks.pop(mid, None)
        if not fut.done():
            fut.cancel()
            raise self.closed.result() or ConnectionResetError("MQTT connection closed")
        refused = [
            t for (t, _), c in zip(subscriptions, fut.result(), strict=False) if c.is_failure
        ]
        if refused:
            raise AuthError(f"MQTT broker refused the subscription to {', '.join(refused)}")

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> int:
        """Hand paho a publish (not retained); returns its message id.

        At QoS 1 paho keeps it until the broker acknowledges it, across reconnects;
        ``on_published`` then gets the id. Without a connection it is sent after the next
        CONNACK. At QoS 0 it goes out with the next write, or not at all without a connection.

        Raises:
            ValueError: an invalid topic or a payload over MQTT's limit.
        """
        if qos == 0:
            return self._paho.publish_qos0(topic, payload)
        while True:
            info = self._paho.publish(topic, payload, qos=qos)
            # "queue full" only when the id wrapped onto one still in flight: take the next
            if info.rc != MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
                return info.mid

    def ack(self, mid: int, qos: int, generation: int) -> None:
        """Acknowledge a message whose ``on_message`` returned ``False``.

        A no-op when the connection it came on (``generation``) is gone: the broker sends
        that message again.
        """
        if qos and generation == self.generation and self._fd >= 0 and not self.closed.done():
            self._paho.ack(mid, qos)

    async def disconnect(self, *, timeout: float = 2.0) -> None:
        """Send DISCONNECT (a persistent session stays on the broker) and close."""
        if self._paho.socket() is None:
            self._finish(None)
            return
        self._paho.disconnect()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self.closed)
        except TimeoutError:
            self._finish(None)
            self._drop()

    def abort(self, exc: BaseException | None = None) -> None:
        """Drop the link now; paho reads the end of it on the next loop iteration."""
        self._finish(exc)
        _shutdown(self._paho.socket())

    def _finish(self, exc: BaseException | None) -> None:
        self._closing = True
        if not self._connack.done():
            self._connack.set_exception(exc or ConnectionResetError("MQTT connection closed"))
            self._connack.exception()  # connect() re-raises it; nothing to log if it gave up
        if not self.closed.done():
            self.closed.set_result(exc)

    def _in_thread(self, fn: Callable[[], _T]) -> asyncio.Future[_T]:
        """Run blocking ``fn`` in a daemon thread of its own.

        Not the loop's default executor: shutting that down waits for its threads, so a stop
        during a connect to an unreachable broker would hang until the connect timeout.
        """
        fut: asyncio.Future[_T] = self._loop.create_future()

        def deliver(outcome: Callable[[], None]) -> None:
            def apply() -> None:
                if not fut.done():
                    outcome()

            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                self._loop.call_soon_threadsafe(apply)

        def target() -> None:
            try:
                result = fn()
            except BaseException as exc:
                deliver(functools.partial(fut.set_exception, exc))
            else:
                deliver(functools.partial(fut.set_result, result))

        threading.Thread(target=target, name="mqtt-connect", daemon=True).start()
        return fut

    def _abandoned(self, done: asyncio.Future[Any]) -> None:
        if not done.cancelled():
            done.exception()  # nobody waits for it any more
        self._connecting = None
        self._drop()

    def _drop(self) -> None:
        """Close a socket paho still holds, through paho's own path (so it forgets it too).

        Only from the loop, never from inside a paho callback.
        """
        for _ in range(1000):  # shut down: paho reads what is left, then the end
            sock = self._paho.socket()
            if sock is None:
                return
            self._closing = True
            _shutdown(sock)
            self._paho.loop_read()

    # -- the event loop drives paho

    def _attach(self) -> None:
        sock = self._paho.socket()
        if sock is None:  # closed already (a callback from the connecting thread?)
            raise ConnectionResetError("MQTT connection closed while connecting")
        if isinstance(sock, socket.socket):
            # one send per loop iteration: without this, Nagle holds it back until the
            # previous segment is acknowledged (milliseconds each)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._fd = sock.fileno()
        self._loop.add_reader(self._fd, self._on_readable)
        self._misc = self._loop.call_later(_MISC_PERIOD, self._on_misc)
        self._flush()  # the CONNECT paho queued in the connecting thread

    def _on_readable(self) -> None:
        c = self._paho
        try:
            for _ in range(_READ_ROUNDS):
                before = self._progress
                if c.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    return  # paho closed the socket and called on_disconnect
                sock = c.socket()
                if sock is None:
                    return
                if c.buffered() or (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                    continue  # bytes epoll cannot see (ours, or decrypted ones)
                if self._progress == before:
                    return  # nothing complete left: wait for epoll
            if c.buffered():
                # a busy socket yields after _READ_ROUNDS; come back for what is buffered
                self._loop.call_soon(self._on_readable)
        except Exception as exc:  # a consumer bug must not leave a half-dead link behind
            log.exception("MQTT message handling failed; dropping the connection")
            self.abort(exc)

    def _flush(self) -> None:
        """paho's queued packets into the write buffer, and the buffer to the socket."""
        self._flush_scheduled = False
        c = self._paho
        if c.socket() is None:
            return
        # paho reports each QoS 0 publish it writes to on_publish, with a reason code and a
        # properties object built for it; nothing here needs that (the eventbus counts a QoS 0
        # publish when it hands it over), and at thousands a second it costs. QoS 1 PUBACKs
        # are read, not written, so they still reach on_publish.
        on_publish, c.on_publish = c.on_publish, None
        try:
            c.loop_write()
        finally:
            c.on_publish = on_publish
        if c.socket() is None:
            return
        try:
            backed_up = not c.send_buffered() or c.want_write()
        except OSError as exc:
            self.abort(exc)  # paho reads the end of the link next and reports it
            return
        if backed_up and not self._writer:
            # the kernel is full: write again when it has room
            self._writer = True
            self._loop.add_writer(self._fd, self._flush)
        elif not backed_up and self._writer:
            self._writer = False
            self._loop.remove_writer(self._fd)

    def _on_misc(self) -> None:
        self._misc = None
        if self._paho.loop_misc() == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._misc = self._loop.call_later(_MISC_PERIOD, self._on_misc)

    # -- paho callbacks (on the loop thread, except where noted)

    def _on_register_write(self, _c: paho.Client, _u: Any, _sock: Any) -> None:
        # from the connecting thread during reconnect(): _attach() flushes instead
        if not self._flush_scheduled and threading.get_ident() == self._thread:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _on_socket_close(self, _c: paho.Client, _u: Any, _sock: Any) -> None:
        if threading.get_ident() != self._thread or self._fd < 0:
            return  # never attached (or paho's __del__ after the loop is gone)
        self._loop.remove_reader(self._fd)
        if self._writer:
            self._writer = False
            self._loop.remove_writer(self._fd)
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None
        self._fd = -1

    def _on_connect(
        self,
        _c: paho.Client,
        _u: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        _p: Any,
    ) -> None:
        self._progress += 1
        if self._connack.done():
            return
        if not reason.is_failure:
            self._connack.set_result(flags.session_present)
            return
        text = f"MQTT broker refused the connection: {reason}"
        err: Exception = (
            AuthError(text) if reason.value in _BAD_CREDENTIALS else ConnectionRefusedError(text)
        )
        self._finish(err)

    def _on_disconnect(
        self,
        _c: paho.Client,
        _u: Any,
        _flags: paho.DisconnectFlags,
        reason: ReasonCode,
        _p: Any,
    ) -> None:
        self._progress += 1
        if reason.is_failure:
            err: BaseException = (
                TimeoutError("MQTT broker did not answer the keepalive ping")
                if reason.value == _KEEPALIVE_TIMEOUT
                else ConnectionResetError(f"MQTT connection lost ({reason})")
            )
            self._finish(err)
        else:
            self._finish(None)

    def _on_subscribe(
        self, _c: paho.Client, _u: Any, mid: int, codes: list[ReasonCode], _p: Any
    ) -> None:
        self._progress += 1
        fut = self._subacks.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(codes)

    def _on_publish(self, _c: paho.Client, _u: Any, mid: int, _r: Any, _p: Any) -> None:
        self._progress += 1
        self._on_published(mid)

    def _on_paho_message(self, c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        self._progress += 1
        if self._closing:
            return  # not acknowledged: the broker sends it again on the next connection
        if self._on_message(message) and message.qos:
            c.ack(message.mid, message.qos)
