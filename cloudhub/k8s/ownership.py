"""Which replica serves which edge node: one Lease per node, claimed on connect.

An edge may connect to any cloudhub replica behind the Service. The replica it reached calls
:meth:`NodeOwnership.claim`; if that succeeds it alone sends the node its objects and writes
the node's status and heartbeat until :meth:`NodeOwnership.release` (the edge disconnected).
If another replica holds the node (the edge reconnected elsewhere before the old link was
noticed dead), the claim fails and this replica should refuse the link; the edge's backoff
brings it back and the claim succeeds once the other replica released the lease or stopped
renewing it (killed: the lease expires after ``duration_s``).

While a node is owned a named background task renews its lease every ``renew_every`` seconds.
A renewal that is refused (someone else holds it now) or that keeps failing until the lease
would have expired means ownership is lost: ``on_lost(node)`` is called and the replica must
stop acting for that node (close the link). Nothing is decided on a hunch: the API server's
resourceVersion guard on every lease write is the only arbiter.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from cloudhub.k8s.leases import LeaseClient
from wire.errors import StoreError

log = logging.getLogger(__name__)

#: lease duration for node ownership, seconds: how long a killed replica's nodes stay unserved
DEFAULT_DURATION = 20


class NodeOwnership:
    """This replica's claims on edge nodes."""

    def __init__(
        self,
        leases: LeaseClient,
        *,
        identity: str,
        duration_s: int = DEFAULT_DURATION,
        renew_every: float | None = None,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        """Args:
        leases: a client for the namespace the ownership leases live in (``edgebridge``).
        identity: this replica's name as a lease holder (its pod name).
        duration_s: lease duration (20 s).
        renew_every: seconds between renewals (default half the duration).
        on_lost: called with the node's name when ownership is lost while claimed.
        """
        self._leases = leases
        self.identity = identity
        self._duration = duration_s
        # half the duration: 6 renewals a minute per node, as a kubelet's node lease costs, and
        # one failed renewal still leaves half a lease to retry in
        self._every = renew_every if renew_every is not None else duration_s / 2
        #: called with a node's name when ownership of it is lost (settable after creation)
        self.on_lost = on_lost
        self._renewers: dict[str, asyncio.Task[None]] = {}

    def owns(self, node: str) -> bool:
        return node in self._renewers

    @property
    def owned(self) -> frozenset[str]:
        return frozenset(self._renewers)

    async def claim(self, node: str) -> bool:
        """Take ``node`` (or keep it); False if another replica holds it.

        Raises:
            StoreError: the API failed; the node is not owned.
        """
        if node in self._renewers:
            return True
        if not await self._leases.acquire(node, self.identity, self._duration):
            holder = await self._leases.holder_of(node)
            log.info("node %s is served by %s, not by %s", node, holder, self.identity)
            return False
        self._renewers[node] = asyncio.create_task(
            self._renew(node, time.monotonic()), name=f"ownership:{node}"
        )
        return True

    async def release(self, node: str) -> None:
        """Stop renewing and hand the node over at once (its edge disconnected)."""
        task = self._renewers.pop(node, None)
        if task is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        try:
            await self._leases.release(node, self.identity)
        except StoreError as exc:
            log.warning(
                "could not release node %s (it expires in %ds): %s", node, self._duration, exc
            )

    async def close(self, *, release: bool = True) -> None:
        """Stop every renewal; ``release`` them (a clean stop) or let them expire."""
        if release:
            for node in list(self._renewers):
                await self.release(node)
            return
        tasks = list(self._renewers.values())
        self._renewers.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _renew(self, node: str, renewed_at: float) -> None:
        while True:
            await asyncio.sleep(self._every)
            try:
                held = await self._leases.renew(node, self.identity, self._duration)
            except StoreError as exc:
                if time.monotonic() - renewed_at < self._duration:
                    log.warning("renewing ownership of node %s failed: %s; retrying", node, exc)
                    continue
                held = False
            if held:
                renewed_at = time.monotonic()
                continue
            log.warning("replica %s lost ownership of node %s", self.identity, node)
            self._renewers.pop(node, None)
            if self.on_lost is not None:
                try:
                    self.on_lost(node)
                except Exception:
                    log.exception("on_lost(%s) failed", node)
            return
