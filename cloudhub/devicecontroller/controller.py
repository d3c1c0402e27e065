"""The ``devicecontroller`` module: edge reports about devices -> ``Device.status``.

Where a device report enters the cloud: the hub forwards an edge's ``update`` of
``{ns}/device/{name}/twin/edge_updated`` or ``.../state/update`` here, prefixed with the node
taken from the edge's certificate. A node may write only devices whose ``spec.nodeName`` is
that node; anything else is refused with an ``error`` and logged.

Reports are applied in batches (group commit): everything that arrived within a few
milliseconds becomes one read-merge-write of the devices' statuses (one SQLite transaction in
the embedded store, which reads every device of the batch in it: no read per device before),
and each report is ACKed (``response``) only after that commit, all of a batch's ACKs in one
bus message (:class:`~cloudhub.routes.Replies`). Applying is idempotent
(:mod:`cloudhub.devicecontroller.twins`), so an edge re-sending its outbox after a lost ACK
changes nothing. A store that cannot merge in its transaction (Kubernetes) is read first and
written with ``update_statuses``, as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from cloudhub import routes
from cloudhub.devicecontroller.twins import merge_report, parse_state_report, parse_twin_report
from cloudhub.routes import Replies
from cloudhub.store.base import ObjectStore, StatusCompute, StatusMerger, StatusUpdate
from hive.bus import Bus, UnknownModule
from wire.errors import InvalidObject, InvalidResource, NotFound, StoreError, WireError
from wire.messages import Message, Operation
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
        #: reports applied (ACKed), and refused by why (:func:`refusal_kind`): metrics, tests
        self.applied = 0
        self.refused_by: Counter[str] = Counter()

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
        node_devices: list[dict[str, Any]] | None = None  # read once, for stock edges only
        for msg in batch:
            try:
                node, rest = split_node_prefix(msg.resource)
                if rest == routes.MEMBERSHIP_DETAIL or routes.bare_resource(rest) is not None:
                    if node_devices is None:
                        node_devices, _ = await self._store.list("device")
                    if rest == routes.MEMBERSHIP_DETAIL:
                        await self._membership_detail(msg, node, node_devices)
                        continue
                    rest = _qualify(node, rest, node_devices)
                    # from here on it is an ordinary report (the hub answers the original)
                    msg.route.resource = f"node/{node}/{rest}"
                ns, typ, name, suffix = _split_device(rest)
            except (WireError, InvalidObject) as exc:
                await self._refuse(msg, str(exc))
                continue
            except StoreError as exc:
                # No answer: the edge asks or reports again.
                log.warning("could not read the devices of node %s: %s", node, exc)
                continue
            if typ != "device" or suffix not in (TWIN_SUFFIX, STATE_SUFFIX):
                await self._refuse(msg, f"unsupported device resource {rest!r}")
                continue
            by_device[(ns, name)].append((node, suffix, msg))
        if not by_device:
            return

        keys = list(by_device)
        accepted: list[Message] = []
        refused: list[tuple[Message, str]] = []

        def compute(index: int, device: dict[str, Any] | None) -> dict[str, Any] | None:
            # Runs inside the store's transaction: decide, record, never block or send.
            ns, name = keys[index]
            reports = by_device[keys[index]]
            if device is None:
                refused.extend((msg, f"device {ns}/{name} not found") for _, _, msg in reports)
                return None
            bound = (device.get("spec") or {}).get("nodeName")
            status = dict(device.get("status") or {})
            changed = False
            for node, suffix, msg in reports:
                if bound != node:
                    log.warning(
                        "node %s tried to write device %s/%s (bound to %s)", node, ns, name, bound
                    )
                    refused.append((msg, f"device {ns}/{name} is not bound to node {node}"))
                    continue
                try:
                    changed |= _apply(status, suffix, msg.content)
                except InvalidObject as exc:
                    refused.append((msg, f"invalid {suffix} for {ns}/{name}: {exc}"))
                    continue
                accepted.append(msg)
            return status if changed else None

        try:
            await _merge_statuses(self._store, keys, compute)
        except StoreError as exc:
            # No answers: the reports stay in the edges' outboxes and come again.
            log.warning("could not store the statuses of %d devices: %s", len(keys), exc)
            return
        for msg, reason in refused:
            await self._refuse(msg, reason)
        if accepted:
            await self._bus.send(
                routes.HUB,
                Message.new(
                    source=self.name,
                    group=self.group,
                    operation=Operation.RESPONSE,
                    resource="",
                    content=Replies(tuple(msg.id for msg in accepted)),
                ),
            )
        self.applied += len(accepted)

    async def _membership_detail(
        self, msg: Message, node: str, devices: list[dict[str, Any]]
    ) -> None:
        """Answer a stock edge's ``membership/detail`` get with the devices bound to it."""
        mine = tuple(d for d in devices if (d.get("spec") or {}).get("nodeName") == node)
        await self._bus.send(
            routes.HUB, msg.reply(routes.MembershipDevices(mine), source=self.name)
        )

    @property
    def refused(self) -> int:
        return sum(self.refused_by.values())

    async def _refuse(self, msg: Message, reason: str) -> None:
        self.refused_by[refusal_kind(reason)] += 1
        log.warning("refused %s: %s", msg.resource, reason)
        await self._bus.send(routes.HUB, msg.error_reply(reason, source=self.name))
        self._record_refusal(msg, reason)

    def _record_refusal(self, msg: Message, reason: str) -> None:
        """A ``TwinRefused`` Event on the device, when the fleet module records events (a
        full inbox drops it: events inform, they never hold up reports)."""
        try:
            node, rest = split_node_prefix(msg.resource)
            if routes.bare_resource(rest) is not None:
                return  # a stock edge's name that matched no device here: nothing to attach to
            ns, _, name, _ = _split_device(rest)
        except (WireError, InvalidObject):
            return
        refused = routes.TwinRefused(
            ns, name, f"report from node {node} refused: {reason}", at=time.time()
        )
        try:
            self._bus.send_nowait(
                routes.FLEET,
                Message.new(
                    source=self.name,
                    group=self.group,
                    operation=Operation.INSERT,
                    resource=f"{ns}/event/{name}",
                    content=refused,
                ),
            )
        except UnknownModule:
            pass


async def _merge_statuses(
    store: ObjectStore, keys: list[tuple[str, str]], compute: StatusCompute
) -> None:
    """Read each device, ``compute`` its new status, write the changed ones.

    In one transaction where the store can; otherwise a read per device, then one
    ``update_statuses``.

    Raises:
        StoreError: nothing was written.
    """
    if isinstance(store, StatusMerger):
        await store.merge_statuses("device", keys, compute)
        return
    updates: list[StatusUpdate] = []
    for index, (ns, name) in enumerate(keys):
        try:
            device: dict[str, Any] | None = await store.get("device", ns, name)
        except NotFound:
            device = None
        status = compute(index, device)
        if device is not None and status is not None:
            updates.append(StatusUpdate("device", ns, name, status))
    if updates:
        await store.update_statuses(updates)


def refusal_kind(reason: str) -> str:
    """A refusal's reason as a metric label (a bounded set)."""
    for text, kind in (
        ("not found", "not_found"),
        ("not bound", "not_bound"),
        ("invalid", "invalid"),
        ("unsupported", "unsupported"),
    ):
        if text in reason:
            return kind
    return "other"


def _qualify(node: str, rest: str, devices: list[dict[str, Any]]) -> str:
    """A stock edge's ``device/{name}/...`` as ``{ns}/device/{name}/...``, the namespace
    found among the devices bound to ``node``.

    Raises:
        InvalidResource: no such device on the node, or an ambiguous name.
    """
    bare = routes.bare_resource(rest)
    assert bare is not None
    name, suffix = bare
    try:
        ns = resolve_bare_device(node, name, devices)
    except LookupError as exc:
        raise InvalidResource(str(exc)) from exc
    return f"{ns}/device/{name}/{suffix}"


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
    before = (status.get("state"), status.get("lastOnlineTime"), status.get("stateReason"))
    status["state"] = state.state
    # why a device is offline or unknown, as its mapper said (an edgebridge addition); empty
    # rather than absent when there is none: statuses are merged key by key
    if state.reason or status.get("stateReason"):
        status["stateReason"] = state.reason or ""
    if state.state == "online":
        ts = state.timestamp / 1000 if state.timestamp else time.time()
        status["lastOnlineTime"] = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return before != (status.get("state"), status.get("lastOnlineTime"), status.get("stateReason"))


def resolve_bare_device(node: str, name: str, devices: Iterable[Mapping[str, Any]]) -> str:
    """The namespace of the device ``name`` bound to ``node``.

    Raises:
        LookupError: no such device on the node, or several namespaces hold one (the reason).
    """
    namespaces = sorted(
        str((d.get("metadata") or {}).get("namespace") or "default")
        for d in devices
        if (d.get("metadata") or {}).get("name") == name
        and (d.get("spec") or {}).get("nodeName") == node
    )
    if not namespaces:
        raise LookupError(f"device {name} not found on node {node}")
    if len(namespaces) > 1:
        raise LookupError(
            f"device name {name} is ambiguous on node {node} (namespaces {', '.join(namespaces)})"
        )
    return namespaces[0]
