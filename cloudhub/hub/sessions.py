"""Who is connected: every node's live session, from admission to its end.

A node has at most one live link. :meth:`Sessions.open` admits a new one (when several
cloudhub replicas share a cluster, only if this replica may serve the node: :class:`NodeOwners`),
closes the node's previous link, and tells edgecontroller and the lifecycle group the node is
online; :meth:`Sessions.close` undoes that when the link ends and counts why it ended. A
revocation closes the live link of a node whose certificate it names; losing a node's
ownership closes it too (:meth:`Sessions.drop`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Collection
from typing import Protocol

from cloudhub import routes
from cloudhub.hub.session import NodeSession
from hive.bus import Bus
from wire.messages import Group, Message, Operation

log = logging.getLogger(__name__)


class NodeOwners(Protocol):
    """Who may serve a node when several cloudhub replicas share one cluster."""

    async def claim(self, node: str) -> bool: ...

    async def release(self, node: str) -> None: ...


class Sessions:
    """The live sessions by node, their presence, and the counts of links opened and ended."""

    def __init__(self, *, bus: Bus, owners: NodeOwners | None = None) -> None:
        self._bus = bus
        self._owners = owners
        #: node -> its live session (a live view: never replaced, only changed)
        self.live: dict[str, NodeSession] = {}
        #: node -> serial of the certificate its live link authenticated with
        self._serials: dict[str, int] = {}
        #: node -> when a node no longer connected was last heard from
        self._last_seen: dict[str, float] = {}
        #: links accepted since start (GC tuning in :mod:`cloudhub.tuning`, metrics)
        self.connections_total = 0
        #: links ended since start, by why (:func:`close_kind`; metrics)
        self.closed_by_reason: Counter[str] = Counter()
        #: object messages sent and retried by links that have ended (live ones: their
        #: sessions' delivery state), so the totals only grow
        self.sent_ended = 0
        self.retries_ended = 0

    @property
    def closed_total(self) -> int:
        return sum(self.closed_by_reason.values())

    def online_nodes(self) -> Collection[str]:
        """Nodes connected now (a live view)."""
        return self.live.keys()

    def presence(self, node: str) -> routes.NodePresence:
        """Whether ``node`` is connected now and when it was last heard from."""
        session = self.live.get(node)
        if session is not None:
            return routes.NodePresence(
                online=True, last_seen=session.last_seen, connected_at=session.connected_at
            )
        return routes.NodePresence(online=False, last_seen=self._last_seen.get(node))

    async def open(self, session: NodeSession, *, serial: int, remote: object) -> bool:
        """Make ``session`` its node's live one; False (and the link closed) when another
        replica serves the node."""
        node = session.node
        if self._owners is not None and not await self._owners.claim(node):
            # Another replica serves this node; the edge's backoff brings it back, here or
            # there, once that replica lets go or its lease expires.
            log.info("node %s is served by another replica; refusing this link", node)
            await session.link.close(
                1013, "node is served by another cloudhub replica; retry later"
            )
            return False
        self.connections_total += 1
        old = self.live.get(node)
        if old is not None:
            log.info("node %s reconnected; closing its previous link", node)
            await old.close("replaced by a new connection")
        self.live[node] = session
        self._serials[node] = serial
        log.info("node %s connected from %s", node, remote)
        await self._report(node, online=True)
        return True

    async def close(self, session: NodeSession) -> None:
        """``session``'s link has ended: close it, and if it was its node's live one, the node
        is offline."""
        node = session.node
        try:
            await session.close(session.close_reason or "connection closed")
            self.sent_ended += session.downstream.sent
            self.retries_ended += session.downstream.retries
            if self.live.get(node) is session:
                del self.live[node]
                self._serials.pop(node, None)
                self._last_seen[node] = session.last_seen
                log.info("node %s disconnected: %s", node, session.close_reason)
                await self._report(node, online=False)
                if self._owners is not None:
                    await self._owners.release(node)
        finally:
            # Last, with nothing awaited after it: a link counted as closed is one whose
            # handling is over (its session no longer held here, collectable).
            self.closed_by_reason[close_kind(session.close_reason)] += 1

    async def close_all(self, reason: str) -> None:
        for session in list(self.live.values()):
            await session.close(reason)

    def revoked(self, node: str, serials: frozenset[int]) -> None:
        """Close the node's live link if it authenticated with a certificate just revoked."""
        session = self.live.get(node)
        if session is None or self._serials.get(node) not in serials:
            return
        log.warning("node %s: certificate revoked; closing its link", node)
        asyncio.get_running_loop().create_task(
            session.close("certificate revoked"), name=f"revoke:{node}"
        )

    def drop(self, node: str, reason: str) -> None:
        """Close ``node``'s link (e.g. this replica lost its ownership)."""
        session = self.live.get(node)
        if session is not None:
            log.warning("closing node %s: %s", node, reason)
            asyncio.get_running_loop().create_task(session.close(reason), name=f"drop:{node}")

    async def _report(self, node: str, *, online: bool) -> None:
        report = routes.NodeStatusReport(online=online, at=time.time())
        for dest in (routes.EDGECONTROLLER, *self._bus.modules(routes.LIFECYCLE_GROUP)):
            await self._bus.send(
                dest,
                Message.new(
                    source=routes.HUB,
                    group=Group.RESOURCE,
                    operation=Operation.UPDATE,
                    resource=routes.nodestatus_resource(node),
                    content=report,
                ),
            )


#: close reasons as metric labels: a bounded set (free text would be unbounded)
_CLOSE_KINDS = (
    ("keepalive", "keepalive_timeout"),
    ("replaced", "replaced"),
    ("revoked", "revoked"),
    ("write failed", "write_failed"),
    ("stopping", "shutdown"),
    ("ownership", "ownership_moved"),
    ("connection closed", "peer_closed"),
)


def close_kind(reason: str) -> str:
    """The metric label for a link's close reason."""
    return next((kind for text, kind in _CLOSE_KINDS if text in reason), "other")
