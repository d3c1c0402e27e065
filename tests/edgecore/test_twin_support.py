"""Shared harness for the twin module tests (no tests here).

A real :class:`hive.bus.Bus` with stand-in ``eventbus`` and ``edgehub`` inboxes, a real
:class:`MetaStore` in ``tmp_path`` and the :class:`TwinModule` running as a task: tests put
eventbus-style messages in, apply Devices through the MetaStore, and read what the twin
publishes and sends upstream.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from edgecore.devicetwin.module import TwinModule
from edgecore.metastore import Change, MetaStore
from hive.bus import Bus
from tests.support.procs import wait_until as _wait_until
from wire.messages import Message
from wire.resources import key_of
from wire.twin import (
    BaseOut,
    ErrorResult,
    MembershipResult,
    MembershipUpdated,
    StateOut,
    TwinDelta,
    TwinDocument,
    TwinResult,
    dump,
)

NODE = "edge-1"
DEV = "$hw/events/device/thermostat-1"


def model(name: str = "thermostat-model", namespace: str = "default") -> dict[str, Any]:
    """A DeviceModel in KubeEdge's v1beta1 shape, bounds as strings."""
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "protocol": "virtual",
            "properties": [
                {
                    "name": "temperature",
                    "type": "FLOAT",
                    "accessMode": "ReadOnly",
                    "minimum": "-50",
                    "maximum": "100",
                },
                {
                    "name": "setpoint",
                    "type": "FLOAT",
                    "accessMode": "ReadWrite",
                    "minimum": "5",
                    "maximum": "35",
                },
                {"name": "mode", "type": "STRING", "accessMode": "ReadWrite"},
                {"name": "count", "type": "INT", "minimum": "0", "maximum": "10"},
                {"name": "power", "type": "BOOLEAN", "accessMode": "ReadWrite"},
            ],
        },
    }


def device(
    name: str = "thermostat-1",
    *,
    namespace: str = "default",
    node: str = NODE,
    desired: dict[str, str] | None = None,
    generation: int | None = 1,
    model_name: str = "thermostat-model",
) -> dict[str, Any]:
    """A Device in KubeEdge's v1beta1 shape with ``desired`` values per property."""
    props: list[dict[str, Any]] = [{"name": "temperature"}]
    for prop, value in (desired or {}).items():
        props.append({"name": prop, "desired": {"value": value}})
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if generation is not None:
        meta["generation"] = generation
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": meta,
        "spec": {"deviceModelRef": {"name": model_name}, "nodeName": node, "properties": props},
    }


async def wait_until(cond: Callable[[], bool], timeout: float = 2.0) -> None:
    """Poll ``cond`` until true; fail after ``timeout`` seconds."""
    await _wait_until(cond, timeout=timeout, interval=0.005)


#: topic suffix -> the model a successful payload on it must be
SCHEMAS: dict[str, type[BaseModel]] = {
    "/twin/update/result": TwinResult,
    "/twin/get/result": TwinResult,
    "/twin/update/document": TwinDocument,
    "/twin/update/delta": TwinDelta,
    "/state/update/result": BaseOut,
    "/membership/get/result": MembershipResult,
    "/membership/updated": MembershipUpdated,
}


def check_schema(topic: str, payload: dict[str, Any]) -> None:
    """The payload is exactly what the documented model dumps (no field more, none less)."""
    suffix = next(s for s in SCHEMAS if topic.endswith(s))
    model = ErrorResult if "code" in payload else SCHEMAS[suffix]
    assert dump(model.model_validate(payload)) == payload, (topic, payload)


def check_upstream(msg: Message) -> None:
    model = StateOut if msg.resource.endswith("/state/update") else TwinResult
    assert dump(model.model_validate(msg.content)) == msg.content
    assert msg.content["event_id"] == msg.id


def outbox_rows(path: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """``(msg_id, resource, content)`` of committed outbox rows, as a fresh connection sees."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT msg_id, resource, content FROM outbox ORDER BY seq").fetchall()
    finally:
        db.close()
    return [(m, r, json.loads(c)) for m, r, c in rows]


class TwinEdge:
    """The twin module on a real bus, with stand-in eventbus and edgehub inboxes."""

    def __init__(self, path: Path, meta: MetaStore, *, inbox: int, **settings: Any) -> None:
        self.path = path
        self.meta = meta
        self.settings = settings
        self.bus = Bus(inbox_size=inbox)
        self.bus.register("twin", "twin")
        self.bus.register("eventbus", "bus")
        self.bus.register("edgehub", "hub")
        self.module = self._new_module()
        self.task: asyncio.Task[None] | None = None
        #: publishes read from the eventbus inbox but not yet taken by a test
        self.pubs: list[tuple[str, dict[str, Any]]] = []
        self._rv = 0

    def _new_module(self) -> TwinModule:
        return TwinModule(
            bus=self.bus, meta=self.meta, db_path=self.path, node_name=NODE, **self.settings
        )

    async def start(self) -> None:
        self.task = asyncio.create_task(self.module.run())
        async with asyncio.timeout(2):
            await self.module.ready.wait()
        self.drain()  # what start-up published (membership of the listed devices)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None

    async def restart(self) -> None:
        """A new TwinModule on the same database (as after a process restart)."""
        await self.stop()
        self.module = self._new_module()
        await self.start()

    # -- inputs ----------------------------------------------------------------------------

    async def mqtt(self, topic: str, payload: Any) -> None:
        """An MQTT message as eventbus hands it over (dicts are JSON-encoded first)."""
        content = json.dumps(payload) if isinstance(payload, dict | list) else payload
        await self.bus.send(
            "twin",
            Message.new(
                source="eventbus",
                group="twin",
                operation="message",
                resource=topic,
                content=content,
            ),
        )

    async def hub(self, operation: str, parent: str = "") -> None:
        """A message from edgehub: connected, disconnected, response or error."""
        await self.bus.send(
            "twin",
            Message.new(
                source="edgehub",
                group="hub",
                operation=operation,
                resource="cloud",
                parent_id=parent,
                content="OK",
            ),
        )

    async def apply(self, *objs: dict[str, Any]) -> None:
        """Store objects in the MetaStore as metamanager would."""
        changes = []
        for obj in objs:
            self._rv += 1
            changes.append(Change(str(key_of(obj)), str(self._rv), obj))
        await self.meta.apply(changes)

    async def delete(self, obj: dict[str, Any]) -> None:
        await self.meta.apply([Change(str(key_of(obj)), None, None)])

    async def member(self, device_id: str = "default/thermostat-1") -> None:
        await wait_until(lambda: device_id in self.module.members())

    # -- outputs ---------------------------------------------------------------------------

    async def published(self, topic: str, timeout: float = 2.0) -> dict[str, Any]:
        """The first not-yet-taken publish on ``topic`` (waiting for it)."""
        async with asyncio.timeout(timeout):
            while True:
                for i, (t, payload) in enumerate(self.pubs):
                    if t == topic:
                        del self.pubs[i]
                        return payload
                self._take(await self.bus.receive("eventbus"))

    def drain(self) -> list[tuple[str, dict[str, Any]]]:
        """Every publish so far, taken."""
        while (msg := self.bus.receive_nowait("eventbus")) is not None:
            self._take(msg)
        out, self.pubs = self.pubs, []
        return out

    def _take(self, msg: Message) -> None:
        """Keep the publishes of one eventbus message (the twin sends one batch per commit)."""
        assert msg.operation == "publish_batch"
        assert isinstance(msg.content, list) and msg.content
        for topic, payload in msg.content:
            assert isinstance(payload, dict)
            check_schema(topic, payload)
            self.pubs.append((topic, payload))

    async def barrier(self, device_topic: str = DEV) -> None:
        """Wait until everything sent before has been handled and published."""
        await self.mqtt(f"{device_topic}/twin/get", {"event_id": "barrier"})
        while (await self.published(f"{device_topic}/twin/get/result"))["event_id"] != "barrier":
            pass

    async def upstream(self, n: int, timeout: float = 2.0) -> list[Message]:
        """The next ``n`` messages the twin sent to edgehub."""
        async with asyncio.timeout(timeout):
            msgs = [await self.bus.receive("edgehub") for _ in range(n)]
        for msg in msgs:
            check_upstream(msg)
        return msgs

    def no_upstream(self) -> bool:
        return self.bus.receive_nowait("edgehub") is None


@asynccontextmanager
async def running_edge(
    tmp_path: Path, *, objects: bool = True, inbox: int = 1024, **settings: Any
) -> AsyncIterator[TwinEdge]:
    """A started twin; with ``objects`` the model and ``thermostat-1`` are applied first."""
    path = tmp_path / "edgecore.db"
    meta = await MetaStore.open(path)
    edge = TwinEdge(path, meta, inbox=inbox, **settings)
    try:
        if objects:
            await edge.apply(model(), device())
        await edge.start()
        yield edge
    finally:
        await edge.stop()
        await meta.close()


def report(**values: str) -> dict[str, Any]:
    """A mapper's ``twin/update`` reporting actual values."""
    return {
        "event_id": "ev-1",
        "timestamp": 1,
        "twin": {
            k: {"actual": {"value": v}, "metadata": {"type": "float"}} for k, v in values.items()
        },
    }
