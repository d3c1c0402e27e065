"""The ``devicecontroller`` module: edge reports about devices -> ``Device.status``.

Where a device report enters the cloud: the hub forwards an edge's ``update`` of
``{ns}/device/{name}/twin/edge_updated`` or ``.../state/update`` here, prefixed with the node
taken from the edge's certificate. A node may write only devices whose ``spec.nodeName`` is
that node; anything else is refused with an ``error`` and logged.

Reports are applied in batches (group commit): everything that arrived within a few
milliseconds becomes one ``update_statuses`` call (one SQLite transaction in the embedded
store), and each report is ACKed (``response``) only after that commit. Applying is idempotent
(:mod:`cloudhub.devicecontroller.twins`), so an edge re-sending its outbox after a lost ACK
changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from cloudhub import routes
from cloudhub.devicecontroller.twins import merge_report, parse_state_report, parse_twin_report
from cloudhub.store.base import ObjectStore, StatusUpdate
from hive.bus import Bus
from wire.errors import InvalidObject, NotFound, StoreError, WireError
from wire.messages import Message
from wire.resources import split_node_prefix

log = logging.getLogger(__name__)

TWIN_SUFFIX = "twin/edge_updated"
STATE_SUFFIX = "state/update"


class DeviceController:
    """Applies device reports from edges, in batches."""

    name = routes.DEVICECONTROLLER
    group: str = "device"
    enabled = True

    def __init__(
        self,
        *,
        bus: Bus,
        store: ObjectStore,
        batch_window: float = 0.005,
        batch_max: int = 500,
    ) -> None:
        self._bus = bus
        self._store = store
        self._window = batch_window
        self._max = batch_max
        #: reports applied (ACKed) and refused, for metrics and tests
        self.applied = 0
        self.refused = 0

    async def run(self) -> None:
        while True:
            batch = [await self._bus.receive(self.name)]
            deadline = time.monotonic() + self._window
            while len(batch) < self._max:
                msg = self._bus.receive_nowait(self.name)
                if msg is None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    await asyncio.sleep(min(remaining, 0.001))
                    continue
                batch.append(msg)
            try:
                await self.process(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("devicecontroller failed on a batch of %d reports", len(batch))

    async def process(self, batch: list[Message]) -> None:
        """Apply one batch; answer every message (after the commit for accepted ones)."""
        by_device: dict[tuple[str, str], list[tuple[str, str, Message]]] = defaultdict(list)
        for msg in batch:
            try:
                node, rest = split_node_prefix(msg.resource)
                ns, typ, name, suffix = _split_device(rest)
            except WireError as exc:
                await self._refuse(msg, str(exc))
                continue
            if typ != "device" or suffix not in (TWIN_SUFFIX, STATE_SUFFIX):
                await self._refuse(msg, f"unsupported device resource {rest!r}")
                continue
            by_device[(ns, name)].append((node, suffix, msg))

        updates: list[StatusUpdate] = []
        accepted: list[Message] = []
        for (ns, name), reports in by_device.items():
            try:
                device = await self._store.get("device", ns, name)
            except NotFound:
                for _, _, msg in reports:
                    await self._refuse(msg, f"device {ns}/{name} not found")
                continue
            except StoreError as exc:
                log.warning("cannot read device %s/%s: %s; the edge will retry", ns, name, exc)
                continue
            bound = (device.get("spec") or {}).get("nodeName")
            status = dict(device.get("status") or {})
            changed = False
            for node, suffix, msg in reports:
                if bound != node:
                    log.warning(
                        "node %s tried to write device %s/%s (bound to %s)", node, ns, name, bound
                    )
                    await self._refuse(msg, f"device {ns}/{name} is not bound to node {node}")
                    continue
                try:
                    changed |= _apply(status, suffix, msg.content)
                except InvalidObject as exc:
                    await self._refuse(msg, f"invalid {suffix} for {ns}/{name}: {exc}")
                    continue
                accepted.append(msg)
            if changed:
                updates.append(StatusUpdate("device", ns, name, status))
        if updates:
            try:
                await self._store.update_statuses(updates)
            except StoreError as exc:
                # No ACKs: the reports stay in the edges' outboxes and come again.
                log.warning("could not store %d device statuses: %s", len(updates), exc)
                return
        for msg in accepted:
            await self._bus.send(routes.HUB, msg.reply("OK", source=self.name))
        self.applied += len(accepted)

    async def _refuse(self, msg: Message, reason: str) -> None:
        self.refused += 1
        log.warning("refused %s: %s", msg.resource, reason)
        await self._bus.send(routes.HUB, msg.error_reply(reason, source=self.name))


def _split_device(rest: str) -> tuple[str, str, str, str]:
    parts = rest.split("/", 3)
    if len(parts) != 4 or not all(parts):
        raise InvalidObject(f"resource {rest!r} is not ns/device/name/...")
    return parts[0], parts[1], parts[2], parts[3]


def _apply(status: dict[str, Any], suffix: str, content: Any) -> bool:
    """Merge one report into ``status`` in place; ``True`` if anything changed."""
    if suffix == TWIN_SUFFIX:
        report = parse_twin_report(content)
        twins = status.get("twins") or []
        merged = merge_report(twins, report)
        if merged == twins:
            return False
        status["twins"] = merged
        return True
    state = parse_state_report(content)
    before = (status.get("state"), status.get("lastOnlineTime"))
    status["state"] = state.state
    if state.state == "online":
        ts = state.timestamp / 1000 if state.timestamp else time.time()
        status["lastOnlineTime"] = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return before != (status.get("state"), status.get("lastOnlineTime"))
