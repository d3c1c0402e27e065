"""The ``edgecontroller`` module: from the source of truth to per-node messages, and back.

Downstream: one watcher task per resource type lists the store, feeds the
:class:`~cloudhub.edgecontroller.binding.BindingIndex`, then watches from the list's
resourceVersion (kopf-style: list, then watch from the list's version, keep the newest seen,
re-list on 410 Gone, back off on errors). Each change the index reports becomes one ``Fanout``
for the hub, whatever the number of nodes concerned. The changes of the events a watch has
ready at once (a commit of many objects) travel in one bus message (``Fanouts``): a message
each was a tenth of a pod update's cost in the controller and the hub.

The hub asks for a node's ``desired`` set when the node connects. Those queries are answered
only after every type has been listed once: answering from a half-filled index would tell a
reconnecting edge to delete what it legitimately has.

Upstream: node presence reports become the Node's ``Ready`` condition; queries from an edge
are answered only for objects bound to that node (anything else is refused and logged).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cloudhub import routes
from cloudhub.auth.nodeauth import check_upstream_write
from cloudhub.edgecontroller.binding import BindingIndex, Change
from cloudhub.edgecontroller.kubelet import KubeletEndpoint, advertise_kubelet
from cloudhub.store.base import ObjectStore, StatusMerger, StatusUpdate, WatchEvent
from cloudhub.store.follow import follow
from hive.bus import Bus
from wire.codec import bus_message
from wire.errors import Forbidden, NotFound, StoreError, WireError
from wire.messages import Group, Message, Operation
from wire.resources import ResourceKey, key_of, split_node_prefix

log = logging.getLogger(__name__)

#: presence reports written per transaction (the store is locked while one is written)
PRESENCE_BATCH = 500
#: changes sent to the hub in one message at most (a re-list of thousands is split)
FANOUT_BATCH = 500
#: the types that travel to edges, listed in an order that lets references resolve early
WATCHED_TYPES = ("node", "configmap", "secret", "devicemodel", "device", "pod")


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ready_condition(online: bool, at: float) -> dict[str, Any]:
    """The Node ``Ready`` condition edgebridge maintains from link presence."""
    stamp = _rfc3339(at)
    return {
        "type": "Ready",
        "status": "True" if online else "Unknown",
        "reason": "EdgeConnected" if online else "EdgeDisconnected",
        "message": "edgecore is connected to cloudhub"
        if online
        else "edgecore is not connected to cloudhub",
        "lastHeartbeatTime": stamp,
        "lastTransitionTime": stamp,
    }


#: labels an edge may set on its own Node (Kubernetes' well-known ones)
REPORTED_LABELS = frozenset({"kubernetes.io/os", "kubernetes.io/arch"})


class ReportedStatus(BaseModel):
    """The part of NodeStatus an edge reports about itself."""

    model_config = ConfigDict(extra="ignore")
    capacity: dict[str, str] | None = None
    allocatable: dict[str, str] | None = None
    addresses: list[dict[str, str]] | None = None
    nodeInfo: dict[str, str] | None = None


class NodeFacts(BaseModel):
    model_config = ConfigDict(extra="ignore")
    status: ReportedStatus
    labels: dict[str, str] = Field(default_factory=dict)


class PodStatusReport(BaseModel):
    """What edged sends as ``update {ns}/podstatus/{name}``."""

    model_config = ConfigDict(extra="ignore")
    #: the pod the status is about (a pod deleted and re-created has another uid)
    uid: str = ""
    status: dict[str, Any]


def _pod_status_target(rest: str) -> tuple[str, str] | None:
    """``(namespace, name)`` of an edge resource ``{ns}/podstatus/{name}``, else None."""
    parts = rest.split("/")
    if len(parts) == 3 and parts[1] == "podstatus" and parts[0] and parts[2]:
        return parts[0], parts[2]
    return None


class EdgeController:
    """Owns the binding index and the store watchers."""

    name = routes.EDGECONTROLLER
    group: str = Group.RESOURCE
    enabled = True

    def __init__(
        self,
        *,
        bus: Bus,
        store: ObjectStore,
        mark_offline_on_start: bool = True,
        write_offline: bool = True,
    ) -> None:
        self._bus = bus
        #: Kubernetes mode: written into each Node's status as its kubelet (logs, exec); set
        #: once the HTTPS port is bound
        self.kubelet: KubeletEndpoint | None = None
        self._store = store
        self.index = BindingIndex()
        self._mark_offline = mark_offline_on_start
        self._write_offline = write_offline
        self.synced = asyncio.Event()
        self._listed: set[str] = set()
        self._deferred: list[Message] = []
        #: latest presence report per node, written by one task so a connect storm neither
        #: blocks queries nor writes a flapping node's status more than once per round
        self._presence: dict[str, routes.NodeStatusReport] = {}
        self._presence_ready = asyncio.Event()
        self._fanouts = itertools.count()
        #: changes not yet sent to the hub, in order (see :meth:`_flush`)
        self._staged: list[routes.Fanout] = []

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for typ in WATCHED_TYPES:
                tg.create_task(self._watch_forever(typ), name=f"watch:{typ}")
            tg.create_task(self._serve_inbox(), name="edgecontroller:inbox")
            tg.create_task(self._write_presence(), name="edgecontroller:presence")

    # -- downstream ----------------------------------------------------------------------------

    async def _watch_forever(self, typ: str) -> None:
        async def listed(objects: list[dict[str, Any]]) -> None:
            # What is still staged from an ended watch goes out with the re-list's changes.
            await self._relist(typ, objects)

        async def changed(event: WatchEvent) -> None:
            obj = event.object
            rkey = key_of(obj)
            key = str(rkey)
            if event.type == "DELETED":
                self._stage(self.index.delete(obj, rkey=rkey, key=key))
            else:
                changes = self.index.upsert(obj, rkey=rkey, key=key)
                if changes:
                    self._stage(changes, key, event.body)
            if not event.more or len(self._staged) >= FANOUT_BATCH:
                await self._flush()

        # flushed on a failure: not held back while this watch waits to retry
        await follow(
            self._store, typ, listed=listed, changed=changed, failed=self._flush, who=self.name
        )

    async def _relist(self, typ: str, objects: list[dict[str, Any]]) -> None:
        seen: set[str] = set()
        for obj in objects:
            rkey = key_of(obj)
            key = str(rkey)
            seen.add(key)
            self._stage(self.index.upsert(obj, rkey=rkey, key=key))
            if len(self._staged) >= FANOUT_BATCH:
                await self._flush()
        # What the index holds of the type and the list lacks was deleted while no watch ran
        # (during a 410, a restart of the store): the index's keys are the ones the watches
        # and lists brought, so no second set of them is kept here.
        for key in self.index.keys(typ) - seen:
            gone = self.index.get(key)
            if gone is not None:
                self._stage(self.index.delete(gone))
        await self._flush()
        if typ not in self._listed:
            self._listed.add(typ)
            log.info("listed %d %s objects", len(objects), typ)
            if typ == "node" and self._mark_offline:
                await self._mark_all_offline(objects)
            if self._listed.issuperset(WATCHED_TYPES):
                self.synced.set()
                deferred, self._deferred = self._deferred, []
                for msg in deferred:
                    await self._handle(msg)

    def _stage(self, changes: list[Change], key_of_body: str = "", body: str | None = None) -> None:
        """One :class:`routes.Fanout` per (key, version) changed, kept for :meth:`_flush`.

        ``body`` is the JSON text of the object under ``key_of_body`` as the store holds it;
        it rides along with that object's update so the hub need not encode it again (the
        other keys an upsert touches, references of a pod, are encoded by the hub).
        """
        if len(changes) == 1:  # the common case: one object, one node
            ch = changes[0]
            rv = ch.resource_version
            text = body if ch.key == key_of_body and rv is not None else None
            self._staged.append(routes.Fanout(ch.key, rv, (ch.node,), ch.obj, text))
            return
        groups: dict[tuple[str, str | None], list[Change]] = defaultdict(list)
        for ch in changes:
            groups[(ch.key, ch.resource_version)].append(ch)
        for (key, rv), chs in groups.items():
            text = body if key == key_of_body and rv is not None else None
            self._staged.append(
                routes.Fanout(key, rv, tuple(c.node for c in chs), chs[0].obj, text)
            )

    async def _flush(self) -> None:
        """Send the staged changes to the hub, in order, as one message.

        Everything else this module sends the hub goes after a flush, so the hub sees it in
        the order it happened (a node's ``desired`` answer after the changes it includes).
        """
        if not self._staged:
            return
        changes, self._staged = tuple(self._staged), []
        # One per watch event at a low rate: assembled without validating three models
        # (the values are typed here). Nothing answers or refers to a fan-out by its id:
        # a counter, not a uuid4 (an OS random read per message).
        msg = bus_message(
            source=self.name,
            group=Group.RESOURCE,
            operation=Operation.UPDATE,
            resource="",
            content=routes.Fanouts(changes),
            msg_id=f"{self.name}-{next(self._fanouts)}",
        )
        if not self._bus.send_nowait(routes.HUB, msg):  # full: wait for room, in order
            await self._bus.send(routes.HUB, msg)

    async def _mark_all_offline(self, nodes: list[dict[str, Any]]) -> None:
        """Nobody is connected to a cloudhub that just started: no node is Ready yet."""
        now = time.time()
        ready = [
            node["metadata"]["name"]
            for node in nodes
            if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (node.get("status") or {}).get("conditions") or []
            )
        ]
        for start in range(0, len(ready), PRESENCE_BATCH):
            chunk = ready[start : start + PRESENCE_BATCH]
            await self._set_ready_many(
                {name: routes.NodeStatusReport(online=False, at=now) for name in chunk}
            )

    # -- inbox: queries and upstream -----------------------------------------------------------

    async def _serve_inbox(self) -> None:
        while True:
            msg = await self._bus.receive(self.name)
            if not self.synced.is_set() and msg.operation == Operation.QUERY:
                self._deferred.append(msg)
                continue
            try:
                await self._handle(msg)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("edgecontroller failed on %s %s", msg.operation, msg.resource)

    async def _handle(self, msg: Message) -> None:
        await self._flush()
        try:
            node, rest = split_node_prefix(msg.resource)
        except WireError as exc:
            await self._bus.send(routes.HUB, msg.error_reply(str(exc), source=self.name))
            return
        if msg.operation == Operation.QUERY and rest == routes.DESIRED:
            await self._bus.send(routes.HUB, msg.reply(self.index.desired(node), source=self.name))
        elif msg.operation == Operation.QUERY:
            await self._bus.send(routes.HUB, self._answer_query(node, rest, msg))
        elif isinstance(msg.content, routes.NodeStatusReport):
            if msg.content.online or self._write_offline:
                self._presence[node] = msg.content
                self._presence_ready.set()
        elif msg.operation == Operation.UPDATE and rest == f"null/{routes.NODESTATUS}/{node}":
            await self._bus.send(routes.HUB, await self._node_facts(node, msg))
        elif msg.operation == Operation.UPDATE and _pod_status_target(rest) is not None:
            await self._bus.send(routes.HUB, await self._pod_status(node, rest, msg))
        elif msg.route.source == routes.HUB:
            # an edge's write to something that is not its own: refused and logged
            log.warning("node %s may not %s %s", node, msg.operation, rest)
            await self._bus.send(
                routes.HUB,
                msg.error_reply(f"node {node} may not {msg.operation} {rest}", source=self.name),
            )
        else:
            log.warning("edgecontroller: unexpected %s %s", msg.operation, msg.resource)

    def _answer_query(self, node: str, resource: str, msg: Message) -> Message:
        try:
            key = str(ResourceKey.parse(resource))
        except WireError as exc:
            return msg.error_reply(str(exc), source=self.name)
        obj = self.index.get(key)
        if obj is None or node not in self.index.nodes_for(key):
            # Same answer for "absent" and "not yours": a node learns nothing about others.
            log.warning("node %s queried %s, which is not bound to it", node, key)
            return msg.error_reply(f"{key} is not bound to node {node}", source=self.name)
        return msg.reply(obj, source=self.name)

    async def _node_facts(self, node: str, msg: Message) -> Message:
        """Store what an edge reports about itself: capacity, nodeInfo, addresses, os/arch."""
        try:
            facts = NodeFacts.model_validate(msg.content)
        except ValidationError as exc:
            return msg.error_reply(
                f"invalid node status: {exc.errors()[0]['msg']}", source=self.name
            )
        try:
            # The Node as the watch last brought it: a periodic report that changes nothing
            # (the usual one) costs no request at all.
            current = self.index.get(f"null/node/{node}") or await self._store.get(
                "node", None, node
            )
            labels = dict((current.get("metadata") or {}).get("labels") or {})
            wanted = {k: v for k, v in facts.labels.items() if k in REPORTED_LABELS}
            if any(labels.get(k) != v for k, v in wanted.items()):
                updated = {k: v for k, v in current.items() if k != "status"}
                updated["metadata"] = dict(current["metadata"]) | {"labels": labels | wanted}
                await self._store.apply([updated])
            status = facts.status.model_dump(exclude_none=True)
            if self.kubelet is not None:
                status = advertise_kubelet(status, self.kubelet)
            held = current.get("status") or {}
            if any(held.get(k) != v for k, v in status.items()):
                await self._store.update_status("node", None, node, status)
        except NotFound:
            return msg.error_reply(f"node {node} has no Node object", source=self.name)
        except StoreError as exc:
            return msg.error_reply(f"could not store node status: {exc}", source=self.name)
        return msg.reply("OK", source=self.name)

    async def _pod_status(self, node: str, rest: str, msg: Message) -> Message:
        """Store the status an edge's edged reports for a pod bound to that edge.

        Status-only write (no generation bump); the store's watch event goes out as for any
        status write. A pod that is not bound to the node, or a report for an earlier pod of
        the same name (another uid), is refused.
        """
        target = _pod_status_target(rest)
        assert target is not None
        ns, name = target
        try:
            check_upstream_write(node, rest, self.index.nodes_for)
            report = PodStatusReport.model_validate(msg.content)
        except Forbidden as exc:
            log.warning("%s", exc)
            return msg.error_reply(str(exc), source=self.name)
        except ValidationError as exc:
            return msg.error_reply(
                f"invalid pod status: {exc.errors()[0]['msg']}", source=self.name
            )
        current = self.index.get(f"{ns}/pod/{name}")
        uid = ((current or {}).get("metadata") or {}).get("uid")
        if report.uid and uid and report.uid != uid:
            return msg.error_reply(
                f"pod {ns}/{name} is now uid {uid}, not {report.uid}", source=self.name
            )
        try:
            await self._store.update_status("pod", ns, name, report.status)
        except NotFound:
            return msg.error_reply(f"pod {ns}/{name} not found", source=self.name)
        except StoreError as exc:
            return msg.error_reply(f"could not store pod status: {exc}", source=self.name)
        return msg.reply("OK", source=self.name)

    async def _write_presence(self) -> None:
        # After the start-up sweep that marks every node offline, or it would undo these.
        await self.synced.wait()
        while True:
            await self._presence_ready.wait()
            self._presence_ready.clear()
            while self._presence:
                # Everything reported meanwhile goes in one write: after a connect storm of
                # 10,000 nodes that is a few dozen commits instead of 10,000 (each an fsync
                # and a read before it), which otherwise went on long after the storm.
                batch: dict[str, routes.NodeStatusReport] = {}
                while self._presence and len(batch) < PRESENCE_BATCH:
                    node, report = self._presence.popitem()
                    batch[node] = report
                try:
                    await self._set_ready_many(batch)
                except StoreError as exc:
                    log.warning("could not record presence of %d node(s): %s", len(batch), exc)

    async def _set_ready_many(self, reports: dict[str, routes.NodeStatusReport]) -> None:
        """Set each node's ``Ready`` condition, in one transaction where the store has them."""
        nodes = list(reports)

        def compute(index: int, current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is None:
                return None
            report = reports[nodes[index]]
            return {"conditions": _with_ready(current, report.online, report.at)}

        store = self._store
        if isinstance(store, StatusMerger):
            results = await store.merge_statuses("node", [(None, n) for n in nodes], compute)
        else:
            updates: list[StatusUpdate] = []
            results = []
            for index, node in enumerate(nodes):
                try:
                    current: dict[str, Any] | None = await store.get("node", None, node)
                except NotFound:
                    current = None
                results.append(current)
                status = compute(index, current)
                if status is not None:
                    updates.append(StatusUpdate("node", None, node, status))
            if updates:
                await store.update_statuses(updates)
        for node, current in zip(nodes, results, strict=True):
            if current is None:
                log.info("node %s has no Node object; presence not recorded", node)
            elif log.isEnabledFor(logging.DEBUG):
                log.debug("node %s Ready=%s", node, reports[node].online)


def _with_ready(node: dict[str, Any], online: bool, at: float) -> list[dict[str, Any]]:
    """The node's conditions with ``Ready`` replaced by one for ``online`` at ``at``."""
    status = node.get("status") or {}
    conds = [c for c in status.get("conditions") or [] if c.get("type") != "Ready"]
    conds.append(ready_condition(online, at))
    return conds
