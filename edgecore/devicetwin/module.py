"""The ``twin`` hive module: device twins, KubeEdge's MQTT twin protocol, the durable outbox.

Where things happen:

- a mapper's MQTT request enters in :mod:`.mqtt_handlers` (eventbus forwards every message on
  the twin topics: ``operation="message"``, resource = topic, content = payload text);
- the cloud's Devices and DeviceModels enter in :mod:`.desired`, read from metamanager's
  :class:`MetaStore` (list, then watch), so the twin sees only objects that are on disk;
- both stage their changes in a :class:`~.state.Batch`; this module commits it
  (:mod:`.store`: twin rows and outbox rows in ONE transaction), then installs it in memory
  (:class:`~.state.TwinState`) and publishes what it renders (results, one document per
  changed device, deltas) through eventbus;
- upstream messages leave through :mod:`.uplink`, which also follows the cloud link
  (``connected`` / ``disconnected`` from edgehub) and maps the cloud's answers (``response`` /
  ``error`` with ``parent_msg_id``) to the outbox rows to delete.

Why one loop with group commit: a mapper's report is answered only after it is durable, and a
fsync costs milliseconds. The loop takes what is waiting in the inbox (up to ``batch_max``
messages, waiting at most ``batch_window_ms`` for more), validates every message, stages the
accepted ones, commits them in one transaction, and only then publishes. A refused message
changes nothing and is answered at once with ``code`` 400/404; if the commit fails, the
accepted ones are answered 500 and no state changes (memory is updated only from committed
writes).

Why an outbox: every accepted report and state change becomes an upstream row stored in the
same transaction and deleted only when the cloud answers it. While the link is down rows
accumulate; on each ``connected`` all of them are sent again, oldest first, with their stable
ids (the cloud applies them idempotently by version). KubeEdge drops these while offline. The
sender is its own task so the MQTT side never waits for the cloud.

Why fold the outbox while offline: a device reporting 10 times a second for a day of outage
left 864,000 rows (~0.5 GB on a gateway's flash) and as many messages to replay, hours of
them, before the cloud was current. Every ``compact_interval`` seconds while the link is down
(and once at start-up) the rows of each device and kind become one row holding, per property,
the newest value of each side by version (:func:`.uplink.merge_rows`, what the live sender
sends anyway): the outbox stays at about one row per device and kind, and the replay sends
that many messages. Only while the link is down, under the module's lock, so no row being
folded belongs to a message in flight.

Replies go to the topic form the mapper used (``{name}`` or ``{ns}/{name}``); messages the edge
starts on its own (a delta after a cloud change) go to the form that device's mapper used last,
by default ``{name}`` in namespace ``default`` and ``{ns}/{name}`` elsewhere. That choice lives
in memory only: after a restart it is the default again until the mapper speaks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from edgecore.devicetwin.desired import DesiredSync
from edgecore.devicetwin.mqtt_handlers import MqttHandlers, device_id_of, parse_topic, reply_topic
from edgecore.devicetwin.state import Batch, Device, Publish, TwinState, default_topic_id
from edgecore.devicetwin.store import TwinRecord, TwinStore
from edgecore.devicetwin.uplink import Uplink, merge_rows
from edgecore.metastore import MetaStore, Subscription
from edgecore.modules import BUS_GROUP, EVENTBUS, TWIN, TWIN_GROUP
from hive.bus import Bus, UnknownModule
from hive.local_messages import MessageIds
from wire.codec import bus_message
from wire.errors import StoreError
from wire.messages import Message, Operation
from wire.session import CONNECTED, DISCONNECTED

__all__ = ["TwinModule", "device_id_of", "parse_topic", "reply_topic"]

log = logging.getLogger(__name__)

#: seconds between looks at the inbox while a batch window is open
_GATHER_SLICE = 0.001


def _wall_ms() -> int:
    return int(time.time() * 1000)


class TwinModule:
    """Device twins for the devices bound to this node."""

    name = TWIN
    group = TWIN_GROUP

    def __init__(
        self,
        *,
        bus: Bus,
        meta: MetaStore,
        db_path: Path,
        node_name: str,
        batch_window_ms: float = 5,
        batch_max: int = 500,
        clock: Callable[[], int] = _wall_ms,
        compact_interval: float = 5.0,
        enabled: bool = True,
    ) -> None:
        """
        Args:
            bus: the process's bus; the app registers this module on it.
            meta: metamanager's open cache, where Devices and DeviceModels arrive.
            db_path: the database file (``DATA_DIR/edgecore.db``, shared with metamanager).
            node_name: this node; only Devices with ``spec.nodeName`` equal to it are members.
            batch_window_ms: longest a message waits for others to share its commit (5 ms).
            batch_max: most messages per transaction (500).
            clock: milliseconds since the epoch; injectable for tests.
            compact_interval: seconds between foldings of the outbox while offline (5).
            enabled: the runner skips a disabled module.
        """
        self.enabled = enabled
        self._bus = bus
        self._meta = meta
        self._db_path = db_path
        self._node = node_name
        self._window = batch_window_ms / 1000
        self._batch_max = max(1, batch_max)
        self._store: TwinStore | None = None
        self._state = TwinState(node=node_name, clock=clock)
        self._mqtt = MqttHandlers(self._state)
        self._desired = DesiredSync(self._state)
        self._uplink = Uplink(bus=bus, clock=clock)
        self._ids = MessageIds()
        #: one writer at a time: the MQTT loop and the Device watchers stage, commit, install
        self._lock = asyncio.Lock()
        #: outbox ids the cloud answered, deleted with the next commit
        self._acked: set[str] = set()
        self._subs: dict[str, Subscription] = {}
        self._warned_no_bus = False
        #: set once the store is open and the Devices are loaded; cleared when ``run`` ends
        self.ready = asyncio.Event()
        #: transactions committed by the MQTT loop
        self.batches = 0
        self._compact_interval = compact_interval
        #: outbox rows committed since the last folding
        self._rows_since_compaction = 0
        #: outbox rows folded away (since start, and since the link last went down)
        self.folded = 0
        self._folded_offline = 0

    # -- public read-only views (tests, metrics) ----------------------------------------------

    @property
    def store(self) -> TwinStore:
        if self._store is None:
            raise StoreError("the twin module is not running")
        return self._store

    @property
    def sent(self) -> int:
        """Upstream messages handed to edgehub."""
        return self._uplink.sent

    def members(self) -> list[str]:
        """Ids (``{ns}/{name}``) of this node's devices."""
        return sorted(self._state.devices)

    def twin(self, device_id: str) -> dict[str, TwinRecord]:
        """The committed twin of a member device (empty if unknown)."""
        dev = self._state.devices.get(device_id)
        return dict(dev.twins) if dev else {}

    # -- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Open the store, load the Devices, then serve forever."""
        self._store = await TwinStore.open(self._db_path)
        tasks: list[asyncio.Task[None]] = []
        try:
            await self._load()
            await self._compact()  # what an earlier run left while offline
            # rows left from before a restart go as soon as the link is up
            self._uplink.opened(self._store, await self._store.last_seq())
            # subscribe before listing, so nothing committed in between is missed
            self._subs["devicemodel"] = self._meta.subscribe("devicemodel")
            self._subs["device"] = self._meta.subscribe("device")
            await self._relist("devicemodel")
            await self._relist("device")
            await self._restore_kept_models()
            tasks = [
                asyncio.create_task(self._watch("devicemodel"), name="twin:models"),
                asyncio.create_task(self._watch("device"), name="twin:devices"),
                asyncio.create_task(self._uplink.run(), name="twin:uplink"),
                asyncio.create_task(self._serve(), name="twin:serve"),
                asyncio.create_task(self._compact_while_offline(), name="twin:compact"),
            ]
            self.ready.set()
            log.info(
                "twin: %d devices on node %s, %d upstream messages waiting",
                len(self._state.devices),
                self._node,
                await self._store.outbox_size(),
            )
            # All five run forever; if one fails, run fails too and the runner restarts the
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
            self._state.clear()

    async def _load(self) -> None:
        devices, twins = await self.store.load()
        self._state.devices = {
            d.id: Device(record=d, topic_id=default_topic_id(d.namespace, d.name))
            for d in devices.values()
        }
        for t in twins:
            dev = self._state.devices.get(t.device_id)
            if dev is not None:
                dev.twins[t.name] = t

    # -- the MQTT / edgehub loop --------------------------------------------------------------

    async def _serve(self) -> None:
        while True:
            batch = await self._gather()
            await self.process(batch)

    async def _gather(self) -> list[Message]:
        """The first message, then what else is waiting or arrives within the batch window.

        Why sleep through the window rather than await each message: under load reports come
        one at a time, and a wake-up per message (a timer and a future each) cost about as
        much as handling it. The inbox holds them meanwhile; the sleep is cut in slices so a
        full batch still ends the wait early.
        """
        bus, name, limit = self._bus, self.name, self._batch_max
        batch = [await bus.receive(name)]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._window
        while True:
            while len(batch) < limit and (msg := bus.receive_nowait(name)) is not None:
                batch.append(msg)
            remaining = deadline - loop.time()
            if len(batch) >= limit or remaining <= 0:
                return batch
            await asyncio.sleep(min(remaining, _GATHER_SLICE))

    async def process(self, messages: list[Message]) -> None:
        """Handle one batch: validate and stage, commit once, then publish."""
        batch = Batch()
        async with self._lock:
            for msg in messages:
                self._dispatch(msg, batch)
            ok = await self._commit(batch)
            if ok:
                self.batches += 1
        await self._emit(batch, ok)

    def _dispatch(self, msg: Message, batch: Batch) -> None:
        op = msg.operation
        if op == "message":
            self._mqtt.handle(msg.resource, msg.content, batch)
        elif op == Operation.RESPONSE:
            self._acked.update(self._uplink.answered(msg.parent_id))
        elif op == Operation.ERROR:
            log.warning(
                "cloud refused upstream %s (%s): %s; dropping it",
                msg.parent_id,
                msg.resource,
                msg.content,
            )
            self._acked.update(self._uplink.answered(msg.parent_id))
        elif op == CONNECTED:
            if self._folded_offline:
                log.info(
                    "twin: cloud link up; %d upstream rows were folded while it was down",
                    self._folded_offline,
                )
                self._folded_offline = 0
            self._uplink.connected()
        elif op == DISCONNECTED:
            self._uplink.disconnected()
        else:
            log.debug("twin ignores %s %s from %s", op, msg.resource, msg.route.source)

    # -- the outbox while offline --------------------------------------------------------------

    async def _compact_while_offline(self) -> None:
        """Forever: every ``compact_interval`` seconds, fold the outbox if the link is down and
        rows were added since the last time."""
        while True:
            await asyncio.sleep(self._compact_interval)
            if self._uplink.link_up or not self._rows_since_compaction:
                continue
            async with self._lock:  # serialised with commits and with ``connected``
                if not self._uplink.link_up:
                    await self._compact()

    async def _compact(self) -> None:
        """Fold the outbox now (the caller made sure the link is down)."""
        try:
            result = await self.store.compact_outbox(merge_rows)
        except StoreError:
            log.exception("twin: could not fold the outbox; it stays as it is")
            return
        self._rows_since_compaction = 0
        self._uplink.compacted(result.last_seq)
        folded = result.rows_before - result.rows_after
        if folded:
            self.folded += folded
            self._folded_offline += folded
            log.debug(
                "twin: folded %d upstream rows into %d", result.rows_before, result.rows_after
            )

    # -- Devices and DeviceModels from the cloud ------------------------------------------------

    async def _watch(self, type_: str) -> None:
        """Apply committed Device / DeviceModel changes; re-list after falling behind."""
        while True:
            sub = self._subs[type_]
            async for event in sub:
                batch = Batch()
                async with self._lock:
                    self._desired.on_event(type_, event, batch)
                    ok = await self._commit(batch)
                await self._emit(batch, ok)
            if not sub.overflowed:
                return  # the cache closed
            log.warning("twin fell behind on %s changes; listing them again", type_)
            self._subs[type_] = self._meta.subscribe(type_)
            await self._relist(type_)

    async def _restore_kept_models(self) -> None:
        """DeviceModels kept before a restart that are still missing: used again."""
        kept = await self.store.kept_models()
        if not kept:
            return
        batch = Batch()
        async with self._lock:
            self._desired.restore(kept, batch)
            ok = await self._commit(batch)
        await self._emit(batch, ok)

    async def _relist(self, type_: str) -> None:
        """Bring memory in line with every object of ``type_`` in the cache."""
        objs = await self._meta.list(type_)
        batch = Batch()
        async with self._lock:
            self._desired.relist(type_, objs, batch)
            ok = await self._commit(batch)
        await self._emit(batch, ok)

    # -- commit and publish -----------------------------------------------------------------------

    async def _commit(self, batch: Batch) -> bool:
        """Write the batch (and pending ACK deletes); install it in memory once committed."""
        acked = set(self._acked)
        batch.writes.acked |= acked
        last_seq = 0
        if batch.writes:
            try:
                last_seq = await self.store.commit(batch.writes)
            except StoreError:
                log.exception("twin: could not commit a batch; nothing of it was applied")
                return False
            self._acked -= acked
        self._state.install(batch)
        self._rows_since_compaction += len(batch.writes.outbox)
        self._uplink.committed(batch.writes.outbox, last_seq)
        return True

    async def _emit(self, batch: Batch, ok: bool) -> None:
        """Publish the batch's outputs (rendered now, from committed state), then one document
        per changed device, then deltas."""
        out: list[Publish] = [r for r in (render(ok) for render in batch.outputs) if r is not None]
        if ok:
            out += self._state.documents(batch)
            for device_id in batch.deltas:
                delta = self._state.delta(device_id)
                if delta is not None:
                    out.append(delta)
        if out:
            await self._publish(out)

    async def _publish(self, out: list[Publish]) -> None:
        """Hand eventbus one batch's publishes as one message (in order)."""
        msg = bus_message(
            source=TWIN,
            group=BUS_GROUP,
            operation="publish_batch",
            resource="",
            content=out,
            msg_id=self._ids(),
        )
        try:
            if not self._bus.send_nowait(EVENTBUS, msg):
                await self._bus.send(EVENTBUS, msg)
        except UnknownModule:
            if not self._warned_no_bus:
                self._warned_no_bus = True
                log.warning("no %s module: MQTT replies are not published", EVENTBUS)
