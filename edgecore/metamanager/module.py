"""The metamanager hive module: cloud messages in, SQLite rows out, ACKs back.

Why ACK only after the commit: the cloud (see :mod:`wire.delivery`) forgets about a message
once it is ACKed, and on reconnect it trusts the edge's inventory. An ACK for data that is not
yet on disk would lose that object for good after a power cut.

Why group commit: every commit costs one fsync (``synchronous=FULL``). Messages arrive in bursts
(a reconnect sends hundreds at once), so the loop takes the first message, gathers whatever else
is already waiting (and what arrives within ``batch_window_ms``), up to ``batch_max``, and
commits them together. A lone message waits at most ``batch_window_ms`` longer than it would
alone; a burst of a thousand costs two fsyncs instead of a thousand.

Each message is validated before it joins a batch, so one bad message gets an ``error`` reply
and the others in its batch are stored and ACKed. If the commit itself fails, no message of
that batch is ACKed: the cloud resends them after its ACK timeout.

KubeEdge's metamanager also forwards objects to edged and devicetwin; here those modules
subscribe to the store (:meth:`MetaStore.subscribe`) and so see only committed data.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from edgecore.config import MetaSettings
from edgecore.metastore import Change, MetaStore
from edgecore.modules import EDGEHUB, META_GROUP, METAMANAGER
from hive.bus import Bus
from wire.errors import InvalidResource, StoreError
from wire.messages import Message, Operation
from wire.resources import ResourceKey, resource_version_of

log = logging.getLogger(__name__)


#: operations that write the object in ``content`` under ``route.resource``. KubeEdge's patch
#: carries the whole patched object, so it is stored as a replacement.
_UPSERTS = frozenset({Operation.INSERT, Operation.UPDATE, Operation.PATCH})
#: answers to something; answering them again could start an endless exchange
_ANSWERS = frozenset({Operation.RESPONSE, Operation.ERROR})


@dataclass(slots=True)
class _Write:
    message: Message
    change: Change


def _now_ms() -> int:
    return int(time.time() * 1000)


class MetaManager:
    """Applies cloud messages to the :class:`MetaStore` and ACKs them once committed."""

    name = METAMANAGER
    group = META_GROUP

    def __init__(
        self,
        *,
        bus: Bus,
        store: MetaStore,
        settings: MetaSettings,
        enabled: bool = True,
    ) -> None:
        """
        Args:
            bus: the process's bus; the app registers this module on it.
            store: the opened cache.
            settings: batching limits (``batch_max``, ``batch_window_ms``).
            enabled: the runner skips a disabled module.
        """
        self.enabled = enabled
        self._bus = bus
        self._store = store
        self._settings = settings
        #: batches committed, and messages stored by them (metrics and tests)
        self.batches = 0
        self.stored = 0

    async def run(self) -> None:
        """Receive, batch, commit, reply; forever."""
        while True:
            batch = await self._gather()
            await self.process(batch)

    async def _gather(self) -> list[Message]:
        """The first message, then what else is waiting or arrives within the batch window."""
        first = await self._bus.receive(self.name)
        batch = [first]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.batch_window_ms / 1000
        limit = max(1, self._settings.batch_max)
        while len(batch) < limit:
            msg = self._bus.receive_nowait(self.name)
            if msg is None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    # a cancelled Queue.get loses nothing, so a timeout here is safe
                    async with asyncio.timeout(remaining):
                        msg = await self._bus.receive(self.name)
                except TimeoutError:
                    break
            batch.append(msg)
        return batch

    async def process(self, batch: list[Message]) -> None:
        """Handle one batch: validate, commit the writes together, then send every reply."""
        writes: list[_Write] = []
        replies: list[Message] = []
        queries: list[tuple[Message, str]] = []
        for msg in batch:
            op = msg.operation
            if op in _ANSWERS:
                log.debug("ignoring %s for %s from %s", op, msg.resource, msg.route.source)
                continue
            try:
                key = str(ResourceKey.parse(msg.resource))
            except InvalidResource as exc:
                replies.append(self._error(msg, str(exc)))
                continue
            if op == Operation.QUERY:
                queries.append((msg, key))
            elif op in _UPSERTS:
                if not isinstance(msg.content, dict):
                    kind = type(msg.content).__name__
                    replies.append(
                        self._error(msg, f"{op} {key}: content is a {kind}, not an object")
                    )
                    continue
                rv = msg.header.resourceversion or resource_version_of(msg.content)
                writes.append(_Write(msg, Change(key, rv, msg.content)))
            elif op == Operation.DELETE:
                if msg.content is not None and not isinstance(msg.content, dict):
                    kind = type(msg.content).__name__
                    replies.append(self._error(msg, f"delete {key}: content is a {kind}"))
                    continue
                writes.append(_Write(msg, Change(key, None, None)))
            else:
                replies.append(
                    self._error(msg, f"operation {op!r} is not handled by {METAMANAGER}")
                )

        if writes:
            try:
                await self._store.apply([w.change for w in writes])
            except StoreError:
                # no ACKs: the cloud resends after its ACK timeout
                log.exception("could not store %d cloud messages; not acknowledging", len(writes))
            else:
                self.batches += 1
                self.stored += len(writes)
                now = _now_ms()
                replies.extend(
                    w.message.reply("OK", source=METAMANAGER, timestamp_ms=now) for w in writes
                )

        for msg, key in queries:
            replies.append(await self._answer_query(msg, key))

        for reply in replies:
            await self._deliver(reply)

    async def _answer_query(self, msg: Message, key: str) -> Message:
        try:
            obj: dict[str, Any] | None = await self._store.get(key)
        except Exception as exc:  # the store is down: say so rather than leave the asker waiting
            log.warning("query %s failed: %s", key, exc)
            return self._error(msg, f"query {key} failed: {exc}")
        if obj is None:
            return self._error(msg, "not found")
        return msg.reply(obj, source=METAMANAGER, timestamp_ms=_now_ms())

    def _error(self, msg: Message, reason: str) -> Message:
        log.warning(
            "refusing %s %s from %s: %s", msg.operation, msg.resource, msg.route.source, reason
        )
        return msg.error_reply(reason, source=METAMANAGER, timestamp_ms=_now_ms())

    async def _deliver(self, reply: Message) -> None:
        """To a local ``send_sync`` caller waiting for it, else to the hub (for the cloud)."""
        if not self._bus.respond(reply):
            await self._bus.send(EDGEHUB, reply)
