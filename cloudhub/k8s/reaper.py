"""The ``nodereaper`` module (Kubernetes mode): what belonged to a deleted edge Node goes too.

A Node deleted with ``edgectl delete node`` or ``kubectl delete node`` leaves behind what
cloudhub created for it, and nothing in Kubernetes removes those on its own here:

- its **ownership Lease** in cloudhub's namespace (who serves the node; no ownerReference,
  since it must outlive a replica's restart, not the Node's deletion);
- its **node Lease** in ``kube-node-lease`` (created with the Node as owner, so a real
  cluster's garbage collector removes it; deleting it here does not depend on that);
- its **pods**: Kubernetes' pod garbage collector force-deletes pods bound to a Node that has
  been gone for 40 s (its quarantine, so a Node that comes straight back keeps them); cloudhub
  does the same for edge Nodes, so it happens on clusters without a pod GC as well.

Each replica watches edge Nodes and does this on every DELETED event; replicas racing on the
same deletion find the objects gone (404) and move on. At start-up (and after every re-list)
it also removes unheld ownership Leases whose Node is gone: deletions made while no replica
ran. Each delete is guarded by the uid of the object as just read, and a Node joined again
under the same name within the quarantine keeps its pods.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from cloudhub import routes
from cloudhub.k8s.acked import forget as forget_acked
from cloudhub.k8s.api import LEASES, PODS, KubeApi
from cloudhub.k8s.leases import LeaseRecord, lease_expired, utc_now
from cloudhub.k8s.nodelease import NODE_LEASE_NAMESPACE
from cloudhub.store.base import ObjectStore
from hive.backoff import backoff
from wire.errors import Conflict, Gone, NotFound, StoreError

log = logging.getLogger(__name__)

#: seconds a deleted Node's pods are left alone in case it returns (Kubernetes' pod GC: 40)
POD_QUARANTINE = 40.0


class NodeReaper:
    """Removes a deleted edge Node's leases and pods."""

    name = routes.NODEREAPER
    group = routes.LIFECYCLE_GROUP
    enabled = True

    def __init__(
        self,
        *,
        store: ObjectStore,
        api: KubeApi,
        namespace: str,
        pod_quarantine: float = POD_QUARANTINE,
    ) -> None:
        """Args:
        store: the Kubernetes store (its node list and watch select edge Nodes).
        api: the cluster connection, for leases and pods.
        namespace: where the ownership Leases live (``edgebridge``).
        pod_quarantine: seconds a deleted Node's pods wait before they are deleted, in case
            the Node comes back (a re-join under the same name): 40, as Kubernetes' pod GC.
        """
        self._store = store
        self._api = api
        self._namespace = namespace
        #: see ``pod_quarantine`` (settable: tests shorten it)
        self.pod_quarantine = pod_quarantine
        #: nodes whose leases were removed, and whose pods were looked at after the
        #: quarantine (for tests and logs)
        self.reaped = 0
        self.collected = 0

    async def run(self) -> None:
        # The pod collections wait out their quarantine in this group: they end with the module.
        async with asyncio.TaskGroup() as pending:
            await self._follow(pending)

    async def _follow(self, pending: asyncio.TaskGroup) -> None:
        delays = backoff(cap=10.0)
        while True:
            try:
                nodes, rv = await self._store.list("node")
                await self.sweep({str(n["metadata"]["name"]) for n in nodes})
                delays = backoff(cap=10.0)
                async for event in self._store.watch("node", rv):
                    if event.type == "DELETED":
                        node = str(event.object["metadata"]["name"])
                        await self.reap(node)
                        pending.create_task(self.collect_pods(node), name=f"podgc:{node}")
            except Gone:
                continue  # re-list
            except StoreError as exc:
                delay = next(delays)
                log.warning(
                    "watching edge Nodes for deletions failed: %s; retry in %.1fs", exc, delay
                )
                await asyncio.sleep(delay)

    async def reap(self, node: str) -> None:
        """Remove ``node``'s ownership Lease, node Lease and stock acked record (404 is fine)."""
        removed = 0
        for namespace in (self._namespace, NODE_LEASE_NAMESPACE):
            removed += await self._delete_lease(namespace, node)
        await forget_acked(self._api, self._namespace, node)
        self.reaped += 1
        log.info("node %s was deleted: removed %d lease(s)", node, removed)

    async def collect_pods(self, node: str) -> None:
        """After the quarantine, delete the pods bound to ``node`` if it is still gone."""
        await asyncio.sleep(self.pod_quarantine)
        try:
            await self._collect(node)
        finally:
            self.collected += 1

    async def _collect(self, node: str) -> None:
        try:
            if await self._node_exists(node):
                log.info("node %s is back: its pods stay", node)
                return
            listed = await self._api.list(PODS, field_selector=f"spec.nodeName={node}")
        except StoreError as exc:
            log.warning("node %s was deleted; cannot collect its pods: %s", node, exc)
            return
        pods: list[dict[str, Any]] = listed.get("items") or []
        removed = 0
        for pod in pods:
            removed += await self._delete_pod(node, pod)
        if removed:
            log.info("node %s is gone: deleted %d pod(s) bound to it", node, removed)

    async def sweep(self, nodes: set[str]) -> None:
        """Remove ownership Leases nobody holds whose Node is gone (deleted while down)."""
        try:
            listed = await self._api.list(LEASES, namespace=self._namespace)
        except StoreError as exc:
            log.warning("cannot list ownership leases in %s: %s", self._namespace, exc)
            return
        now = utc_now()
        for lease in listed.get("items") or []:
            name = str((lease.get("metadata") or {}).get("name") or "")
            if not name or name in nodes:
                continue
            record = LeaseRecord.of(lease)
            held = record.holder is not None and not lease_expired(
                renew_time=record.renew_time, duration_s=record.duration_s, now=now
            )
            if held or await self._node_exists(name):
                continue
            await self._delete_lease(self._namespace, name, lease)

    async def _node_exists(self, node: str) -> bool:
        try:
            await self._store.get("node", None, node)
        except NotFound:
            return False
        return True

    async def _delete_lease(
        self, namespace: str, name: str, lease: dict[str, Any] | None = None
    ) -> int:
        try:
            if lease is None:
                lease = await self._api.get(LEASES, namespace, name)
            uid = (lease.get("metadata") or {}).get("uid")
            await self._api.delete(
                LEASES, namespace, name, preconditions={"uid": uid} if uid else None
            )
        except (NotFound, Conflict):
            return 0  # gone already, or another replica's deletion won
        except StoreError as exc:
            log.warning("cannot delete lease %s/%s of deleted node: %s", namespace, name, exc)
            return 0
        log.info("deleted lease %s/%s: its node is gone", namespace, name)
        return 1

    async def _delete_pod(self, node: str, pod: dict[str, Any]) -> int:
        meta = pod.get("metadata") or {}
        uid = meta.get("uid")
        try:
            await self._api.delete(
                PODS,
                meta.get("namespace"),
                str(meta.get("name")),
                grace_period_seconds=0,
                preconditions={"uid": uid} if uid else None,
            )
        except (NotFound, Conflict):
            return 0
        except StoreError as exc:
            log.warning(
                "cannot delete pod %s/%s of deleted node %s: %s",
                meta.get("namespace"),
                meta.get("name"),
                node,
                exc,
            )
            return 0
        log.info(
            "deleted pod %s/%s: its node %s is gone", meta.get("namespace"), meta.get("name"), node
        )
        return 1
