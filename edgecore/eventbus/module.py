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

Why an outbox in front of the connection: the twin publishes answers whether or not the
broker is up. Publishes wait in a bounded outbox across reconnects and are sent in order once
connected; a publish that was in flight when the link dropped is sent again (QoS 1 is
at-least-once, so a duplicate is allowed, a loss is not). While connected, a full outbox
pushes back on the twin; while disconnected it drops its oldest entry instead, with a warning,
so the twin never stalls on a broker that is away (its state is in SQLite; a mapper gets the
current twin with ``twin/get``).

Throughput: every message costs one bus message and one MQTT packet, nothing more: no
per-message INFO logging, debug lines behind ``isEnabledFor``, up to ``window`` publishes in
flight at once instead of one round trip each.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import ssl
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt

from edgecore.config import MqttSettings
from edgecore.eventbus import topics
from edgecore.eventbus.broker import Mosquitto
from hive.backoff import backoff
from hive.bus import Bus, UnknownModule
from wire.errors import ConfigError
from wire.messages import Message

log = logging.getLogger(__name__)

NAME = "eventbus"
GROUP = "bus"
PUBLISH = "publish"
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
    # paho raises on these; refusing them here keeps one bad message from blocking the outbox
    return bool(topic) and "+" not in topic and "#" not in topic and len(topic.encode()) < 65536


@dataclass(slots=True)
class _Publish:
    topic: str
    payload: bytes


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

    name = NAME
    group = GROUP

    def __init__(
        self,
        *,
        bus: Bus,
        settings: MqttSettings,
        node_name: str,
        data_dir: Path,
        twin_module: str = "twin",
        reconnect_initial: float = 0.2,
        reconnect_cap: float = 10.0,
        keepalive: int = 15,
        window: int = 256,
        max_pending: int = 10_000,
        tls_context: ssl.SSLContext | None = None,
        enabled: bool = True,
    ) -> None:
        """
        Args:
            bus: the process's bus; the app registers ``eventbus`` (group ``bus``) on it.
            settings: ``internal`` (start mosquitto on ``127.0.0.1:port``) or ``external``
                (connect to ``url``).
            node_name: this node; the MQTT client id is ``edgecore-{node_name}``.
            data_dir: edgecore's data directory (the internal broker's files go under it).
            twin_module: where incoming device messages go.
            reconnect_initial: first reconnect delay upper bound, seconds (jittered, doubling).
            reconnect_cap: longest reconnect delay, seconds.
            keepalive: MQTT keepalive, seconds: a silent broker is dropped after 1.5x this.
            window: publishes awaiting their PUBACK at once (throughput vs. resend on loss).
            max_pending: publishes kept while the broker is away; beyond it the oldest go.
            tls_context: for ``mqtts://``; default: the system's trusted CAs.
            enabled: the runner skips a disabled module.

        Raises:
            ConfigError: bad mode/URL, or internal mode without mosquitto installed.
        """
        self.enabled = enabled
        self._bus = bus
        self._node = node_name
        self._twin = twin_module
        self._reconnect_initial = reconnect_initial
        self._reconnect_cap = reconnect_cap
        self._keepalive = keepalive
        self._window = max(1, window)
        self._tls_context = tls_context
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
        #: set while connected and subscribed
        self.connected = asyncio.Event()
        #: the opposite of ``connected`` (asyncio has no wait-for-clear)
        self._down = asyncio.Event()
        self._down.set()
        #: messages handed to the twin / publishes acknowledged by the broker
        self.received = 0
        self.published = 0
        #: own output topics received back and dropped
        self.ignored = 0
        #: publishes dropped from a full outbox while the broker was away
        self.dropped = 0
        #: successful connections (1 + reconnects)
        self.connections = 0
        self.last_error = ""
        self._debug = log.isEnabledFor(logging.DEBUG)

    def stats(self) -> dict[str, int]:
        """Counters for metrics and benchmarks."""
        return {
            "received": self.received,
            "published": self.published,
            "ignored": self.ignored,
            "dropped": self.dropped,
            "pending": len(self._outbox),
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
            tasks.append(asyncio.create_task(self._connect_forever(), name="eventbus:mqtt"))
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                if not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        finally:
            # the MQTT client first: a clean DISCONNECT, then the broker saves our session
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
            if msg.operation != PUBLISH:
                log.warning(
                    "ignoring %r for %s from %s: eventbus only publishes",
                    msg.operation,
                    msg.resource,
                    msg.route.source,
                )
                continue
            topic = msg.resource
            if not _valid_publish_topic(topic):
                log.warning("not publishing to invalid topic %r from %s", topic, msg.route.source)
                continue
            try:
                payload = encode_payload(msg.content)
            except (TypeError, ValueError) as exc:
                log.warning("not publishing to %s: content is not JSON: %s", topic, exc)
                continue
            await self._make_room()
            self._outbox.append(_Publish(topic, payload))

    async def _make_room(self) -> None:
        """Wait for room while connected; drop the oldest publish while the broker is away."""
        while self._outbox.full:
            if not self.connected.is_set():
                lost = self._outbox.drop_oldest()
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warning(
                        "MQTT broker unreachable and %d publishes pending: dropped the oldest "
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

    # -- connection ---------------------------------------------------------------------------

    def _delays(self) -> Iterator[float]:
        return backoff(initial=self._reconnect_initial, cap=self._reconnect_cap)

    def _client(self) -> aiomqtt.Client:
        a = self.address
        tls = None
        if a.tls:
            tls = self._tls_context or ssl.create_default_context()
        client = aiomqtt.Client(
            a.host,
            a.port,
            identifier=self.client_id,
            clean_session=False,
            username=a.username,
            password=a.password,
            keepalive=self._keepalive,
            tls_context=tls,
            max_inflight_messages=self._window,
            timeout=10,
        )
        # aiomqtt warns past 10 outstanding calls; a full window is our normal state
        client.pending_calls_threshold = self._window + 16
        return client

    async def _connect_forever(self) -> None:
        delays = self._delays()
        was_up = False
        while True:
            # a fresh client per connection: paho's own resend state starts empty, ours rules
            client = self._client()
            try:
                async with client:
                    await client.subscribe([(t, topics.QOS) for t in topics.SUBSCRIPTIONS])
                    self.connections += 1
                    delays = self._delays()
                    if was_up:
                        log.info("reconnected to MQTT broker %s", self.address.display)
                    else:
                        log.info(
                            "connected to MQTT broker %s as %s", self.address.display, self.client_id
                        )
                    was_up = True
                    self._down.clear()
                    self.connected.set()
                    await self._serve(client)
            except aiomqtt.MqttError as exc:
                self.last_error = str(exc) or type(exc).__name__
                if self.connected.is_set():
                    log.warning("MQTT broker %s lost: %s", self.address.display, self.last_error)
                else:
                    log.info(
                        "MQTT broker %s unreachable: %s", self.address.display, self.last_error
                    )
            finally:
                self.connected.clear()
                self._down.set()
            await asyncio.sleep(next(delays))

    async def _serve(self, client: aiomqtt.Client) -> None:
        """Receive and publish on one connection until it drops (raises ``MqttError``)."""
        inflight: dict[int, _Publish] = {}
        tasks = [
            asyncio.create_task(self._receive(client), name="eventbus:receive"),
            asyncio.create_task(self._publish(client, inflight), name="eventbus:publish"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if inflight:
                # not acknowledged: send again, first, on the next connection
                self._outbox.requeue([inflight[k] for k in sorted(inflight)])
                if self._debug:
                    log.debug("requeued %d unacknowledged publishes", len(inflight))

    # -- MQTT -> twin -------------------------------------------------------------------------

    async def _receive(self, client: aiomqtt.Client) -> None:
        bus = self._bus
        twin = self._twin
        async for m in client.messages:
            topic = m.topic.value
            match = topics.parse(topic)
            if match.is_output:
                self.ignored += 1
                continue
            raw = m.payload
            content: str | None
            if isinstance(raw, bytes | bytearray):
                try:
                    content = raw.decode()
                except UnicodeDecodeError:
                    content = None  # the twin answers 400
            else:
                content = None if raw is None else str(raw)
            if self._debug:
                log.debug("< %s %d bytes", topic, len(raw) if isinstance(raw, bytes) else 0)
            msg = Message.new(
                source=NAME, group="twin", operation=MESSAGE, resource=topic, content=content
            )
            try:
                await bus.send(twin, msg)
            except UnknownModule:
                log.error("no %r module to hand %s to; message dropped", twin, topic)
                continue
            self.received += 1

    async def _publish(self, client: aiomqtt.Client, inflight: dict[int, _Publish]) -> None:
        """Send outbox entries with up to ``window`` unacknowledged at once, in order."""
        slots = asyncio.Semaphore(self._window)
        pending: set[asyncio.Task[None]] = set()
        seq = 0

        def done(n: int, task: asyncio.Task[None]) -> None:
            pending.discard(task)
            slots.release()
            if task.cancelled():
                return  # the connection is going away; teardown requeues it
            exc = task.exception()
            if exc is None:
                inflight.pop(n, None)
                self.published += 1
            elif not isinstance(exc, aiomqtt.MqttError):
                # the broker can never take this one (paho refused it): do not retry forever
                lost = inflight.pop(n, None)
                log.error("cannot publish to %s: %s", lost.topic if lost else "?", exc)
            # an MqttError means the link failed: it stays in flight and is requeued

        try:
            while True:
                await slots.acquire()
                item = self._outbox.pop_nowait() or await self._outbox.pop()
                seq += 1
                inflight[seq] = item
                if self._debug:
                    log.debug("> %s %d bytes", item.topic, len(item.payload))
                task = asyncio.create_task(
                    client.publish(item.topic, item.payload, qos=topics.QOS, timeout=math.inf)
                )
                pending.add(task)
                task.add_done_callback(functools.partial(done, seq))
        finally:
            for t in list(pending):
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
