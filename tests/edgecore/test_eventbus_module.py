"""EventBus module on a real mosquitto: MQTT to the twin, the twin's publishes to MQTT.

The "mapper" side of every test is aiomqtt; the eventbus drives paho itself, and mosquitto
between them holds both sides to the protocol. The twin is a plain inbox on a real
:class:`hive.bus.Bus`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as paho_client
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgecore.config import MqttSettings
from edgecore.eventbus import mqtt as mqtt_client
from edgecore.eventbus.module import EventBus, parse_url
from hive.bus import Bus
from tests.support.mosquitto import MosquittoServer, mosquitto  # noqa: F401  (fixture)
from tests.support.procs import free_port, wait_until
from wire import topics
from wire.errors import ConfigError
from wire.messages import Message

UPDATE = '{"event_id":"e1","timestamp":1,"twin":{"temp":{"actual":{"value":"21"}}}}'


def new_bus(*, inbox_size: int = 1024) -> Bus:
    bus = Bus(inbox_size=inbox_size)
    bus.register("eventbus", "bus")
    bus.register("twin", "twin")
    return bus


def make(
    bus: Bus, tmp_path: Path, *, url: str | None = None, port: int | None = None, **kw: Any
) -> EventBus:
    """Internal mode on ``port``, or external mode to ``url``; fast reconnects for tests."""
    settings = (
        MqttSettings(mode="external", url=url) if url else MqttSettings(port=port or free_port())
    )
    kw.setdefault("reconnect_initial", 0.05)
    kw.setdefault("reconnect_cap", 0.2)
    return EventBus(bus=bus, settings=settings, node_name="n1", data_dir=tmp_path / "edge", **kw)


@contextlib.asynccontextmanager
async def running(module: EventBus) -> AsyncIterator[EventBus]:
    """Run the module as a task until the block ends; enter once it is connected."""
    task = asyncio.create_task(module.run(), name="test:eventbus")
    try:
        await wait_until(lambda: module.connected.is_set() or task.done(), timeout=5)
        if task.done():
            task.result()
        yield module
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def to_twin(bus: Bus) -> Message:
    async with asyncio.timeout(2):
        return await bus.receive("twin")


async def delta_subscriber(port: int) -> aiomqtt.Client:
    """An app with a persistent session subscribed (QoS 1) to every twin delta, disconnected:
    the broker keeps what is published for it until it connects again (``async with``)."""
    app = aiomqtt.Client("127.0.0.1", port, identifier="app", clean_session=False)
    async with app:
        await app.subscribe("$hw/events/device/+/twin/update/delta", qos=1)
    return app


def publish_msg(topic: str, content: Any) -> Message:
    return Message.new(source="twin", group="bus", operation="publish", resource=topic,
                       content=content)  # fmt: skip


async def test_forwards_device_messages_to_twin(tmp_path: Path) -> None:
    """A mapper's twin/update (either id form), state and membership reach the twin inbox."""
    bus = new_bus()
    async with running(make(bus, tmp_path)) as eb:
        async with aiomqtt.Client("127.0.0.1", eb.address.port, identifier="mapper") as mapper:
            sent = [
                topics.twin_update("d1"),
                topics.twin_get("default/d1"),
                topics.state_update("ns/d2"),
                topics.membership_get("n1"),
            ]
            for topic in sent:
                await mapper.publish(topic, UPDATE, qos=1)
            got = [await to_twin(bus) for _ in sent]
    assert [m.resource for m in got] == sent
    first = got[0]
    assert (first.route.source, first.route.group, first.operation) == (
        "eventbus",
        "twin",
        "message",
    )
    assert first.content == UPDATE
    assert eb.received == 4


async def test_undecodable_payload_reaches_twin_as_none(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 arrive with content None, so the twin can answer 400."""
    bus = new_bus()
    async with running(make(bus, tmp_path)) as eb:
        async with aiomqtt.Client("127.0.0.1", eb.address.port, identifier="mapper") as mapper:
            await mapper.publish(topics.twin_update("d1"), b"\xff\xfe", qos=1)
            msg = await to_twin(bus)
    assert msg.content is None


async def test_own_publishes_received_back_are_dropped(tmp_path: Path) -> None:
    """With a filter wide enough to echo our results, they never reach the twin."""
    bus = new_bus()
    module = make(bus, tmp_path, subscriptions=("$hw/events/#",))
    async with running(module) as eb:
        for topic in (
            topics.twin_update_result("d1"),
            topics.twin_delta("ns/d1"),
            topics.twin_get_result("d1"),
            topics.membership_result("n1"),
        ):
            await bus.send("eventbus", publish_msg(topic, {"event_id": "x"}))
        await wait_until(lambda: eb.ignored == 4, timeout=2)
        async with aiomqtt.Client("127.0.0.1", eb.address.port, identifier="mapper") as mapper:
            await mapper.publish(topics.twin_update("d1"), UPDATE, qos=1)
            msg = await to_twin(bus)
    assert msg.resource == topics.twin_update("d1")  # the first and only one
    assert bus.receive_nowait("twin") is None


async def test_publishes_answers_qos0_others_qos1_compact_json(tmp_path: Path) -> None:
    """Answers go out at QoS 0, deltas at QoS 1, not retained; dicts as compact JSON, str as is."""
    bus = new_bus()
    async with running(make(bus, tmp_path)) as eb:
        async with aiomqtt.Client("127.0.0.1", eb.address.port, identifier="app") as app:
            await app.subscribe("$hw/events/device/+/twin/update/+", qos=1)
            await bus.send(
                "eventbus",
                publish_msg(topics.twin_update_result("d1"), {"event_id": "e", "twin": {}}),
            )
            await bus.send("eventbus", publish_msg(topics.twin_delta("d1"), "plain text"))
            async with asyncio.timeout(2):
                it = aiter(app.messages)
                first, second = await anext(it), await anext(it)
        await wait_until(lambda: eb.published == 2, timeout=2)
    assert first.topic.value == topics.twin_update_result("d1")
    assert first.payload == b'{"event_id":"e","twin":{}}'
    assert (first.qos, first.retain) == (0, False)
    assert second.payload == b"plain text"
    assert (second.qos, second.retain) == (1, False)


async def test_publish_batch_goes_out_in_order_with_each_topics_qos(tmp_path: Path) -> None:
    """One publish_batch message: every pair published, in order, answers QoS 0, deltas QoS 1."""
    bus = new_bus()
    pairs = [
        (topics.twin_update_result("d1"), {"n": 1}),
        (topics.twin_delta("d1"), {"n": 2}),
        (topics.twin_update_result("d1"), {"n": 3}),
    ]
    async with running(make(bus, tmp_path)) as eb:
        async with aiomqtt.Client("127.0.0.1", eb.address.port, identifier="app") as app:
            await app.subscribe("$hw/events/device/+/twin/update/+", qos=1)
            batch = Message.new(
                source="twin", group="bus", operation="publish_batch", resource="", content=pairs
            )
            await bus.send("eventbus", batch)
            async with asyncio.timeout(2):
                it = aiter(app.messages)
                got = [await anext(it) for _ in pairs]
        await wait_until(lambda: eb.published == 3, timeout=2)
    assert [(m.topic.value, json.loads(m.payload), m.qos) for m in got] == [
        (topics.twin_update_result("d1"), {"n": 1}, 0),
        (topics.twin_delta("d1"), {"n": 2}, 1),
        (topics.twin_update_result("d1"), {"n": 3}, 0),
    ]


async def test_reconnects_after_supervised_broker_is_killed(tmp_path: Path) -> None:
    """Internal mode: kill -9 of mosquitto, the supervisor restarts it, messages flow again."""
    bus = new_bus()
    async with running(make(bus, tmp_path)) as eb:
        assert eb.broker is not None and eb.broker.pid is not None
        os.kill(eb.broker.pid, signal.SIGKILL)
        await wait_until(lambda: eb.connections == 2 and eb.connected.is_set(), timeout=5)
        async with aiomqtt.Client("127.0.0.1", eb.address.port, identifier="mapper") as mapper:
            await mapper.publish(topics.twin_update("d1"), UPDATE, qos=1)
            msg = await to_twin(bus)
    assert msg.resource == topics.twin_update("d1")
    assert eb.broker.restarts == 1


async def test_resubscribes_on_a_fresh_broker(
    tmp_path: Path,
    mosquitto: MosquittoServer,  # noqa: F811
) -> None:
    """External mode: after a restart that lost every session, subscriptions are made again."""
    bus = new_bus()
    async with running(make(bus, tmp_path, url=mosquitto.url)) as eb:
        await mosquitto.restart(wipe=True)
        await wait_until(lambda: eb.connections == 2 and eb.connected.is_set(), timeout=5)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="mapper") as mapper:
            await mapper.publish(topics.twin_update("d1"), UPDATE, qos=1)
            msg = await to_twin(bus)
    assert msg.resource == topics.twin_update("d1")


async def test_persistent_session_delivers_what_was_missed(
    tmp_path: Path,
    mosquitto: MosquittoServer,  # noqa: F811
) -> None:
    """Messages published while edgecore was stopped are delivered when it comes back."""
    bus = new_bus()
    async with running(make(bus, tmp_path, url=mosquitto.url)):
        pass  # first run: the broker now has edgecore-n1's session and subscriptions
    async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="mapper") as mapper:
        await mapper.publish(topics.twin_update("d1"), UPDATE, qos=1)
        await mapper.publish(topics.state_update("d1"), '{"state":"online"}', qos=1)
    bus2 = new_bus()
    async with running(make(bus2, tmp_path, url=mosquitto.url)):
        got = [await to_twin(bus2), await to_twin(bus2)]
    assert [m.resource for m in got] == [topics.twin_update("d1"), topics.state_update("d1")]


async def test_publishes_wait_for_the_broker(
    tmp_path: Path,
    mosquitto: MosquittoServer,  # noqa: F811
) -> None:
    """A publish made while the broker is down is sent once it is back, not lost."""
    app = await delta_subscriber(mosquitto.port)
    bus = new_bus()
    async with running(make(bus, tmp_path, url=mosquitto.url)) as eb:
        await mosquitto.stop()
        await wait_until(lambda: not eb.connected.is_set(), timeout=2)
        await bus.send("eventbus", publish_msg(topics.twin_delta("d1"), {"n": 1}))
        await wait_until(lambda: eb.stats()["pending"] == 1, timeout=2)
        await mosquitto.start()
        await wait_until(lambda: eb.published == 1, timeout=5)
    async with app:
        async with asyncio.timeout(2):
            msg = await anext(aiter(app.messages))
    assert msg.payload == b'{"n":1}'


async def test_unacknowledged_publishes_are_resent_after_a_crash(tmp_path: Path) -> None:
    """Publishes in flight when the broker dies are sent again after it is restarted."""
    bus = new_bus()
    async with running(make(bus, tmp_path)) as eb:
        assert eb.broker is not None
        app = await delta_subscriber(eb.address.port)
        pid = eb.broker.pid
        assert pid is not None
        db = eb.broker.dir / "mosquitto.db"
        os.kill(pid, signal.SIGUSR1)  # save both sessions now
        await wait_until(lambda: db.exists() and b"twin/update/delta" in db.read_bytes())
        os.kill(pid, signal.SIGSTOP)  # frozen: reads nothing, acknowledges nothing
        try:
            for n in range(10):
                await bus.send("eventbus", publish_msg(topics.twin_delta("d1"), {"n": n}))
            await wait_until(lambda: eb.stats()["inflight"] == 10, timeout=2)
        finally:
            os.kill(pid, signal.SIGKILL)
        await wait_until(lambda: eb.published == 10, timeout=5)
        async with app:
            async with asyncio.timeout(2):
                it = aiter(app.messages)
                got = [json.loads((await anext(it)).payload) for _ in range(10)]
    assert got == [{"n": n} for n in range(10)]


async def test_full_outbox_drops_oldest_while_broker_is_away(
    tmp_path: Path,
    mosquitto: MosquittoServer,  # noqa: F811
) -> None:
    """Beyond max_pending the oldest publishes go (counted); the newest are sent later."""
    app = await delta_subscriber(mosquitto.port)
    bus = new_bus()
    async with running(make(bus, tmp_path, url=mosquitto.url, max_pending=3)) as eb:
        await mosquitto.stop()
        await wait_until(lambda: not eb.connected.is_set(), timeout=2)
        for n in range(5):
            await bus.send("eventbus", publish_msg(topics.twin_delta("d1"), {"n": n}))
        await wait_until(lambda: eb.dropped == 2 and eb.stats()["pending"] == 3, timeout=2)
        await mosquitto.start()
        await wait_until(lambda: eb.published == 3, timeout=5)
    async with app:
        async with asyncio.timeout(2):
            it = aiter(app.messages)
            got = [json.loads((await anext(it)).payload) for _ in range(3)]
    assert got == [{"n": 2}, {"n": 3}, {"n": 4}]


async def test_slow_twin_loses_nothing_and_keeps_order(tmp_path: Path) -> None:
    """With a tiny twin inbox, a burst is held back (by the broker), then delivered in order."""
    bus = new_bus(inbox_size=4)
    n = 500
    async with running(make(bus, tmp_path)) as eb:
        async with aiomqtt.Client(
            "127.0.0.1", eb.address.port, identifier="mapper", max_inflight_messages=100
        ) as mapper:
            await asyncio.gather(
                *(mapper.publish(topics.twin_update("d1"), str(i), qos=1) for i in range(n))
            )
        got: list[str] = []
        async with asyncio.timeout(5):
            while len(got) < n:
                got.append((await bus.receive("twin")).content)
                if len(got) % 50 == 0:
                    await asyncio.sleep(0)  # a twin that is busy with other work
    assert got == [str(i) for i in range(n)]
    assert eb.deferred > 0  # the slow path was taken


async def test_unacknowledged_backlog_is_bounded_by_the_broker(tmp_path: Path) -> None:
    """A twin that takes nothing: only the broker's in-flight limit (200) reaches us, unacked.

    Messages are acknowledged only once the twin's inbox took them, so the broker stops
    sending at its in-flight limit and keeps the rest; they all arrive, in order, later.
    """
    bus = new_bus(inbox_size=1)
    n = 300
    async with running(make(bus, tmp_path)) as eb:
        async with aiomqtt.Client(
            "127.0.0.1", eb.address.port, identifier="mapper", max_inflight_messages=100
        ) as mapper:
            await asyncio.gather(
                *(mapper.publish(topics.state_update("d1"), str(i), qos=1) for i in range(n))
            )
        await wait_until(lambda: eb.deferred == 200, timeout=2)
        await asyncio.sleep(0.3)  # not synchronisation: checking that nothing more comes
        assert (eb.received, eb.deferred) == (1, 200)
        async with asyncio.timeout(5):
            got = [(await bus.receive("twin")).content for _ in range(n)]
    assert got == [str(i) for i in range(n)]


async def test_stop_during_a_blocked_connect_is_prompt(tmp_path: Path) -> None:
    """Stopping while paho's blocking connect runs (a TLS handshake nobody answers) is instant."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"mqtts://127.0.0.1:{silent.getsockname()[1]}"
        module = make(new_bus(), tmp_path, url=url)
        task = asyncio.create_task(module.run())
        await wait_until(lambda: any(t.name == "mqtt-connect" for t in threading.enumerate()))
        task.cancel()
        async with asyncio.timeout(0.5):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert not module.connected.is_set()


@pytest.mark.parametrize(
    ("n", "small"),
    [(2000, False), (300, True)],
    ids=["volume", "every-queue-tiny"],
)
async def test_echo_round_trip(tmp_path: Path, n: int, small: bool) -> None:
    """Updates in and QoS 1 deltas out through a stand-in twin: none lost, no deadlock.

    With every queue tiny (twin and eventbus inboxes, outbox, publish window) each side
    waits on the other at some point; it must still all flow.
    """
    bus = new_bus(inbox_size=4 if small else 1024)
    tiny: dict[str, Any] = {"max_pending": 8, "window": 4} if small else {}

    async def echo_twin() -> None:
        while True:
            msg = await bus.receive("twin")
            match = topics.parse(msg.resource)
            assert match.device_id is not None
            await bus.send(
                "eventbus",
                # a delta: QoS 1, so the publish window and PUBACKs are part of the flow
                publish_msg(topics.twin_delta(match.device_id), {"v": msg.content}),
            )

    async with running(make(bus, tmp_path, **tiny)) as eb:
        twin = asyncio.create_task(echo_twin(), name="test:twin")
        try:
            async with aiomqtt.Client(
                "127.0.0.1", eb.address.port, identifier="mapper", max_inflight_messages=200
            ) as mapper:
                await mapper.subscribe("$hw/events/device/+/twin/update/delta", qos=1)
                sender = asyncio.gather(
                    *(mapper.publish(topics.twin_update(f"d{i % 10}"), str(i), qos=1)
                      for i in range(n))
                )  # fmt: skip
                results = 0
                async with asyncio.timeout(10):
                    async for _ in mapper.messages:
                        results += 1
                        if results == n:
                            break
                await sender
        finally:
            twin.cancel()
    assert (eb.received, eb.published) == (n, n)


def test_broker_url_parsing() -> None:
    """mqtt/tcp and mqtts/ssl URLs with optional credentials; the display hides the password."""
    a = parse_url("mqtt://broker.local")
    assert (a.host, a.port, a.tls, a.username) == ("broker.local", 1883, False, None)
    b = parse_url("mqtts://edge%40x:p%3Ass@10.0.0.5:18883")
    assert (b.host, b.port, b.tls) == ("10.0.0.5", 18883, True)
    assert (b.username, b.password) == ("edge@x", "p:ss")
    assert "p:ss" not in b.display and "p:ss" not in repr(b)
    assert parse_url("tcp://127.0.0.1:1884").port == 1884
    assert parse_url("ssl://h").port == 8883


@pytest.mark.parametrize(
    "url", ["http://h:1883", "mqtt://", "mqtt://h:99999", "mqtt://h/path", "h:1883"]
)
def test_bad_broker_urls_are_config_errors(url: str) -> None:
    """A URL that is not an MQTT broker address is refused with ConfigError."""
    with pytest.raises(ConfigError):
        parse_url(url)


def test_external_mode_needs_url(tmp_path: Path) -> None:
    """External mode without a URL is a configuration error, raised at construction."""
    with pytest.raises(ConfigError, match="URL"):
        EventBus(
            bus=new_bus(),
            settings=MqttSettings(mode="external"),
            node_name="n1",
            data_dir=tmp_path,
        )


@pytest.mark.parametrize("topic", ["", "a/+/b", "a/#"])
def test_qos0_fast_path_refuses_what_paho_refuses(topic: str) -> None:
    """A QoS 0 publish without paho's per-call info object checks the topic as paho does."""
    client = mqtt_client._BufferedPaho(CallbackAPIVersion.VERSION2, client_id="t")
    with pytest.raises(ValueError):
        client.publish_qos0(topic, b"x")
    with pytest.raises(ValueError):
        client.publish(topic or "a/#", b"x", qos=0)


def test_qos0_fast_path_makes_no_info_per_publish(monkeypatch: pytest.MonkeyPatch) -> None:
    """QoS 0 publishes take ids in sequence with paho's own and build no per-call info object
    (paho's ``publish`` builds one, with a lock, each time)."""
    client = mqtt_client._BufferedPaho(CallbackAPIVersion.VERSION2, client_id="t")
    made: list[int] = []
    original = paho_client.MQTTMessageInfo.__init__

    def counting(self: paho_client.MQTTMessageInfo, mid: int) -> None:
        made.append(mid)
        original(self, mid)

    monkeypatch.setattr(paho_client.MQTTMessageInfo, "__init__", counting)
    first = client.publish_qos0("a/b", b"x")
    assert client.publish_qos0("a/b", b"y") == first + 1
    assert made == []
    assert client.publish("a/b", b"z", qos=0).mid == first + 2
    assert made == [first + 2]
