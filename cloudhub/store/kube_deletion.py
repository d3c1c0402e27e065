"""Pod deletion without a kubelet: confirm, in the background, deletions of pods on edge nodes.

``kubectl delete`` of a pod on a node only marks it (``deletionTimestamp``) and waits for that
node's kubelet to confirm. Edge nodes have none, so the store reports a marked pod as DELETED
at once (the edge drops it; :mod:`cloudhub.store.kube_watch`, and lists leave it out) and hands
it to :class:`PodDeletions`, which, for pods on edge nodes (or on a Node that no longer exists,
as Kubernetes' pod GC would) only, confirms the deletion with a 0-second delete guarded by the
pod's uid.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from cloudhub.k8s.api import NODES, PODS, KubeApi
from cloudhub.k8s.labels import EDGE_ROLE_LABEL
from wire.errors import Conflict, NotFound, StoreError

log = logging.getLogger(__name__)


class PodDeletions:
    """The confirmations in flight; each pod (by uid) at most once at a time."""

    def __init__(self, api: KubeApi, *, enabled: bool) -> None:
        """Args:
        api: the cluster connection (not closed here).
        enabled: confirm at all (:attr:`KubeSettings.finalize_edge_pod_deletions`).
        """
        self._api = api
        self._enabled = enabled
        self._tasks: set[asyncio.Task[None]] = set()
        self._finalizing: set[str] = set()
        self._closed = False

    def confirm(self, pod: dict[str, Any]) -> None:
        """In the background, finish a marked pod's deletion if it sits on an edge node."""
        meta = pod.get("metadata") or {}
        uid = meta.get("uid")
        if not self._enabled or self._closed or not uid or uid in self._finalizing:
            return
        self._finalizing.add(uid)
        name = f"kubestore:confirm-delete:{meta.get('namespace')}/{meta.get('name')}"
        task = asyncio.create_task(self._confirm(pod, uid), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancel the confirmations in flight and wait for them to end."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _confirm(self, pod: dict[str, Any], uid: str) -> None:
        meta = pod["metadata"]
        node_name = (pod.get("spec") or {}).get("nodeName")
        try:
            if not node_name:
                return
            try:
                node = await self._api.get(NODES, None, node_name)
            except NotFound:
                node = None  # the Node is gone: no kubelet will ever confirm (podgc's case)
            labels = ((node or {}).get("metadata") or {}).get("labels") or {}
            if node is not None and EDGE_ROLE_LABEL not in labels:
                return  # a kubelet's pod: its kubelet confirms
            await self._api.delete(
                PODS,
                meta.get("namespace"),
                meta["name"],
                grace_period_seconds=0,
                preconditions={"uid": uid},
            )
            log.info(
                "confirmed deletion of pod %s/%s on edge node %s",
                meta.get("namespace"),
                meta["name"],
                node_name,
            )
        except (NotFound, Conflict):
            pass  # already gone, or replaced by a new pod of the same name
        except StoreError as exc:
            log.warning(
                "could not confirm deletion of pod %s/%s: %s",
                meta.get("namespace"),
                meta["name"],
                exc,
            )
        finally:
            self._finalizing.discard(uid)
