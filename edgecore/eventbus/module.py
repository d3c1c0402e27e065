"""The ``eventbus`` module: edgecore's MQTT client, between local devices and the twin.

::

    mapper ──MQTT──> mosquitto ──> eventbus ──bus "message"──> twin
    mapper <──MQTT── mosquitto <── eventbus <──bus "publish"── twin

In internal mode (the default) it also starts and supervises a local :class:`Mosquitto`; in
external mode it connects to the broker at ``settings.url``.

Why a persistent session with a fixed client id (``edgecore-{node}``, clean session off):
the broker then keeps our subscriptions and queues QoS 1 messages while edgecore is down or
restarting, and hands them over when it reconnects. Mappers' reports sent during an edgecore
upgrade are therefore not lost. We still re-subscribe on every connect: a broker that lost its
database (or a first connection) has no session to resume.

Why an outbox in front of the connection: the twin publishes answers whether or not the broker is
up. Publishes wait in a bounded outbox across reconnects and are handed to paho in order once
connected, QoS 1 ones at most ``window`` unacknowledged at a time; paho keeps those across a lost
link and sends them again, first, after the next CONNACK (QoS 1 is at-least-once, so a duplicate is
allowed, a loss is not). While connected, a full outbox pushes back on the twin; while disconnected
it drops its oldest entry instead, with a warning, so the twin never stalls on a broker that is away
(its state is in SQLite; a mapper gets the current twin with ``twin/get``).

Why received messages are acknowledged only once the twin's inbox took them: the broker keeps
at most its in-flight limit of unacknowledged QoS 1 messages on the way to us (mosquitto's
``max_inflight_messages``) and queues the rest, so a twin that falls behind makes the broker
hold the backlog, not this process. The socket itself is never paused: the PUBACKs for our own
publishes arrive on it, and a twin blocked on publishing would otherwise never drain its inbox
(a deadlock the throughput bench found). QoS 0 messages have no such limit; beyond
``max_backlog`` they are dropped, with a warning, as QoS 0 allows. After a reconnect the broker
may hand over again what the twin already has: QoS 1 is at-least-once both ways.

Throughput: the MQTT client is paho-mqtt driven by this event loop (:mod:`edgecore.eventbus.mqtt`:
no thread, no task per message); every message in costs one bus message, the twin's answers
come as one bus message per commit (``publish_batch``), answers and documents go at QoS 0
(:func:`wire.topics.publish_qos`: no PUBACK to wait for), no per-message INFO logging, debug
lines behind ``isEnabledFor``, and up to ``window`` QoS 1 publishes in flight at once instead of
one round trip each. ``bench/mqtt_client_overhead.py`` measures it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from edgecore.config import MqttSettings
from edgecore.eventbus import mqtt
from edgecore.eventbus.broker import Mosquitto
from edgecore.modules import BUS_GROUP, EVENTBUS, TWIN, TWIN_GROUP
from hive.backoff import backoff
from hive.bus import Bus, UnknownModule
from hive.local_messages import MessageIds
from wire import topics
from wire.codec import bus_message
from wire.errors import AuthError, ConfigError, WireError
from wire.messages import Message

log = logging.getLogger(__name__)

PUBLISH = "publish"
#: content: a list of ``(topic, content)`` pairs, published in order (the twin's per-commit
#: answers: one bus message per batch instead of one per answer)
PUBLISH_BATCH = "publish_batch"
#: the operation of every message handed to the twin
MESSAGE = "message"
#: schemes of ``settings.url``: plain TCP and TLS (``tcp``/``ssl`` as KubeEdge writes them)
_PLAIN = frozenset({"mqtt", "tcp"})
_TLS = frozenset({"mqtts", "ssl", "tls"})


@dataclass(frozen=True)
class BrokerAddress:
    """Where the MQTT broker is, parsed from ``mqtt[s]://[user[:password]@]host[:port]``."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def display(self) -> str:
        """For logs: never contains the password."""
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{user}{host}:{self.port}"


def parse_url(url: str) -> BrokerAddress:
    """Parse an external broker URL (``mqtt://``, ``mqtts://``, KubeEdge's ``tcp://``, ``ssl://``).

    Raises:
        ConfigError: not such a URL.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"invalid MQTT URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _PLAIN | _TLS or not parts.hostname:
        # not echoing the URL: it may carry a password
        raise ConfigError("MQTT URL must look like mqtt://HOST:PORT or mqtts://HOST:PORT")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError("MQTT URL must not have a path, query or fragment")
    tls = scheme in _TLS
    return BrokerAddress(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def encode_payload(content: Any) -> bytes:
    """A publish message's content as MQTT payload: JSON for objects, UTF-8 for strings."""
    if content is None:
        return b""
    if isinstance(content, bytes):
        return content
    if isinstance(content, str):
        return content.encode()
    return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()


def _valid_publish_topic(topic: str) -> bool:
    # MQTT forbids wildcards and NUL in a published topic, and strings over 65535 bytes; the
    # broker would drop the whole connection, and the outbox would resend it forever
    return (
        bool(topic)
        and "+" not in topic
        and "#" not in topic
        and "\x00" not in topic
        and len(topic.encode()) <= 0xFFFF
    )


@dataclass(slots=True)
class _Publish:
    topic: str
    payload: bytes
    #: :func:`wire.topics.publish_qos`: 0 for answers, 1 for the rest
    qos: int = 1


class _Outbox:
    """FIFO of publishes waiting for the broker, bounded by ``limit`` (requeues may exceed it)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._items: deque[_Publish] = deque()
        self._nonempty = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        return len(self._items) >= self.limit

    def append(self, item: _Publish) -> None:
        self._items.append(item)
        self._changed()

    def requeue(self, items: list[_Publish]) -> None:
        """Put ``items`` back at the front, in their order: they were sent first."""
        self._items.extendleft(reversed(items))
        self._changed()

    def drop_oldest(self) -> _Publish:
        item = self._items.popleft()
        self._changed()
        return item

    def pop_nowait(self) -> _Publish | None:
        if not self._items:
            return None
        item = self._items.popleft()
        self._changed()
        return item

    async def pop(self) -> _Publish:
        while not self._items:
            await self._nonempty.wait()
        item = self._items.popleft()
        self._changed()
        return item

    async def wait_space(self) -> None:
        await self._space.wait()

    def _changed(self) -> None:
        n = len(self._items)
        if n:
            self._nonempty.set()
        else:
            self._nonempty.clear()
        if n < self.limit:
            self._space.set()
        else:
            self._space.clear()


class EventBus:
    """MQTT in and out for the twin; supervises the internal mosquitto."""

    name = EVENTBUS
    group = BUS_GROUP

    def __init__(
        self,
        *,
        bus: Bus,
        settings: MqttSettings,
        node_name: str,
        data_dir: Path,
        reconnect_initial: float = 0.2,
        reconnect_cap: float = 10.0,
        keepalive: int = 15,
        window: int = 256,
        max_pending: int = 10_000,
        max_backlog: int = 10_000,
        subscriptions: tuple[str, ...] = topics.SUBSCRIPTIONS,
        tls_context: ssl.SSLContext | None = None,
        enabled: bool = True,
    ) -> None:
        """
        Args:
            bus: the process's bus; the app registers this module on it.
            settings: ``internal`` (start mosquitto on ``127.0.0.1:port``) or ``external``
                (connect to ``url``).
            node_name: this node; the MQTT client id is ``edgecore-{node_name}``.
            data_dir: edgecore's data directory (the internal broker's files go under it).
            reconnect_initial: first reconnect delay upper bound, seconds (jittered, doubling).
            reconnect_cap: longest reconnect delay, seconds.
            keepalive: MQTT keepalive, seconds: paho pings after this long without traffic and
                drops a broker that does not answer within another keepalive.
            window: publishes awaiting their PUBACK at once (throughput vs. resends on loss).
            max_pending: publishes kept while the broker is away; beyond it the oldest go.
            max_backlog: received messages kept while the twin's inbox is full; beyond it,
                QoS 0 messages are dropped (QoS 1 ones are bounded by the broker's in-flight
                limit instead).
            subscriptions: topic filters (QoS 1); default KubeEdge's twin, state and
                membership topics. Wider filters are fine: the edge's own outputs received
                back are dropped, the rest goes to the twin.
            tls_context: for ``mqtts://``; default: the system's trusted CAs.
            enabled: the runner skips a disabled module.

        Raises:
            ConfigError: bad mode or URL, or internal mode without mosquitto installed.
        """
        self.enabled = enabled
        self._bus = bus
        self._reconnect_initial = reconnect_initial
        self._reconnect_cap = reconnect_cap
        self._keepalive = keepalive
        self._window = max(1, window)
        self._tls_context = tls_context
        self._subscriptions = [(t, topics.QOS) for t in subscriptions]
        self._max_backlog = max(1, max_backlog)
        self.broker: Mosquitto | None = None
        if settings.mode == "internal":
            self.broker = Mosquitto(data_dir=data_dir, port=settings.port)
            self.address = BrokerAddress(host="127.0.0.1", port=settings.port)
        elif settings.url:
            self.address = parse_url(settings.url)
        else:
            raise ConfigError("external MQTT mode needs a broker URL (--mqtt-url mqtt://HOST:PORT)")
        self.client_id = f"edgecore-{node_name}"
        self._outbox = _Outbox(max_pending)
        #: received messages the twin's inbox had no room for yet, oldest first, with the
        #: connection (generation) they came on
        self._backlog: deque[tuple[int, mqtt.Message, Message]] = deque()
        self._backlog_ready = asyncio.Event()
        #: created on the first connect, then kept: it holds the unacknowledged publishes
        self._client: mqtt.Client | None = None
        #: message id -> publish handed to paho and not yet acknowledged by the broker
        self._inflight: dict[int, _Publish] = {}
        self._window_open = asyncio.Event()
        #: set while connected and subscribed
        self.connected = asyncio.Event()
        #: the opposite of ``connected`` (asyncio has no wait-until-clear)
        self._down = asyncio.Event()
        self._down.set()
        #: messages handed to the twin / publishes acknowledged by the broker
        self.received = 0
        self.published = 0
        #: received messages that had to wait for room in the twin's inbox
        self.deferred = 0
        #: QoS 0 messages dropped because the twin was too far behind
        self.dropped_qos0 = 0
        #: own output topics received back and dropped
        self.ignored = 0
        #: publishes dropped from a full outbox while the broker was away
        self.dropped = 0
        #: successful connections (1 + reconnects)
        self.connections = 0
        self.last_error = ""
        self._debug = log.isEnabledFor(logging.DEBUG)
        self._warned_no_twin = False
        self._ids = MessageIds()

    def stats(self) -> dict[str, int]:
        """Counters for metrics and benchmarks."""
        return {
            "received": self.received,
            "published": self.published,
            "ignored": self.ignored,
            "dropped": self.dropped,
            "dropped_qos0": self.dropped_qos0,
            "deferred": self.deferred,
            "pending": len(self._outbox),
            "inflight": len(self._inflight),
            "connections": self.connections,
        }

    async def run(self) -> None:
        """Start the broker (internal mode), then connect, receive and publish until cancelled."""
        self._debug = log.isEnabledFor(logging.DEBUG)
        tasks: list[asyncio.Task[None]] = []
        try:
            if self.broker is not None:
                await self.broker.start()
                tasks.append(asyncio.create_task(self.broker.supervise(), name="eventbus:broker"))
            tasks.append(asyncio.create_task(self._pump(), name="eventbus:pump"))
            tasks.append(asyncio.create_task(self._drain(), name="eventbus:drain"))
            tasks.append(asyncio.create_task(self._connect_forever(), name="eventbus:mqtt"))
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                if not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        finally:
            # the client first (a clean DISCONNECT), then the broker, which saves our session
            for t in reversed(tasks):
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            if self.broker is not None:
                await self.broker.stop()

    # -- twin -> MQTT -------------------------------------------------------------------------

    async def _pump(self) -> None:
        """The only reader of our inbox: validate and encode publishes into the outbox."""
        while True:
            msg = await self._bus.receive(self.name)
            op = msg.operation
            if op == PUBLISH:
                await self._enqueue(msg.resource, msg.content, msg.route.source)
            elif op == PUBLISH_BATCH and isinstance(msg.content, list):
                for topic, content in msg.content:
                    await self._enqueue(topic, content, msg.route.source)
            else:
                log.warning(
                    "ignoring %r for %s from %s: eventbus only publishes",
                    op,
                    msg.resource,
                    msg.route.source,
                )

    async def _enqueue(self, topic: str, content: Any, source: str) -> None:
        if not _valid_publish_topic(topic):
            log.warning("not publishing to invalid topic %r from %s", topic, source)
            return
        try:
            payload = encode_payload(content)
        except (TypeError, ValueError) as exc:
            log.warning("not publishing to %s: content is not JSON: %s", topic, exc)
            return
        if self._outbox.full:
            await self._make_room()
        self._outbox.append(_Publish(topic, payload, topics.publish_qos(topic)))

    async def _make_room(self) -> None:
        """Wait for room while connected; drop the oldest publish while the broker is away."""
        while self._outbox.full:
            if not self.connected.is_set():
                lost = self._outbox.drop_oldest()
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warning(
                        "MQTT broker away and %d publishes pending: dropped the oldest "
                        "(to %s; %d dropped so far)",
                        self._outbox.limit,
                        lost.topic,
                        self.dropped,
                    )
                return
            space = asyncio.ensure_future(self._outbox.wait_space())
            down = asyncio.ensure_future(self._down.wait())
            try:
                await asyncio.wait((space, down), return_when=asyncio.FIRST_COMPLETED)
            finally:
                space.cancel()
                down.cancel()

    async def _publish_loop(self, client: mqtt.Client) -> None:
        """Hand outbox entries to paho in order, up to ``window`` unacknowledged, until closed."""
        outbox = self._outbox
        window = self._window
        inflight = self._inflight
        closed = client.closed
        while True:
            if len(inflight) >= window:
                await self._wait_window(closed)
            if closed.done():
                return
            item = await outbox.pop()
            if closed.done():
                outbox.requeue([item])
                return
            while True:
                if self._debug:
                    log.debug("> %s %d bytes", item.topic, len(item.payload))
                try:
                    if item.qos:
                        inflight[client.publish(item.topic, item.payload)] = item
                    else:  # nothing to wait for: paho writes it with the next flush
                        client.publish(item.topic, item.payload, 0)
                        self.published += 1
                except ValueError as exc:  # over MQTT's size limit: it can never be sent
                    log.warning("not publishing to %s: %s", item.topic, exc)
                if len(inflight) >= window:
                    break
                next_item = outbox.pop_nowait()
                if next_item is None:
                    break
                item = next_item

    async def _wait_window(self, closed: asyncio.Future[BaseException | None]) -> None:
        self._window_open.clear()
        space = asyncio.ensure_future(self._window_open.wait())
        try:
            await asyncio.wait((space, closed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            space.cancel()

    def _published(self, mid: int) -> None:
        """paho: the broker acknowledged publish ``mid``."""
        if self._inflight.pop(mid, None) is not None:
            self.published += 1
            if len(self._inflight) < self._window:
                self._window_open.set()

    # -- connection ---------------------------------------------------------------------------

    def _delays(self) -> Iterator[float]:
        return backoff(initial=self._reconnect_initial, cap=self._reconnect_cap)

    def _mqtt_client(self) -> mqtt.Client:
        """The one paho client, kept across reconnects (and restarts of :meth:`run`)."""
        if self._client is None:
            a = self.address
            tls = (self._tls_context or ssl.create_default_context()) if a.tls else None
            self._client = mqtt.Client(
                a.host,
                a.port,
                client_id=self.client_id,
                on_message=self._on_message,
                on_published=self._published,
                clean_session=False,
                keepalive=self._keepalive,
                username=a.username,
                password=a.password,
                ssl_context=tls,
            )
        return self._client

    async def _connect_forever(self) -> None:
        delays = self._delays()
        a = self.address
        client = self._mqtt_client()
        was_up = False
        while True:
            delay: float | None = None
            try:
                present = await client.connect()
                # every time: a broker that lost its database has no session to resume
                await client.subscribe(self._subscriptions, timeout=10.0)
                self.connections += 1
                delays = self._delays()
                log.info(
                    "%s MQTT broker %s as %s (%s session)",
                    "reconnected to" if was_up else "connected to",
                    a.display,
                    self.client_id,
                    "resumed" if present else "new",
                )
                was_up = True
                self._down.clear()
                self.connected.set()
                await self._serve(client)
            except AuthError as exc:
                # only an operator can fix credentials or ACLs: retry, but slowly
                self.last_error = str(exc)
                log.error("%s (%s)", exc, a.display)
                delay = self._reconnect_cap
            except (OSError, TimeoutError, WireError) as exc:
                self.last_error = str(exc) or type(exc).__name__
                if self.connected.is_set():
                    log.warning("MQTT broker %s lost: %s", a.display, self.last_error)
                else:
                    log.info("MQTT broker %s unreachable: %s", a.display, self.last_error)
            finally:
                self.connected.clear()
                self._down.set()
                if not client.closed.done():
                    # stopping (or a refused SUBSCRIBE): say goodbye, the session stays; paho
                    # keeps the unacknowledged publishes for the next connection
                    await client.disconnect()
            await asyncio.sleep(next(delays) if delay is None else delay)

    async def _serve(self, client: mqtt.Client) -> None:
        """Publish through ``client`` until its connection closes; raise why it closed."""
        publisher = asyncio.create_task(self._publish_loop(client), name="eventbus:publish")
        try:
            await asyncio.wait((publisher, client.closed), return_when=asyncio.FIRST_COMPLETED)
            if publisher.done() and not publisher.cancelled():
                publisher.result()  # re-raise a bug in the loop
        finally:
            publisher.cancel()
            await asyncio.gather(publisher, return_exceptions=True)
        raise client.closed.result() or ConnectionResetError("MQTT connection closed")

    # -- MQTT -> twin -------------------------------------------------------------------------

    def _on_message(self, p: mqtt.Message) -> bool:
        """Called by the client for every PUBLISH: to the twin now, or to the backlog."""
        try:
            topic = p.topic
        except UnicodeDecodeError:
            self.ignored += 1
            log.warning("dropping an MQTT message whose topic is not UTF-8")
            return True
        if topics.parse(topic).is_output:
            self.ignored += 1
            return True
        if self._debug:
            log.debug("< %s %d bytes", topic, len(p.payload))
        try:
            content: str | None = p.payload.decode()
        except UnicodeDecodeError:
            content = None  # the twin answers 400
        msg = bus_message(
            source=EVENTBUS,
            group=TWIN_GROUP,
            operation=MESSAGE,
            resource=topic,
            content=content,
            msg_id=self._ids(),
        )
        if not self._backlog:
            try:
                if self._bus.send_nowait(TWIN, msg):
                    self.received += 1
                    return True
            except UnknownModule:
                self._no_twin(topic)
                return True
        # the twin's inbox is full: keep order; acknowledge once it took it, so the broker's
        # in-flight limit stops the flow of QoS 1 messages until the twin catches up
        if p.qos == 0 and len(self._backlog) >= self._max_backlog:
            self.dropped_qos0 += 1
            if self.dropped_qos0 == 1 or self.dropped_qos0 % 1000 == 0:
                log.warning(
                    "twin is %d messages behind: dropped a QoS 0 message on %s (%d so far)",
                    len(self._backlog),
                    topic,
                    self.dropped_qos0,
                )
            return True
        assert self._client is not None  # it is calling us
        self._backlog.append((self._client.generation, p, msg))
        self.deferred += 1
        self._backlog_ready.set()
        return False

    async def _drain(self) -> None:
        """Hand the backlog to the twin as its inbox frees up, acknowledging each."""
        while True:
            await self._backlog_ready.wait()
            while self._backlog:
                generation, p, msg = self._backlog[0]
                try:
                    await self._bus.send(TWIN, msg)
                    self.received += 1
                except UnknownModule:
                    self._no_twin(msg.resource)
                self._backlog.popleft()
                if self._client is not None:
                    # a no-op if that connection is gone: the broker resends
                    self._client.ack(p.mid, p.qos, generation)
            self._backlog_ready.clear()

    def _no_twin(self, topic: str) -> None:
        if not self._warned_no_twin:
            self._warned_no_twin = True
            log.error("no %r module registered: dropping device messages (first: %s)", TWIN, topic)
