"""The generic half of a mapper: KubeEdge's MQTT twin protocol on the edge broker.

This is KubeEdge's "old" MQTT mapper protocol (before DMI, still what any MQTT client can
speak to edgecore): the mapper owns the device's *actual* values and follows the twin's
*expected* (desired) ones. Per device id (``{name}``, or ``{ns}/{name}`` outside the default
namespace) it

- subscribes to ``$hw/events/device/{id}/twin/update/delta``, ``.../twin/update/result`` and
  ``.../twin/get/result`` at QoS 1;
- on every connect publishes ``.../state/update`` ``online`` and ``.../twin/get``, so desired
  values set while it was away (or before it ever ran) are applied without waiting for a delta
  the edge will not resend;
- every report interval reads each property from the :class:`~devices.driver.Driver` and
  publishes them to ``.../twin/update`` as ``actual`` values (QoS 1, so the broker has it
  before the next cycle);
- on a delta, writes the writable properties to the driver and reports their new actual value
  at once, which is what makes the edge stop sending the delta.

It never gives up on the broker: a refused connection or a broker restart is retried forever
with :func:`hive.backoff.backoff` (jittered, capped), because a mapper usually runs unattended
next to its device and must come back by itself. A Last Will of ``offline`` on
``.../state/update`` tells the edge when the mapper dies without saying goodbye; its timestamp is
the connect time, so a consumer ordering states by timestamp is not fooled by a late will.

Nothing here knows what a thermostat is; see :mod:`devices.drivers` for that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from devices.driver import Driver, PropertySpec
from hive.backoff import backoff
from wire.errors import ConfigError

log = logging.getLogger(__name__)

#: Re-ask for the twin every this many report cycles while the edge has not answered ``twin/get``
#: (edgecore may start after the mapper; the broker would otherwise drop the only request).
GET_RETRY_CYCLES = 5
#: How long a clean stop waits to tell the edge ``offline`` before disconnecting anyway.
GOODBYE_TIMEOUT = 2.0
_DEFAULT_PORT = 1883


def device_id(name: str, namespace: str = "default") -> str:
    """The id in the MQTT topics: ``name`` in the default namespace, else ``namespace/name``.

    This is what KubeEdge's edge uses since v1.16, and stays compatible with mappers written
    for older releases in the common single-namespace case.
    """
    return name if namespace in ("", "default") else f"{namespace}/{name}"


@dataclass(frozen=True, slots=True)
class DeviceTopics:
    """The twin topics of one device (KubeEdge's ``dtcommon`` names)."""

    update: str
    update_result: str
    update_delta: str
    get: str
    get_result: str
    state_update: str

    @classmethod
    def for_device(cls, ident: str) -> DeviceTopics:
        """Topics for the device id ``ident`` (see :func:`device_id`)."""
        base = f"$hw/events/device/{ident}"
        return cls(
            update=f"{base}/twin/update",
            update_result=f"{base}/twin/update/result",
            update_delta=f"{base}/twin/update/delta",
            get=f"{base}/twin/get",
            get_result=f"{base}/twin/get/result",
            state_update=f"{base}/state/update",
        )


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the edge broker listens. ``repr`` hides the password."""

    host: str
    port: int = _DEFAULT_PORT
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
        port = parts.port or _DEFAULT_PORT
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


class MapperSettings(BaseModel):
    """How one mapper runs. Every field has a default except the device name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str = Field(min_length=1, description="the Device's metadata.name")
    namespace: str = Field(default="default", description="the Device's metadata.namespace")
    broker: str = Field(
        default=f"mqtt://127.0.0.1:{_DEFAULT_PORT}",
        description="edge broker URL; edgecore's default external mosquitto",
    )
    report_interval: float = Field(
        default=1.0, gt=0, description="seconds between reports of every property"
    )
    keepalive: int = Field(
        default=30, ge=5, description="MQTT keepalive in seconds; how fast the will fires"
    )
    reconnect_initial: float = Field(
        default=0.5, gt=0, description="first reconnect delay ceiling in seconds (jittered)"
    )
    reconnect_cap: float = Field(
        default=30.0, gt=0, description="longest reconnect delay in seconds"
    )


# --------------------------------------------------------------------------- payloads


def now_ms() -> int:
    """Wall-clock milliseconds, the unit of every KubeEdge ``timestamp``."""
    return time.time_ns() // 1_000_000


def base_payload(*, timestamp: int | None = None) -> dict[str, Any]:
    """``{"event_id", "timestamp"}``, the envelope of every twin message."""
    return {
        "event_id": str(uuid.uuid4()),
        "timestamp": now_ms() if timestamp is None else timestamp,
    }


def state_payload(state: str, *, timestamp: int | None = None) -> dict[str, Any]:
    """``.../state/update``: ``{"event_id", "timestamp", "state"}``."""
    return {**base_payload(timestamp=timestamp), "state": state}


def report_payload(
    values: Mapping[str, str], specs: Mapping[str, PropertySpec], *, timestamp: int | None = None
) -> dict[str, Any]:
    """``.../twin/update`` carrying ``actual`` values only; desired stays the cloud's."""
    payload = base_payload(timestamp=timestamp)
    ts = payload["timestamp"]
    payload["twin"] = {
        name: {
            "actual": {"value": value, "metadata": {"timestamp": ts}},
            "metadata": {"type": specs[name].type},
        }
        for name, value in values.items()
    }
    return payload


def _encode(payload: dict[str, Any]) -> str:
    """Compact JSON, as edgecore's eventbus writes it."""
    return json.dumps(payload, separators=(",", ":"))


def _stringify(value: Any) -> Any:
    """KubeEdge sends values as strings; accept a bare JSON scalar from a sloppier edge."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


class _Incoming(BaseModel):
    # Unknown fields are ignored: newer edges may add some, and we only need a few.
    model_config = ConfigDict(extra="ignore")

    event_id: str | None = None
    timestamp: int | None = None
    code: int | None = None
    reason: str | None = None

    @property
    def failed(self) -> bool:
        """Error results carry ``code`` and ``reason``; successful ones no code (or 2xx)."""
        return self.code is not None and not 200 <= self.code < 300


class DeltaMessage(_Incoming):
    """``.../twin/update/delta``: ``{"delta": {prop: expected}}`` (plus the twin, unused)."""

    delta: dict[str, str] = Field(default_factory=dict)

    @field_validator("delta", mode="before")
    @classmethod
    def _values(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: _stringify(v) for k, v in value.items()}
        return value


class TwinValue(BaseModel):
    model_config = ConfigDict(extra="ignore")

    value: str | None = None

    @field_validator("value", mode="before")
    @classmethod
    def _value(cls, value: Any) -> Any:
        return _stringify(value)


class TwinProperty(BaseModel):
    model_config = ConfigDict(extra="ignore")

    expected: TwinValue | None = None
    actual: TwinValue | None = None


class TwinResult(_Incoming):
    """``.../twin/get/result`` and ``.../twin/update/result``."""

    twin: dict[str, TwinProperty | None] = Field(default_factory=dict)

    def expected(self) -> dict[str, str]:
        """Each property's desired value, where one is set."""
        out: dict[str, str] = {}
        for name, prop in self.twin.items():
            if prop is not None and prop.expected is not None and prop.expected.value is not None:
                out[name] = prop.expected.value
        return out


# --------------------------------------------------------------------------- the mapper


class Mapper:
    """Keeps one device's twin in step with its driver over MQTT.

    Args:
        driver: the device.
        settings: see :class:`MapperSettings`.
        rng: randomness for reconnect jitter (default: seeded from the OS).

    Raises:
        ConfigError: the broker URL does not parse.
    """

    def __init__(
        self, driver: Driver, settings: MapperSettings, *, rng: random.Random | None = None
    ) -> None:
        self._driver = driver
        self._settings = settings
        self._broker = parse_broker(settings.broker)
        self._rng = rng or random.Random()
        self._id = device_id(settings.device, settings.namespace)
        self._topics = DeviceTopics.for_device(self._id)
        self._specs: dict[str, PropertySpec] = {p.name: p for p in driver.properties()}
        self._desired: dict[str, str] = {}
        self._stop = asyncio.Event()
        # One driver call at a time: the report loop and the delta handler share the device.
        self._device_lock = asyncio.Lock()
        self._got_twin = asyncio.Event()
        # Whether the current connection got as far as CONNACK; decides backoff reset and wording.
        self._session_up = False

    @property
    def device_id(self) -> str:
        """The id used in topics."""
        return self._id

    @property
    def topics(self) -> DeviceTopics:
        """This device's topics."""
        return self._topics

    @property
    def desired(self) -> Mapping[str, str]:
        """The last desired values learnt from ``get/result`` or a delta."""
        return dict(self._desired)

    def stop(self) -> None:
        """Ask :meth:`run` to say ``offline``, disconnect and return."""
        self._stop.set()

    async def run(self) -> None:
        """Serve until :meth:`stop` (or cancellation), reconnecting to the broker forever."""
        delays = self._backoff()
        while not self._stop.is_set():
            try:
                await self._session()
                return
            except (aiomqtt.MqttError, OSError) as exc:
                lost = self._session_up
                if lost:
                    delays = self._backoff()  # a session that worked resets the backoff
                    self._session_up = False
                delay = next(delays)
                log.warning(
                    "%s: broker %s %s (%s); retrying in %.1fs",
                    self._id,
                    self._broker,
                    "connection lost" if lost else "unavailable",
                    exc,
                    delay,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    def _backoff(self) -> Iterator[float]:
        return backoff(
            initial=self._settings.reconnect_initial,
            cap=self._settings.reconnect_cap,
            rng=self._rng,
        )

    # ----------------------------------------------------------------------- one connection

    async def _session(self) -> None:
        """One broker connection, until stop (returns) or an MQTT error (raises)."""
        will = aiomqtt.Will(self._topics.state_update, _encode(state_payload("offline")), qos=1)
        client = aiomqtt.Client(
            self._broker.host,
            self._broker.port,
            username=self._broker.username,
            password=self._broker.password,
            # Unique per connection: with a reused id the broker would close a lingering older
            # connection on takeover and publish its "offline" will after our "online".
            identifier=f"mapper-{self._settings.device}-{uuid.uuid4().hex[:8]}",
            will=will,
            keepalive=self._settings.keepalive,
            # We resubscribe and re-ask for the twin on every connect; no broker session needed.
            clean_session=True,
        )
        async with client:
            self._session_up = True
            self._got_twin.clear()
            log.info("%s: connected to broker %s", self._id, self._broker)
            await client.subscribe(
                [
                    (self._topics.update_delta, 1),
                    (self._topics.update_result, 1),
                    (self._topics.get_result, 1),
                ]
            )
            await self._publish(client, self._topics.state_update, state_payload("online"))
            await self._publish(client, self._topics.get, base_payload())
            tasks = [
                asyncio.create_task(self._receive(client), name=f"mapper-receive-{self._id}"),
                asyncio.create_task(self._report_loop(client), name=f"mapper-report-{self._id}"),
            ]
            stopper = asyncio.create_task(self._stop.wait())
            try:
                done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (*tasks, stopper):
                    task.cancel()
                await asyncio.gather(*tasks, stopper, return_exceptions=True)
            for task in tasks:
                if task in done:
                    task.result()  # re-raise the MQTT error that ended the session
            # Clean stop: the will only fires on an unclean end, so say it ourselves.
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await asyncio.wait_for(
                    self._publish(client, self._topics.state_update, state_payload("offline")),
                    GOODBYE_TIMEOUT,
                )
            log.info("%s: disconnected from broker %s", self._id, self._broker)

    async def _publish(self, client: aiomqtt.Client, topic: str, payload: dict[str, Any]) -> None:
        # QoS 1 and no retain, as KubeEdge's mappers: a retained report would replay stale values.
        await client.publish(topic, _encode(payload), qos=1)

    async def _report_loop(self, client: aiomqtt.Client) -> None:
        interval = self._settings.report_interval
        # Give the edge one interval to answer twin/get, so the first report already reflects
        # the desired values rather than the driver's defaults.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._got_twin.wait(), interval)
        cycle = 0
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            cycle += 1
            if not self._got_twin.is_set() and cycle % GET_RETRY_CYCLES == 0:
                await self._publish(client, self._topics.get, base_payload())
            await self._report(client, self._specs)
            # Fixed rate, not fixed delay: a slow driver read does not stretch the cycle.
            next_at = max(next_at + interval, loop.time())
            await asyncio.sleep(next_at - loop.time())

    async def _report(self, client: aiomqtt.Client, names: Iterable[str]) -> None:
        values: dict[str, str] = {}
        async with self._device_lock:
            for name in names:
                try:
                    values[name] = await self._driver.read(name)
                except Exception as exc:  # a flaky device must not stop the other properties
                    log.warning("%s: reading %s failed: %s", self._id, name, exc)
        if not values:
            return
        await self._publish(client, self._topics.update, report_payload(values, self._specs))
        log.info("%s", self._status_line(values))

    def _status_line(self, values: Mapping[str, str]) -> str:
        parts = [self._id]
        for name, value in values.items():
            part = f"{name}={value}"
            if name in self._desired:
                part += f" (desired {self._desired[name]})"
            parts.append(part)
        return " ".join(parts)

    # ----------------------------------------------------------------------- from the edge

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = message.topic.value
            try:
                raw = message.payload
                data = json.loads(raw if isinstance(raw, str | bytes | bytearray) else "")
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
                if topic == self._topics.update_delta:
                    await self._on_delta(client, DeltaMessage.model_validate(data))
                elif topic == self._topics.get_result:
                    await self._on_get_result(client, TwinResult.model_validate(data))
                elif topic == self._topics.update_result:
                    self._on_update_result(TwinResult.model_validate(data))
            except (ValueError, ValidationError) as exc:
                # json.JSONDecodeError and UnicodeDecodeError are ValueErrors too.
                log.warning("%s: ignoring malformed message on %s: %s", self._id, topic, exc)

    async def _on_delta(self, client: aiomqtt.Client, msg: DeltaMessage) -> None:
        if msg.failed:
            log.warning("%s: delta error %s: %s", self._id, msg.code, msg.reason)
            return
        wanted: dict[str, str] = {}
        for name, value in msg.delta.items():
            spec = self._specs.get(name)
            if spec is None:
                log.warning("%s: delta for unknown property %s ignored", self._id, name)
            elif not spec.writable:
                log.warning("%s: delta for read-only property %s ignored", self._id, name)
            else:
                self._desired[name] = value
                wanted[name] = value
        await self._apply(client, wanted)

    async def _on_get_result(self, client: aiomqtt.Client, msg: TwinResult) -> None:
        self._got_twin.set()
        if msg.failed:
            log.warning("%s: twin/get refused: %s %s", self._id, msg.code, msg.reason)
            return
        expected = {n: v for n, v in msg.expected().items() if n in self._specs}
        self._desired = expected
        wanted: dict[str, str] = {}
        async with self._device_lock:
            for name, value in expected.items():
                if not self._specs[name].writable:
                    continue
                try:
                    current = await self._driver.read(name)
                except Exception as exc:
                    log.warning("%s: reading %s failed: %s", self._id, name, exc)
                    continue
                if current != value:
                    wanted[name] = value
        await self._apply(client, wanted)

    async def _apply(self, client: aiomqtt.Client, wanted: Mapping[str, str]) -> None:
        """Write desired values to the device, then report the result at once."""
        written: list[str] = []
        async with self._device_lock:
            for name, value in wanted.items():
                try:
                    await self._driver.write(name, value)
                except Exception as exc:  # refused by the device: keep serving the rest
                    log.warning("%s: writing %s=%s failed: %s", self._id, name, value, exc)
                    continue
                log.info("%s: applied desired %s=%s", self._id, name, value)
                written.append(name)
        if written:
            await self._report(client, written)

    def _on_update_result(self, msg: TwinResult) -> None:
        if msg.failed:
            log.warning(
                "%s: twin/update refused (event %s): %s %s",
                self._id,
                msg.event_id,
                msg.code,
                msg.reason,
            )
        else:
            log.debug("%s: twin/update accepted (event %s)", self._id, msg.event_id)
