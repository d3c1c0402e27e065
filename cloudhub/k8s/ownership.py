"""Which replica serves which edge node: one Lease per node, claimed on connect.

An edge may connect to any cloudhub replica behind the Service. The replica it reached calls
:meth:`NodeOwnership.claim`; if that succeeds it alone sends the node its objects and writes
the node's status and heartbeat until :meth:`NodeOwnership.release` (the edge disconnected).
If another replica holds the node (the edge reconnected elsewhere before the old link was
noticed dead), the claim fails and this replica should refuse the link; the edge's backoff
brings it back and the claim succeeds once the other replica released the lease or stopped
renewing it (killed: the lease expires after ``duration_s``).

While nodes are owned one background pass (:class:`~cloudhub.k8s.renewals.RenewalSchedule`)
renews all their leases every ``renew_every`` seconds, concurrently: one wake-up per period for
the replica, not one per node, and each renewal one small conditional patch.
A renewal that is refused (someone else holds it now) or that keeps failing until the lease
would have expired means ownership is lost: ``on_lost(node)`` is called and the replica must
stop acting for that node (close the link). Nothing is decided on a hunch: the API server's
atomic check of the holder on every renewal is the only arbiter.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from cloudhub.k8s.leases import LeaseClient
from cloudhub.k8s.renewals import RenewalSchedule, wait_due
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
        #: owned node -> when its lease was last taken or renewed (monotonic)
        self._renewed: dict[str, float] = {}
        self._schedule = RenewalSchedule(every=self._every)
        self._wake = asyncio.Event()
        self._pass: asyncio.Task[None] | None = None

    def owns(self, node: str) -> bool:
        return node in self._renewed

    @property
    def owned(self) -> frozenset[str]:
        return frozenset(self._renewed)

    async def claim(self, node: str) -> bool:
        """Take ``node`` (or keep it); False if another replica holds it.

        Raises:
            StoreError: the API failed; the node is not owned.
        """
        if node in self._renewed:
            return True
        if not await self._leases.acquire(node, self.identity, self._duration):
            holder = await self._leases.holder_of(node)
            log.info("node %s is served by %s, not by %s", node, holder, self.identity)
            return False
        now = time.monotonic()
        self._renewed[node] = now
        self._schedule.add(node, at=now + self._every)
        if self._pass is None or self._pass.done():
            self._pass = asyncio.create_task(self._renew_all(), name="ownership:renewals")
        self._wake.set()
        return True

    async def release(self, node: str) -> None:
        """Stop renewing and hand the node over at once (its edge disconnected)."""
        if self._renewed.pop(node, None) is None:
            return
        self._schedule.discard(node)
        try:
            await self._leases.release(node, self.identity)
        except StoreError as exc:
            log.warning(
                "could not release node %s (it expires in %ds): %s", node, self._duration, exc
            )

    async def close(self, *, release: bool = True) -> None:
        """Stop every renewal; ``release`` them (a clean stop) or let them expire."""
        task, self._pass = self._pass, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if release:
            for node in list(self._renewed):
                await self.release(node)
            return
        for node in list(self._renewed):
            self._schedule.discard(node)
        self._renewed.clear()

    async def _renew_all(self) -> None:
        """The renewal pass: sleep until leases are due, renew them together, repeat."""
        while True:
            due = await wait_due(self._schedule, self._wake)
            claimed = {node: self._renewed[node] for node in due}
            results = await asyncio.gather(
                *(self._leases.renew(node, self.identity, self._duration) for node in due),
                return_exceptions=True,
            )
            now = time.monotonic()
            for node, result in zip(due, results, strict=True):
                if self._renewed.get(node) != claimed[node]:
                    continue  # released (or released and claimed again) meanwhile
                self._settle(node, result, now)

    def _settle(self, node: str, result: bool | BaseException, now: float) -> None:
        """Apply one renewal's outcome: renewed, retried, or ownership lost."""
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result  # cancellation
            if not isinstance(result, StoreError):
                log.error("renewing ownership of node %s failed", node, exc_info=result)
            if now - self._renewed[node] < self._duration:
                log.warning("renewing ownership of node %s failed: %s; retrying", node, result)
                self._schedule.add(node, at=now + self._every / 2)
                return
            result = False
        if result:
            self._renewed[node] = now
            self._schedule.renewed(node, now)
            return
        log.warning("replica %s lost ownership of node %s", self.identity, node)
        self._renewed.pop(node, None)
        self._schedule.discard(node)
        if self.on_lost is not None:
            try:
                self.on_lost(node)
            except Exception:
                log.exception("on_lost(%s) failed", node)
