"""What a kubelet writes for its node, written by cloudhub for each edge it owns.

Kubernetes decides node health from two things a kubelet keeps fresh: the node's Lease in
``kube-node-lease`` (renewed every ~10 s with a 40 s duration) and the Node's ``status`` (the
``Ready`` condition, addresses, capacity, node info). Edge nodes have no kubelet, so the
cloudhub replica that owns an edge's connection writes both on its behalf while the edge is
connected. When the edge goes away the owner stops; the lease runs out and Kubernetes' own
node-lifecycle controller marks the node ``Unknown`` and taints it, exactly as for a kubelet
that died. Nothing edgebridge-specific has to interpret edge health.

Cost, per connected idle node: one small JSON patch per lease renewal (no read, the answer not
decoded) and one status PATCH whenever something changed or the status is due a
refresh (kubelets refresh it every 5 minutes when unchanged). That is what a kubelet costs.

Writes:

- The lease via :class:`~cloudhub.k8s.leases.LeaseClient`: renewed by a patch that tests
  the holder; created (or taken back) by a resourceVersion-guarded write when that fails,
  raising if it still cannot be written.
- The status via a JSON merge patch of ``nodes/{node}/status``. Merge patches replace lists
  whole, so the patch carries every condition: the ones read from the Node (kept as they are)
  plus our ``Ready``. ``lastTransitionTime`` moves only when ``Ready`` changes.

The pure halves (:func:`node_status_patch`, :func:`ready_condition`) are separate from the I/O
so they can be tested without a server.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cloudhub.k8s.api import NODES, KubeApi
from cloudhub.k8s.leases import Clock, LeaseClient, utc_now
from wire.errors import Conflict, NotFound

log = logging.getLogger(__name__)

#: where Kubernetes keeps node heartbeat leases
NODE_LEASE_NAMESPACE = "kube-node-lease"
#: the kubelet's default node lease duration, seconds; renew every quarter of it
DEFAULT_NODE_LEASE_SECONDS = 40
_ATTEMPTS = 4
#: the NodeStatus fields an edge reports about itself (the rest are the cloud's business)
REPORTED_FIELDS = ("capacity", "allocatable", "addresses", "nodeInfo")


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def ready_condition(
    *, ready: bool, now: datetime, previous: dict[str, Any] | None
) -> dict[str, Any]:
    """The ``Ready`` condition; its transition time stays put while its status does."""
    status = "True" if ready else "Unknown"
    transition = _stamp(now)
    if previous is not None and previous.get("status") == status:
        transition = str(previous.get("lastTransitionTime") or transition)
    return {
        "type": "Ready",
        "status": status,
        "reason": "EdgeConnected" if ready else "EdgeDisconnected",
        "message": "edgecore is connected to cloudhub"
        if ready
        else "edgecore is not connected to cloudhub",
        "lastHeartbeatTime": _stamp(now),
        "lastTransitionTime": transition,
    }


def node_status_patch(
    *,
    ready: bool,
    now: datetime,
    conditions: list[dict[str, Any]],
    reported: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A merge patch for ``nodes/{node}/status``.

    Args:
        ready: whether the edge is connected.
        now: the heartbeat time.
        conditions: the Node's current conditions (kept, except ``Ready`` which is replaced).
        reported: what the edge reported about itself (``capacity``, ``allocatable``,
            ``addresses``, ``nodeInfo``, as ``edgecore.nodestatus`` sends them); other keys
            are ignored, and None leaves those fields as they are.
    """
    previous = next((c for c in conditions if c.get("type") == "Ready"), None)
    kept = [copy.deepcopy(c) for c in conditions if c.get("type") != "Ready"]
    status: dict[str, Any] = {
        "conditions": [*kept, ready_condition(ready=ready, now=now, previous=previous)]
    }
    for field in REPORTED_FIELDS:
        if reported is not None and reported.get(field) is not None:
            status[field] = copy.deepcopy(reported[field])
    return {"status": status}


class NodeHeartbeat:
    """Renews node leases and reports Node status for the edges this replica owns."""

    def __init__(
        self,
        api: KubeApi,
        *,
        lease_duration_s: int = DEFAULT_NODE_LEASE_SECONDS,
        clock: Clock = utc_now,
    ) -> None:
        """Args:
        api: the cluster connection (not closed here).
        lease_duration_s: ``leaseDurationSeconds`` of node leases (40, as kubelets).
        clock: current UTC time.
        """
        self._api = api
        self._duration = lease_duration_s
        self._clock = clock
        self._leases = LeaseClient(api, namespace=NODE_LEASE_NAMESPACE, clock=clock)
        #: the Node's conditions as last read or written, per node
        self._conditions: dict[str, list[dict[str, Any]]] = {}

    @property
    def renew_interval(self) -> float:
        """How often to call :meth:`renew_lease`, seconds (a quarter of the duration)."""
        return self._duration / 4

    async def renew_lease(self, node: str) -> None:
        """Create or renew ``kube-node-lease/{node}`` (holder: the node, as a kubelet does).

        A lease is created only for a Node that exists, with the Node as its owner, so it is
        garbage-collected with the Node (and a renewal racing a deletion cannot bring it back).

        Raises:
            NotFound: the Node does not exist (deleted): stop renewing.
            Conflict: the lease is held by a different identity, or kept changing.
            StoreError: the API failed.
        """
        if await self._leases.renew(node, node, self._duration):
            return
        found = await self._api.get(NODES, None, node)
        owner = {"apiVersion": "v1", "kind": "Node", "name": node}
        owner["uid"] = str((found.get("metadata") or {}).get("uid") or "")
        if not await self._leases.acquire(node, node, self._duration, owner=owner):
            raise Conflict(f"node lease {NODE_LEASE_NAMESPACE}/{node} could not be renewed")

    async def report_status(
        self, node: str, *, ready: bool, reported: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Patch the Node's status (Ready, and what the edge ``reported``); returns the Node.

        Raises:
            NotFound: the Node does not exist.
            Conflict: the write kept conflicting.
            StoreError: the API failed.
        """
        conditions = self._conditions.get(node)
        for _ in range(_ATTEMPTS):
            if conditions is None:
                current = await self._api.get(NODES, None, node)
                conditions = list((current.get("status") or {}).get("conditions") or [])
            patch = node_status_patch(
                ready=ready, now=self._clock(), conditions=conditions, reported=reported
            )
            try:
                written = await self._api.patch(NODES, None, node, patch, status=True)
            except Conflict:
                conditions = None
                continue
            except NotFound:
                self.forget(node)
                raise
            self._conditions[node] = list((written.get("status") or {}).get("conditions") or [])
            return written
        raise Conflict(f"status of node {node}: still conflicting after {_ATTEMPTS} attempts")

    async def patch_labels(self, node: str, labels: Mapping[str, str]) -> dict[str, Any]:
        """Merge ``labels`` into the Node's labels (others are kept); returns the Node.

        Raises:
            NotFound: the Node does not exist.
        """
        patch = {"metadata": {"labels": dict(labels)}}
        return await self._api.patch(NODES, None, node, patch)

    def forget(self, node: str) -> None:
        """Drop what is cached for ``node`` (call when its edge disconnects)."""
        self._conditions.pop(node, None)
        self._leases.forget(node)
