"""The ``twin`` hive module: device twins, KubeEdge's MQTT twin protocol, the durable outbox.

Inputs, all through the bus except the cloud's Device objects:

- ``eventbus`` forwards every MQTT message on the twin topics (``operation="message"``,
  resource = topic, content = payload text);
- ``edgehub`` says when the cloud link comes up or goes down (``connected`` /
  ``disconnected``) and hands back the cloud's answers to upstream messages (``response`` /
  ``error`` with ``parent_msg_id`` = the outbox row's id);
- Devices and DeviceModels come from metamanager's :class:`MetaStore` (list, then watch), so the
  twin sees only objects that are on disk.

Why one loop with group commit: a mapper's report is answered only after it is durable, and a
fsync costs milliseconds. The loop takes what is waiting in the inbox (up to ``batch_max``
messages, waiting at most ``batch_window_ms`` for more), validates every message, stages the
accepted ones, commits their twin rows and outbox rows in ONE transaction, and only then
publishes results, documents and deltas. A refused message changes nothing and is answered at
once with ``code`` 400/404; if the commit fails, the accepted ones are answered 500 and no
state changes (the in-memory twin is updated only from committed writes).

Why an outbox: every accepted report and state change becomes an upstream message stored in
the same transaction and deleted only when the cloud answers it. While the link is down rows
accumulate; on each ``connected`` all of them are sent again, oldest first, with their stable
ids (the cloud applies them idempotently by version). KubeEdge drops these while offline. The
sender is its own task so the MQTT side never waits for the cloud.

Conflicts are settled by :mod:`edgecore.devicetwin.merge` (versions, a total order); values are
checked by :mod:`wire.devicemodel` against the DeviceModel.

Replies go to the topic form the mapper used (``{name}`` or ``{ns}/{name}``); messages the edge
starts on its own (a delta after a cloud change) go to the form that device's mapper used last,
by default ``{name}`` in namespace ``default`` and ``{ns}/{name}`` elsewhere. That choice lives
in memory only: after a restart it is the default again until the mapper speaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from edgecore.devicetwin import merge as m
from edgecore.devicetwin.payloads import (
    BaseIn,
    StateUpdateIn,
    TwinUpdateIn,
    base_result,
    error_result,
    first_error,
    membership_device,
    membership_result,
    membership_updated,
    state_out,
    twin_delta,
    twin_document,
    twin_json,
    twin_result,
)
from edgecore.devicetwin.store import (
    DeviceRecord,
    NewOutboxRow,
    OutboxRow,
    TwinRecord,
    TwinStore,
    WriteSet,
)
from edgecore.metamanager.store import MetaStore, StoreEvent, Subscription
from hive.bus import Bus, UnknownModule
from wire.devicemodel import PropertySpec, check_desired, check_value, property_specs
from wire.devicemodel import same_value as _same_value
from wire.errors import StoreError
from wire.messages import Header, Message, Operation, Route

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=BaseModel)

NAME = "twin"
GROUP = "twin"
DEVICE_TOPIC = "$hw/events/device/"
NODE_TOPIC = "$hw/events/node/"
DEFAULT_NAMESPACE = "default"
#: outbox rows read per query while (re)sending
_PAGE = 256

Kind = Literal["update", "get", "state", "membership"]
#: after the commit: what to publish, given whether the commit succeeded
Render = Callable[[bool], "tuple[str, dict[str, Any]] | None"]

_SUFFIXES: tuple[tuple[str, Kind], ...] = (
    ("/twin/update", "update"),
    ("/twin/get", "get"),
    ("/state/update", "state"),
)
_RESULT_SUFFIX: dict[Kind, str] = {
    "update": "/twin/update/result",
    "get": "/twin/get/result",
    "state": "/state/update/result",
    "membership": "/membership/get/result",
}


def _wall_ms() -> int:
    return int(time.time() * 1000)


def parse_topic(topic: str) -> tuple[Kind, str] | None:
    """``(kind, id)`` of a request topic: the device id as written, or the node name.

    ``None`` for anything else, including the edge's own ``.../result`` and ``.../delta``
    topics should the broker echo them.
    """
    if topic.startswith(DEVICE_TOPIC):
        rest = topic[len(DEVICE_TOPIC) :]
        for suffix, kind in _SUFFIXES:
            if rest.endswith(suffix):
                return kind, rest[: -len(suffix)]
        return None
    if topic.startswith(NODE_TOPIC) and topic.endswith("/membership/get"):
        return "membership", topic[len(NODE_TOPIC) : -len("/membership/get")]
    return None


def device_id_of(topic_id: str) -> str | None:
    """``{ns}/{name}`` for a topic's device id (``{name}`` alone means namespace default)."""
    parts = topic_id.split("/")
    if len(parts) == 1 and parts[0]:
        return f"{DEFAULT_NAMESPACE}/{parts[0]}"
    if len(parts) == 2 and all(parts):
        return topic_id
    return None


def reply_topic(kind: Kind, topic_id: str) -> str:
    base = NODE_TOPIC if kind == "membership" else DEVICE_TOPIC
    return f"{base}{topic_id}{_RESULT_SUFFIX[kind]}"


def _default_topic_id(namespace: str, name: str) -> str:
    return name if namespace == DEFAULT_NAMESPACE else f"{namespace}/{name}"


def _desired_of(spec: dict[str, Any]) -> dict[str, str]:
    """``spec.properties[].desired.value`` by property name (non-string scalars as text)."""
    out: dict[str, str] = {}
    props = spec.get("properties")
    if not isinstance(props, list):
        return out
    for p in props:
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            continue
        desired = p.get("desired")
        value = desired.get("value") if isinstance(desired, dict) else None
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, int | float):
            value = json.dumps(value)
        if isinstance(value, str):
            out[p["name"]] = value
    return out


def _generation_of(meta: dict[str, Any]) -> int:
    g = meta.get("generation")
    if isinstance(g, int) and not isinstance(g, bool) and g > 0:
        return g
    if isinstance(g, str) and g.isdigit() and int(g) > 0:
        return int(g)
    return 1


class _Refused(Exception):
    """A request that is answered with ``code`` and ``reason`` and changes nothing (internal)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass
class _Device:
    """A member device, as the loop keeps it in memory (committed state only)."""

    record: DeviceRecord
    #: ``{ns}/{model name}``, "" when the Device names none (or before the Device was seen)
    model: str = ""
    generation: int = 0
    #: spec desired values, by property
    desired: dict[str, str] = field(default_factory=dict)
    twins: dict[str, TwinRecord] = field(default_factory=dict)
    #: the topic form its mapper used last
    topic_id: str = ""

    @property
    def id(self) -> str:
        return self.record.id


@dataclass
class _Batch:
    """One transaction's staged writes and what to publish once it is committed."""

    writes: WriteSet = field(default_factory=WriteSet)
    #: in-memory changes to make once committed (membership), before the staged rows install
    installs: list[Callable[[], None]] = field(default_factory=list)
    outputs: list[Render] = field(default_factory=list)
    #: devices to check for a delta after the commit (ordered set)
    deltas: dict[str, None] = field(default_factory=dict)

    def fixed(self, topic: str, payload: dict[str, Any]) -> None:
        self.outputs.append(lambda _ok: (topic, payload))


class TwinModule:
    """Device twins for the devices bound to this node."""

    name = NAME
    group = GROUP

    def __init__(
        self,
        *,
        bus: Bus,
        meta: MetaStore,
        db_path: Path,
        node_name: str,
        batch_window_ms: float = 5,
        batch_max: int = 500,
        hub_module: str = "edgehub",
        bus_module: str = "eventbus",
        clock: Callable[[], int] = _wall_ms,
        enabled: bool = True,
    ) -> None:
        """
        Args:
            bus: the process's bus; the app registers ``twin`` in group ``twin`` on it.
            meta: metamanager's open cache, where Devices and DeviceModels arrive.
            db_path: the database file (``DATA_DIR/edgecore.db``, shared with metamanager).
            node_name: this node; only Devices with ``spec.nodeName`` equal to it are members.
            batch_window_ms: longest a message waits for others to share its commit (5 ms).
            batch_max: most messages per transaction (500).
            hub_module: where upstream messages go (the cloud link).
            bus_module: where MQTT publishes go.
            clock: milliseconds since the epoch; injectable for tests.
            enabled: the runner skips a disabled module.
        """
        self.enabled = enabled
        self._bus = bus
        self._meta = meta
        self._db_path = db_path
        self._node = node_name
        self._window = batch_window_ms / 1000
        self._batch_max = max(1, batch_max)
        self._hub = hub_module
        self._eventbus = bus_module
        self._clock = clock
        self._store: TwinStore | None = None
        self._devices: dict[str, _Device] = {}
        self._models: dict[str, dict[str, PropertySpec]] = {}
        #: one writer at a time: the MQTT loop and the Device watchers stage, commit, install
        self._lock = asyncio.Lock()
        #: outbox ids the cloud answered, deleted with the next commit
        self._acked: set[str] = set()
        self._link_up = False
        self._link_down = asyncio.Event()
        self._link_down.set()
        #: bumped on each ``connected``: the sender starts again from the oldest row
        self._epoch = 0
        self._kick = asyncio.Event()
        self._subs: dict[str, Subscription] = {}
        self._warned_no_bus = False
        #: set once the store is open and the Devices are loaded; cleared when ``run`` ends
        self.ready = asyncio.Event()
        #: transactions committed by the MQTT loop, and upstream messages handed to edgehub
        self.batches = 0
        self.sent = 0

    # -- public read-only views (tests, metrics) ----------------------------------------------

    @property
    def store(self) -> TwinStore:
        if self._store is None:
            raise StoreError("the twin module is not running")
        return self._store

    def members(self) -> list[str]:
        """Ids (``{ns}/{name}``) of this node's devices."""
        return sorted(self._devices)

    def twin(self, device_id: str) -> dict[str, TwinRecord]:
        """The committed twin of a member device (empty if unknown)."""
        dev = self._devices.get(device_id)
        return dict(dev.twins) if dev else {}

    # -- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Open the store, load the Devices, then serve forever."""
        self._store = await TwinStore.open(self._db_path)
        tasks: list[asyncio.Task[None]] = []
        try:
            await self._load()
            # subscribe before listing, so nothing committed in between is missed
            self._subs["devicemodel"] = self._meta.subscribe("devicemodel")
            self._subs["device"] = self._meta.subscribe("device")
            await self._relist("devicemodel")
            await self._relist("device")
            tasks = [
                asyncio.create_task(self._watch("devicemodel"), name="twin:models"),
                asyncio.create_task(self._watch("device"), name="twin:devices"),
                asyncio.create_task(self._uplink(), name="twin:uplink"),
                asyncio.create_task(self._serve(), name="twin:serve"),
            ]
            self._kick.set()  # rows left from before a restart go as soon as the link is up
            self.ready.set()
            log.info(
                "twin: %d devices on node %s, %d upstream messages waiting",
                len(self._devices),
                self._node,
                await self._store.outbox_size(),
            )
            # All four run forever; if one fails, run fails too and the runner restarts the
            # module, rather than serving on with no watcher or no sender.
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                exc = t.exception()
                if exc is not None:
                    raise exc
            log.info("twin: metamanager's cache closed; stopping")
        finally:
            self.ready.clear()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for sub in self._subs.values():
                sub.close()
            self._subs.clear()
            await self._store.close()
            self._store = None
            self._devices.clear()
            self._models.clear()

    async def _load(self) -> None:
        devices, twins = await self.store.load()
        self._devices = {
            d.id: _Device(record=d, topic_id=_default_topic_id(d.namespace, d.name))
            for d in devices.values()
        }
        for t in twins:
            dev = self._devices.get(t.device_id)
            if dev is not None:
                dev.twins[t.name] = t

    # -- the MQTT / edgehub loop --------------------------------------------------------------

    async def _serve(self) -> None:
        while True:
            batch = await self._gather()
            await self.process(batch)

    async def _gather(self) -> list[Message]:
        """The first message, then what else is waiting or arrives within the batch window."""
        batch = [await self._bus.receive(self.name)]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._window
        while len(batch) < self._batch_max:
            msg = self._bus.receive_nowait(self.name)
            if msg is None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    # a cancelled Queue.get loses nothing
                    async with asyncio.timeout(remaining):
                        msg = await self._bus.receive(self.name)
                except TimeoutError:
                    break
            batch.append(msg)
        return batch

    async def process(self, messages: list[Message]) -> None:
        """Handle one batch: validate and stage, commit once, then publish."""
        batch = _Batch()
        async with self._lock:
            for msg in messages:
                self._dispatch(msg, batch)
            ok = await self._commit(batch)
            if ok:
                self.batches += 1
        await self._emit(batch, ok)

    def _dispatch(self, msg: Message, batch: _Batch) -> None:
        op = msg.operation
        if op == "message":
            self._on_mqtt(msg.resource, msg.content, batch)
        elif op == Operation.RESPONSE:
            self._acked.add(msg.parent_id)
        elif op == Operation.ERROR:
            log.warning(
                "cloud refused upstream %s (%s): %s; dropping it",
                msg.parent_id,
                msg.resource,
                msg.content,
            )
            self._acked.add(msg.parent_id)
        elif op == "connected":
            self._link_up = True
            self._epoch += 1
            self._link_down.clear()
            self._kick.set()
        elif op == "disconnected":
            self._link_up = False
            self._link_down.set()
        else:
            log.debug("twin ignores %s %s from %s", op, msg.resource, msg.route.source)

    def _on_mqtt(self, topic: str, payload: Any, batch: _Batch) -> None:
        parsed = parse_topic(topic)
        if parsed is None:
            log.debug("twin ignores MQTT topic %s", topic)
            return
        kind, topic_id = parsed
        event_id = ""
        try:
            obj = _decode(payload)
            event_id = _event_id(obj)
            if kind == "membership":
                self._on_membership(topic_id, obj, batch)
                return
            device_id = device_id_of(topic_id)
            if device_id is None:
                raise _Refused(404, f"device id {topic_id!r} is not NAME or NAMESPACE/NAME")
            dev = self._devices.get(device_id)
            if dev is None:
                raise _Refused(404, f"device {device_id} is not a member of node {self._node}")
            dev.topic_id = topic_id
            if isinstance(obj, _Undecodable):
                raise _Refused(400, obj.reason)
            if kind == "update":
                self._on_update(dev, topic_id, obj, batch)
            elif kind == "get":
                self._on_get(dev, topic_id, obj, batch)
            else:
                self._on_state(dev, topic_id, obj, batch)
        except _Refused as exc:
            log.info("refusing %s: %s", topic, exc.reason)
            code, reason = exc.code, exc.reason
        except Exception:
            # a bug must cost one answer, not the loop (and the batch's other messages)
            log.exception("twin failed on %s", topic)
            code, reason = 500, "the edge failed to handle this message"
        else:
            return
        batch.fixed(
            reply_topic(kind, topic_id), error_result(event_id, self._clock(), code, reason)
        )

    def _on_update(self, dev: _Device, topic_id: str, obj: dict[str, Any], batch: _Batch) -> None:
        req = _validate(TwinUpdateIn, obj)
        specs = self._models.get(dev.model)
        if specs is None:
            raise _Refused(404, f"device model {dev.model or '(none)'} of {dev.id} is not known")
        for name, p in req.twin.items():
            spec = specs.get(name)
            if spec is None:
                raise _Refused(404, f"property {name} is not in device model {dev.model}")
            reason = (check_value(spec, p.actual.value) if p.actual else None) or (
                check_desired(spec, p.expected.value) if p.expected else None
            )
            if reason:
                raise _Refused(400, reason)
        now = self._clock()
        result: dict[str, Any] = {}
        doc: dict[str, tuple[dict[str, Any] | None, dict[str, Any]]] = {}
        for name, p in req.twin.items():
            before = self._current(batch, dev.id, name)
            old = before.twin if before else m.Twin()
            actual, expected = old.actual, old.expected
            if p.actual is not None:
                # per property: a clock shared by all would run ahead of the wall clock under
                # a sustained load above 1000 reports/s
                hlc = m.next_hlc(actual.edge if actual else 0, now)
                actual = m.merge(actual, m.reported(p.actual.value, hlc=hlc, timestamp=now))
            if p.expected is not None:
                cand = m.local_desired(
                    p.expected.value, current=expected, generation=dev.generation, timestamp=now
                )
                expected = m.merge(expected, cand)
            optional = (
                p.optional if p.optional is not None else (before.optional if before else None)
            )
            after = TwinRecord(
                dev.id, name, m.Twin(expected, actual), optional, specs[name].twin_type
            )
            batch.writes.twins[(dev.id, name)] = after
            result[name] = self._twin_json(after)
            doc[name] = (self._twin_json(before) if before else None, result[name])
        topic = reply_topic("update", topic_id)
        if not result:  # an empty twin: nothing to store or send
            batch.fixed(topic, twin_result(req.event_id, now, {}))
            return
        self._stage_upstream(
            batch,
            dev,
            "twin/edge_updated",
            lambda row_id: twin_result(row_id, now, result),
        )
        eid = req.event_id
        ok_payload = twin_result(eid, now, result)
        document = twin_document(eid, now, doc)
        doc_topic = f"{DEVICE_TOPIC}{topic_id}/twin/update/document"
        batch.outputs.append(lambda ok: (topic, ok_payload if ok else self._storage_error(eid)))
        batch.outputs.append(lambda ok: (doc_topic, document) if ok else None)
        batch.deltas[dev.id] = None

    def _on_get(self, dev: _Device, topic_id: str, obj: dict[str, Any], batch: _Batch) -> None:
        req = _validate(BaseIn, obj)
        topic = reply_topic("get", topic_id)
        device_id = dev.id

        def render(_ok: bool) -> tuple[str, dict[str, Any]]:
            now = self._clock()
            current = self._devices.get(device_id)
            if current is None:  # removed by the cloud meanwhile
                reason = f"device {device_id} is not a member of node {self._node}"
                return topic, error_result(req.event_id, now, 404, reason)
            twin = {n: self._twin_json(r) for n, r in sorted(current.twins.items())}
            return topic, twin_result(req.event_id, now, twin)

        batch.outputs.append(render)

    def _on_state(self, dev: _Device, topic_id: str, obj: dict[str, Any], batch: _Batch) -> None:
        req = _validate(StateUpdateIn, obj)
        now = self._clock()
        record = batch.writes.devices.get(dev.id, dev.record)
        last_online = (
            datetime.fromtimestamp(now / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            if req.state == "online"
            else record.last_online
        )
        batch.writes.devices[dev.id] = DeviceRecord(
            record.id, record.name, record.namespace, record.description, req.state, last_online
        )
        state = req.state
        self._stage_upstream(
            batch,
            dev,
            "state/update",
            lambda row_id: state_out(row_id, now, state),
        )
        topic = reply_topic("state", topic_id)
        eid = req.event_id
        ok_payload = base_result(eid, now)
        batch.outputs.append(lambda ok: (topic, ok_payload if ok else self._storage_error(eid)))

    def _on_membership(self, node: str, obj: Any, batch: _Batch) -> None:
        if isinstance(obj, _Undecodable):
            raise _Refused(400, obj.reason)
        req = _validate(BaseIn, obj)
        if node != self._node:
            raise _Refused(404, f"this edge is node {self._node}, not {node}")
        topic = reply_topic("membership", node)

        def render(_ok: bool) -> tuple[str, dict[str, Any]]:
            devices = [self._membership_entry(d) for _, d in sorted(self._devices.items())]
            return topic, membership_result(req.event_id, self._clock(), devices)

        batch.outputs.append(render)

    # -- staging helpers ------------------------------------------------------------------------

    def _current(self, batch: _Batch, device_id: str, name: str) -> TwinRecord | None:
        staged = batch.writes.twins.get((device_id, name))
        if staged is not None:
            return staged
        dev = self._devices.get(device_id)
        return dev.twins.get(name) if dev else None

    def _stage_upstream(
        self,
        batch: _Batch,
        dev: _Device,
        what: str,
        content: Callable[[str], dict[str, Any]],
    ) -> None:
        """Queue an upstream row; ``content`` gets the row's id, used as its ``event_id`` too."""
        rec = dev.record
        row_id = str(uuid.uuid4())
        batch.writes.outbox.append(
            NewOutboxRow(
                msg_id=row_id,
                resource=f"{rec.namespace}/device/{rec.name}/{what}",
                content=content(row_id),
                created=self._clock(),
            )
        )

    def _storage_error(self, event_id: str) -> dict[str, Any]:
        reason = "the edge could not store the update; publish it again"
        return error_result(event_id, self._clock(), 500, reason)

    def _type_of(self, rec: TwinRecord) -> str:
        dev = self._devices.get(rec.device_id)
        spec = self._models.get(dev.model, {}).get(rec.name) if dev else None
        return spec.twin_type if spec else rec.attr_type

    def _twin_json(self, rec: TwinRecord, *, versions: bool = True) -> dict[str, Any]:
        return twin_json(
            rec.twin, type_=self._type_of(rec), optional=rec.optional, versions=versions
        )

    def _membership_entry(self, dev: _Device) -> dict[str, Any]:
        r = dev.record
        return membership_device(
            id=r.id,
            name=r.name,
            namespace=r.namespace,
            state=r.state,
            last_online=r.last_online,
            twin={n: self._twin_json(t) for n, t in sorted(dev.twins.items())},
        )

    # -- commit and publish -----------------------------------------------------------------------

    async def _commit(self, batch: _Batch) -> bool:
        """Write the batch (and pending ACK deletes); install it in memory once committed."""
        acked = set(self._acked)
        batch.writes.acked |= acked
        if batch.writes:
            try:
                await self.store.commit(batch.writes)
            except StoreError:
                log.exception("twin: could not commit a batch; nothing of it was applied")
                return False
            self._acked -= acked
        for install in batch.installs:
            install()
        for rec in batch.writes.twins.values():
            dev = self._devices.get(rec.device_id)
            if dev is not None:
                dev.twins[rec.name] = rec
        for drec in batch.writes.devices.values():
            dev = self._devices.get(drec.id)
            if dev is not None:
                dev.record = drec
        return True

    async def _emit(self, batch: _Batch, ok: bool) -> None:
        """Publish the batch's outputs (rendered now, from committed state), then deltas."""
        out = [r for r in (render(ok) for render in batch.outputs) if r is not None]
        if ok:
            for device_id in batch.deltas:
                delta = self._delta(device_id)
                if delta is not None:
                    out.append(delta)
            if batch.writes.outbox:
                self._kick.set()
        for topic, payload in out:
            await self._publish(topic, payload)

    def _delta(self, device_id: str) -> tuple[str, dict[str, Any]] | None:
        """``.../twin/update/delta`` if some expected value differs from its actual value."""
        dev = self._devices.get(device_id)
        if dev is None:
            return None
        delta: dict[str, str] = {}
        for name, rec in sorted(dev.twins.items()):
            e, a = rec.twin.expected, rec.twin.actual
            if e is None or e.deleted or e.value is None:
                continue
            if (
                a is not None
                and not a.deleted
                and _same_value(self._type_of(rec), e.value, a.value)
            ):
                continue
            delta[name] = e.value
        if not delta:
            return None
        twin = {n: self._twin_json(r, versions=False) for n, r in sorted(dev.twins.items())}
        payload = twin_delta(str(uuid.uuid4()), self._clock(), twin, delta)
        return f"{DEVICE_TOPIC}{dev.topic_id}/twin/update/delta", payload

    async def _publish(self, topic: str, payload: dict[str, Any]) -> None:
        msg = Message.new(
            source=NAME, group="bus", operation="publish", resource=topic, content=payload
        )
        try:
            await self._bus.send(self._eventbus, msg)
        except UnknownModule:
            if not self._warned_no_bus:
                self._warned_no_bus = True
                log.warning("no %s module: MQTT replies are not published", self._eventbus)

    # -- Devices and DeviceModels from the cloud ------------------------------------------------

    async def _watch(self, type_: str) -> None:
        """Apply committed Device / DeviceModel changes; re-list after falling behind."""
        while True:
            sub = self._subs[type_]
            async for event in sub:
                await self._on_event(type_, event)
            if not sub.overflowed:
                return  # the cache closed
            log.warning("twin fell behind on %s changes; listing them again", type_)
            self._subs[type_] = self._meta.subscribe(type_)
            await self._relist(type_)

    async def _on_event(self, type_: str, event: StoreEvent) -> None:
        batch = _Batch()
        async with self._lock:
            if type_ == "devicemodel":
                self._on_model(event.obj, deleted=event.type == "DELETED", batch=batch)
            elif event.type == "DELETED":
                device_id = _object_id(event.obj)
                if device_id in self._devices:
                    self._stage_removal(device_id, batch)
            else:
                self._on_device(event.obj, batch)
            ok = await self._commit(batch)
        await self._emit(batch, ok)

    async def _relist(self, type_: str) -> None:
        """Bring memory in line with every object of ``type_`` in the cache."""
        objs = await self._meta.list(type_)
        batch = _Batch()
        async with self._lock:
            if type_ == "devicemodel":
                self._models = {}
                for obj in objs:
                    self._on_model(obj, deleted=False, batch=batch)
            else:
                seen = set()
                for obj in objs:
                    device_id = self._on_device(obj, batch)
                    if device_id is not None:
                        seen.add(device_id)
                for device_id in list(self._devices):
                    if device_id not in seen:
                        self._stage_removal(device_id, batch)
            ok = await self._commit(batch)
        await self._emit(batch, ok)

    def _on_model(self, obj: dict[str, Any], *, deleted: bool, batch: _Batch) -> None:
        key = _object_id(obj)
        if key is None:
            return
        if deleted:
            self._models.pop(key, None)
            return
        self._models[key] = property_specs(obj)
        # Devices that arrived before their model get their desired values now.
        for dev in self._devices.values():
            if dev.model == key:
                self._stage_desired(dev, batch, loud=True)

    def _on_device(self, obj: dict[str, Any], batch: _Batch) -> str | None:
        """Stage a Device's membership and desired values; its id if it is a member."""
        device_id = _object_id(obj)
        meta = obj.get("metadata")
        spec = obj.get("spec")
        if device_id is None or not isinstance(meta, dict) or not isinstance(spec, dict):
            log.warning("ignoring a Device without metadata or spec")
            return None
        if spec.get("nodeName") != self._node:
            if device_id in self._devices:
                self._stage_removal(device_id, batch)
            return None
        namespace, name = device_id.split("/", 1)
        ref = spec.get("deviceModelRef")
        model_name = ref.get("name") if isinstance(ref, dict) else None
        dev = self._devices.get(device_id)
        if dev is None:
            dev = _Device(
                record=DeviceRecord(device_id, name, namespace),
                topic_id=_default_topic_id(namespace, name),
            )
            batch.writes.devices[device_id] = dev.record
            new = dev

            def add() -> None:
                self._devices[device_id] = new

            batch.installs.append(add)
            batch.fixed(*self._membership_update(added=[new]))
            log.info("device %s joined node %s", device_id, self._node)
        # model, generation and desired are the cloud's, not stored by the twin: set them now
        model = f"{namespace}/{model_name}" if isinstance(model_name, str) else ""
        generation = _generation_of(meta)
        desired = _desired_of(spec)
        # Every status write in the cloud re-delivers the Device; complain about its desired
        # values only when the spec changed, not on each re-delivery.
        loud = (model, generation, desired) != (dev.model, dev.generation, dev.desired)
        dev.model, dev.generation, dev.desired = model, generation, desired
        self._stage_desired(dev, batch, loud=loud)
        return device_id

    def _stage_desired(self, dev: _Device, batch: _Batch, *, loud: bool) -> None:
        """Merge the spec's desired values (and removals) into expected."""
        specs = self._models.get(dev.model)
        if specs is None:
            return  # checked once the model arrives
        now = self._clock()
        changed: dict[str, tuple[TwinRecord | None, TwinRecord]] = {}
        names = (
            set(dev.desired) | set(dev.twins) | {n for (d, n) in batch.writes.twins if d == dev.id}
        )
        for name in sorted(names):
            before = self._current(batch, dev.id, name)
            old = before.twin if before else m.Twin()
            value = dev.desired.get(name)
            spec = specs.get(name)
            if value is not None:
                if spec is None:
                    log.log(
                        logging.WARNING if loud else logging.DEBUG,
                        "%s: desired %s is not in model %s",
                        dev.id,
                        name,
                        dev.model,
                    )
                    continue
                reason = check_desired(spec, value)
                if reason:
                    log.log(
                        logging.WARNING if loud else logging.DEBUG,
                        "%s: ignoring the cloud's desired value: %s",
                        dev.id,
                        reason,
                    )
                    continue
                cand = m.cloud_desired(value, generation=dev.generation, timestamp=now)
            elif old.expected is not None and not old.expected.deleted:
                cand = m.cloud_removed(generation=dev.generation, timestamp=now)
            else:
                continue
            merged = m.merge(old.expected, cand)
            if merged is None or merged.same_as(old.expected):
                continue
            attr_type = spec.twin_type if spec else (before.attr_type if before else "")
            after = TwinRecord(
                dev.id,
                name,
                m.Twin(merged, old.actual),
                before.optional if before else None,
                attr_type,
            )
            batch.writes.twins[(dev.id, name)] = after
            e = old.expected
            if e is None or e.value != merged.value or e.deleted != merged.deleted:
                changed[name] = (before, after)
        if not changed:
            return
        twin = {n: self._twin_json(after) for n, (_, after) in changed.items()}
        self._stage_upstream(
            batch,
            dev,
            "twin/edge_updated",
            lambda row_id: twin_result(row_id, now, twin),
        )
        doc = {n: (self._twin_json(b) if b else None, twin[n]) for n, (b, _) in changed.items()}
        device_id = dev.id
        event_id = str(uuid.uuid4())

        def document(ok: bool) -> tuple[str, dict[str, Any]] | None:
            current = self._devices.get(device_id)
            if not ok or current is None:
                return None
            payload = twin_document(event_id, now, doc)
            return f"{DEVICE_TOPIC}{current.topic_id}/twin/update/document", payload

        batch.outputs.append(document)
        batch.deltas[dev.id] = None

    def _stage_removal(self, device_id: str, batch: _Batch) -> None:
        dev = self._devices[device_id]
        batch.writes.removed_devices.add(device_id)
        batch.writes.devices.pop(device_id, None)
        for key in [k for k in batch.writes.twins if k[0] == device_id]:
            del batch.writes.twins[key]

        def drop() -> None:
            self._devices.pop(device_id, None)

        batch.installs.append(drop)
        batch.fixed(*self._membership_update(removed=[dev]))
        log.info("device %s left node %s", device_id, self._node)

    def _membership_update(
        self, *, added: list[_Device] | None = None, removed: list[_Device] | None = None
    ) -> tuple[str, dict[str, Any]]:
        payload = membership_updated(
            str(uuid.uuid4()),
            self._clock(),
            [self._membership_entry(d) for d in added or []],
            [self._membership_entry(d) for d in removed or []],
        )
        return f"{NODE_TOPIC}{self._node}/membership/updated", payload

    # -- the outbox sender -------------------------------------------------------------------------

    async def _uplink(self) -> None:
        """Send committed outbox rows to edgehub while the link is up, oldest first.

        Each ``connected`` starts again from the oldest row, so everything not yet answered is
        resent on every new link.
        """
        cursor = 0
        epoch = -1
        while True:
            await self._kick.wait()
            self._kick.clear()
            while self._link_up:
                if epoch != self._epoch:
                    epoch, cursor = self._epoch, 0
                rows = await self.store.pending(after=cursor, limit=_PAGE)
                if not rows:
                    break
                for row in rows:
                    if not self._link_up or epoch != self._epoch:
                        break
                    if not await self._send_up(row):
                        break
                    cursor = row.seq
                    self.sent += 1

    async def _send_up(self, row: OutboxRow) -> bool:
        """Hand one row to edgehub; give up (``False``) if the link goes down meanwhile."""
        msg = Message(
            header=Header(msg_id=row.msg_id, timestamp=self._clock()),
            route=Route(
                source=NAME, group="twin", operation=Operation.UPDATE, resource=row.resource
            ),
            content=row.content,
        )
        if self._bus.send_nowait(self._hub, msg):
            return True
        put = asyncio.ensure_future(self._bus.send(self._hub, msg))
        down = asyncio.ensure_future(self._link_down.wait())
        try:
            await asyncio.wait({put, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            down.cancel()
            if not put.done():
                put.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await put
        return put.done() and not put.cancelled() and put.exception() is None


@dataclass(frozen=True, slots=True)
class _Undecodable:
    reason: str


def _decode(payload: Any) -> dict[str, Any] | _Undecodable:
    """The payload as a JSON object, or why not. An empty payload counts as ``{}``."""
    if payload is None:
        return _Undecodable("payload is not UTF-8 text")
    if isinstance(payload, dict):
        return payload
    if not isinstance(payload, str):
        return _Undecodable(f"payload is a {type(payload).__name__}, not JSON text")
    if not payload.strip():
        return {}
    try:
        obj = json.loads(payload)
    except ValueError as exc:
        return _Undecodable(f"payload is not JSON: {exc}")
    if not isinstance(obj, dict):
        return _Undecodable(f"payload is a JSON {type(obj).__name__}, not an object")
    return obj


def _event_id(obj: dict[str, Any] | _Undecodable) -> str:
    if isinstance(obj, dict):
        e = obj.get("event_id")
        if isinstance(e, str):
            return e
        if isinstance(e, int) and not isinstance(e, bool):
            return str(e)
    return ""


def _validate(model: type[_M], obj: dict[str, Any]) -> _M:
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise _Refused(400, first_error(exc)) from exc


def _object_id(obj: dict[str, Any]) -> str | None:
    """``{ns}/{name}`` of a namespaced object."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return None
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        return None
    ns = meta.get("namespace") or DEFAULT_NAMESPACE
    return f"{ns}/{name}"
