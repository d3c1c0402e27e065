"""The mapper's one connection to the edge broker: KubeEdge's twin topics over aiomqtt.

One MQTT connection serves every device of the mapper (a hundred devices are a hundred topic
ids, not a hundred connections). It subscribes to the edge's answers for every device id with
wildcards (``.../twin/update/delta``, ``.../twin/get/result``, ``.../twin/update/result``, for
both id forms) and hands each message, parsed by :mod:`wire.topics`, to the handler of the
device id it names; ids the mapper does not serve are ignored.

It never gives up on the broker: a refused connection or a broker restart is retried forever
with :func:`hive.backoff.backoff` (jittered, capped), because a mapper runs unattended next to
its devices and must come back by itself, and may start before edgecore. Each new connection
calls ``on_connect`` so the devices announce their state and ask for their twins again: the edge
keeps no session for us (clean session), so nothing said while the broker was away is queued.

Publishing while disconnected drops the message and returns: reports are periodic and states
and twin requests are repeated on every connect, so nothing is lost that matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt
from pydantic import ValidationError

from hive.backoff import backoff
from wire import topics
from wire.errors import ConfigError
from wire.twin import ResultIn

log = logging.getLogger(__name__)

DEFAULT_PORT = 1883
#: what the mapper subscribes to: the edge's answers and deltas for either id form
SUBSCRIPTIONS = (
    "$hw/events/device/+/twin/update/delta",
    "$hw/events/device/+/+/twin/update/delta",
    "$hw/events/device/+/twin/get/result",
    "$hw/events/device/+/+/twin/get/result",
    "$hw/events/device/+/twin/update/result",
    "$hw/events/device/+/+/twin/update/result",
)

#: publishes awaiting their PUBACK before aiomqtt warns (see Link._connect)
PENDING_PUBLISHES_WARNING = 100_000

#: (device id, kind of topic, parsed payload)
Handler = Callable[[str, topics.Kind, ResultIn], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the edge broker listens. ``repr`` hides the password."""

    host: str
    port: int = DEFAULT_PORT
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        return f"BrokerAddress({self})"

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_broker(url: str) -> BrokerAddress:
    """``mqtt://[user[:password]@]host[:port]`` (``tcp://`` too, as KubeEdge's configs write it).

    Raises:
        ConfigError: another scheme, no host, or a bad port.
    """
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "tcp"):
        raise ConfigError(f"broker {url!r}: scheme must be mqtt:// or tcp://")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise ConfigError(f"broker {url!r}: bad port") from exc
    if not parts.hostname:
        raise ConfigError(f"broker {url!r}: no host")
    return BrokerAddress(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def encode(payload: dict[str, Any]) -> str:
    """Compact JSON, as edgecore's eventbus writes it."""
    return json.dumps(payload, separators=(",", ":"))


class Link:
    """The shared broker connection.

    Args:
        broker: where the edge broker is.
        handler: called for every message on a subscribed topic, in arrival order.
        on_connect: called after each (re)connect, once subscribed.
        keepalive: MQTT keepalive in seconds.
        will: a Last Will (topic, payload) the broker publishes if the mapper dies silently.
        reconnect_initial, reconnect_cap: back-off bounds in seconds.
        rng: randomness for the jitter.
    """

    def __init__(
        self,
        broker: BrokerAddress,
        *,
        handler: Handler,
        on_connect: Callable[[], Awaitable[None]],
        keepalive: int = 30,
        will: tuple[str, dict[str, Any]] | None = None,
        reconnect_initial: float = 0.5,
        reconnect_cap: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self._broker = broker
        self._handler = handler
        self._on_connect = on_connect
        self._keepalive = keepalive
        self._will = will
        self._initial = reconnect_initial
        self._cap = reconnect_cap
        self._rng = rng or random.Random()
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()

    async def publish(self, topic: str, payload: dict[str, Any], *, qos: int = 1) -> bool:
        """Publish without retain; ``False`` when there is no connection now."""
        client = self._client
        if client is None:
            return False
        try:
            # no retain, as KubeEdge's mappers: a retained report would replay stale values
            await client.publish(topic, encode(payload), qos=qos)
        except aiomqtt.MqttError as exc:
            log.debug("publish to %s failed: %s", topic, exc)
            return False
        return True

    async def run(self) -> None:
        """Connect, serve, reconnect; forever (until cancelled)."""
        delays = self._backoff()
        while True:
            up = False
            try:
                async with self._connect() as client:
                    up = True
                    await self._serve(client)
            except aiomqtt.MqttError as exc:
                if up:
                    delays = self._backoff()  # a session that worked starts the back-off over
                delay = next(delays)
                log.warning(
                    "broker %s %s (%s); retrying in %.1fs",
                    self._broker,
                    "connection lost" if up else "unavailable",
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)

    def _backoff(self) -> Iterator[float]:
        return backoff(initial=self._initial, cap=self._cap, rng=self._rng)

    def _connect(self) -> aiomqtt.Client:
        will = None
        if self._will is not None:
            will = aiomqtt.Will(self._will[0], encode(self._will[1]), qos=topics.QOS)
        client = aiomqtt.Client(
            self._broker.host,
            self._broker.port,
            username=self._broker.username,
            password=self._broker.password,
            # unique per connection: a lingering older connection is not taken over
            identifier=f"mapper-{uuid.uuid4().hex[:12]}",
            keepalive=self._keepalive,
            will=will,
            clean_session=True,
        )
        # every device reports at its cycle, so a hundred publishes awaiting their PUBACK at
        # once is normal here, not the leak aiomqtt's default warning (over 10) suspects
        client.pending_calls_threshold = PENDING_PUBLISHES_WARNING
        return client

    async def _serve(self, client: aiomqtt.Client) -> None:
        await client.subscribe([(t, topics.QOS) for t in SUBSCRIPTIONS])
        self._client = client
        self.connected.set()
        log.info("connected to broker %s", self._broker)
        try:
            await self._on_connect()
            async for message in client.messages:
                await self._dispatch(message.topic.value, message.payload)
        finally:
            self._client = None
            self.connected.clear()

    async def _dispatch(self, topic: str, raw: Any) -> None:
        match = topics.parse(topic)
        ident = match.device_id
        if ident is None:
            return
        try:
            data = json.loads(raw if isinstance(raw, str | bytes | bytearray) else "")
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            payload = ResultIn.model_validate(data)
        except (ValueError, ValidationError) as exc:
            log.warning("ignoring malformed message on %s: %s", topic, str(exc).splitlines()[0])
            return
        await self._handler(ident, match.kind, payload)

    async def goodbye(self, messages: list[tuple[str, dict[str, Any]]], timeout: float) -> None:
        """Publish ``messages`` (the devices' ``offline``) if connected, within ``timeout``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                for topic, payload in messages:
                    await self.publish(topic, payload)
