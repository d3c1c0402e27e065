"""Who owns what, decided by ``coordination.k8s.io/v1`` Leases: no home-made coordination.

Several cloudhub replicas serve one cluster and an edge may connect to any of them. Exactly one
replica must send that node its objects and write its status, or two replicas race (KubeEdge's
recurring multi-replica bugs). The owner is the holder of the Lease ``{namespace}/{name}``:

- :meth:`LeaseClient.acquire` takes a lease that is absent, released or **expired**, and
  never one another holder renewed within its ``leaseDurationSeconds``.
- :meth:`LeaseClient.renew` extends a lease we hold; it answers False, without writing, once
  somebody else holds it (we lost it: stop acting as owner).
- :meth:`LeaseClient.release` clears the holder so another replica can take over at once,
  instead of after the lease expires.

Taking a lease is a replace guarded by the resourceVersion we read, so two replicas that both
see an expired lease cannot both take it: the API server accepts the first write and answers
409 to the second, which then re-reads and sees the new holder. Renewing and releasing are one
small JSON patch each, no read: it tests ``holderIdentity`` and sets the times, and the API
server applies it atomically, so a lease somebody else took is refused (422), never renewed
for them. A steady renewal costs one request whose answer is not decoded (with 20 edges,
renewals are most of an idle cloudhub's API traffic).

Expiry is a pure function of ``renewTime``, ``leaseDurationSeconds`` and the local clock
(:func:`lease_expired`). Replicas' clocks must roughly agree (NTP): a replica whose clock runs
ahead by more than a lease's margin could take over early. The durations used (tens of
seconds) leave seconds of margin.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cloudhub.k8s.api import LEASES, KubeApi, json_patch
from wire.errors import Conflict, InvalidObject, NotFound, StoreError

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

#: where cloudhub keeps its ownership leases
DEFAULT_NAMESPACE = "edgebridge"
#: guarded writes tried before an operation gives up
_ATTEMPTS = 4


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_micro_time(at: datetime) -> str:
    """A Kubernetes ``MicroTime``: RFC 3339 in UTC with microseconds."""
    # isoformat, not strftime: the C library's strftime looks at the local time zone (a stat
    # of /etc/localtime) on every call, and leases are renewed several times a second
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_micro_time(text: Any) -> datetime | None:
    """A ``MicroTime`` (or plain RFC 3339 ``Time``) as an aware datetime; None if unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def lease_expired(*, renew_time: datetime | None, duration_s: int | None, now: datetime) -> bool:
    """Whether a lease renewed at ``renew_time`` for ``duration_s`` seconds is over at ``now``.

    A lease never renewed, or without a duration, counts as expired: nobody can claim it.
    """
    if renew_time is None or duration_s is None:
        return True
    return now >= renew_time + timedelta(seconds=duration_s)


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The fields of a Lease that ownership decisions read."""

    holder: str | None
    duration_s: int | None
    acquire_time: datetime | None
    renew_time: datetime | None
    transitions: int

    @classmethod
    def of(cls, lease: dict[str, Any]) -> LeaseRecord:
        spec = lease.get("spec") or {}
        duration = spec.get("leaseDurationSeconds")
        transitions = spec.get("leaseTransitions")
        return cls(
            holder=spec.get("holderIdentity") or None,
            duration_s=duration if isinstance(duration, int) else None,
            acquire_time=parse_micro_time(spec.get("acquireTime")),
            renew_time=parse_micro_time(spec.get("renewTime")),
            transitions=transitions if isinstance(transitions, int) else 0,
        )

    def held_by_other(self, holder: str, now: datetime) -> bool:
        """Someone other than ``holder`` holds it and it has not expired."""
        if self.holder is None or self.holder == holder:
            return False
        return not lease_expired(renew_time=self.renew_time, duration_s=self.duration_s, now=now)


def lease_spec(
    *, holder: str | None, duration_s: int, acquired: datetime, renewed: datetime, transitions: int
) -> dict[str, Any]:
    """A Lease ``spec`` (``holderIdentity`` left out when nobody holds it)."""
    spec: dict[str, Any] = {
        "leaseDurationSeconds": duration_s,
        "acquireTime": format_micro_time(acquired),
        "renewTime": format_micro_time(renewed),
        "leaseTransitions": transitions,
    }
    if holder is not None:
        spec["holderIdentity"] = holder
    return spec


def _holder_test(holder: str) -> dict[str, Any]:
    return {"op": "test", "path": "/spec/holderIdentity", "value": holder}


def _set(field: str, value: Any) -> dict[str, Any]:
    """A JSON patch operation setting ``spec.{field}`` (``add`` replaces a present member)."""
    return {"op": "add", "path": f"/spec/{field}", "value": value}


class LeaseClient:
    """Acquire, renew and release Leases in one namespace."""

    def __init__(
        self, api: KubeApi, *, namespace: str = DEFAULT_NAMESPACE, clock: Clock = utc_now
    ) -> None:
        """Args:
        api: the cluster connection (not closed by this client).
        namespace: where the leases live (default ``edgebridge``).
        clock: current UTC time (tests pass a fake one).
        """
        self._api = api
        self._namespace = namespace
        self._clock = clock
        #: the newest Lease object seen per name, so a renew needs no read
        self._seen: dict[str, dict[str, Any]] = {}

    async def acquire(
        self, name: str, holder: str, duration_s: int, *, owner: dict[str, Any] | None = None
    ) -> bool:
        """Take ``name`` for ``holder`` unless someone else holds it unexpired.

        Holding it already counts as success (and renews it). ``owner`` (an ownerReference)
        is set when the lease is created, so Kubernetes deletes the lease with its owner.

        Raises:
            StoreError: the API failed (not a lost race: that is False).
        """
        for _ in range(_ATTEMPTS):
            now = self._clock()
            lease = await self._read(name)
            if lease is None:
                metadata: dict[str, Any] = {"name": name, "namespace": self._namespace}
                if owner is not None:
                    metadata["ownerReferences"] = [owner]
                body = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": metadata,
                    "spec": lease_spec(
                        holder=holder,
                        duration_s=duration_s,
                        acquired=now,
                        renewed=now,
                        transitions=0,
                    ),
                }
                try:
                    self._seen[name] = await self._api.create(LEASES, self._namespace, body)
                except Conflict:
                    continue  # created by another replica just now: look at it
                log.info("lease %s/%s acquired by %s (new)", self._namespace, name, holder)
                return True
            record = LeaseRecord.of(lease)
            if record.held_by_other(holder, now):
                return False
            mine = record.holder == holder
            lease["spec"] = lease_spec(
                holder=holder,
                duration_s=duration_s,
                acquired=(record.acquire_time or now) if mine else now,
                renewed=now,
                transitions=record.transitions + (0 if mine or record.holder is None else 1),
            )
            if await self._write(name, lease):
                if not mine:
                    log.info(
                        "lease %s/%s acquired by %s (previous holder %s)",
                        self._namespace,
                        name,
                        holder,
                        record.holder or "none",
                    )
                return True
        return False

    async def renew(self, name: str, holder: str, duration_s: int | None = None) -> bool:
        """Extend ``holder``'s lease; False (nothing written) if ``holder`` does not hold it.

        One small JSON patch, no read: a ``test`` of ``holderIdentity`` and the new
        ``renewTime`` (and ``duration_s``, if given), applied atomically by the API server, so
        a lease another holder took meanwhile is refused rather than renewed for them. The
        answer is not decoded.

        Raises:
            StoreError: the API failed; the caller cannot tell whether it still holds the
                lease and should stop acting as owner once the lease would expire.
        """
        ops = [_holder_test(holder), _set("renewTime", format_micro_time(self._clock()))]
        if duration_s:
            ops.append(_set("leaseDurationSeconds", duration_s))
        return await self._patch(name, ops)

    async def release(self, name: str, holder: str) -> bool:
        """Give up ``holder``'s lease so another can take it now; False if not ours.

        Like :meth:`renew`, one conditional JSON patch: the holder is removed only if it is
        still ``holder``.
        """
        ops = [
            _holder_test(holder),
            {"op": "remove", "path": "/spec/holderIdentity"},
            _set("renewTime", format_micro_time(self._clock())),
        ]
        if not await self._patch(name, ops):
            return False
        log.info("lease %s/%s released by %s", self._namespace, name, holder)
        return True

    async def holder_of(self, name: str) -> str | None:
        """The current unexpired holder of ``name``, or None (always reads the API)."""
        lease = await self._read(name)
        if lease is None:
            return None
        record = LeaseRecord.of(lease)
        now = self._clock()
        if record.holder is None or lease_expired(
            renew_time=record.renew_time, duration_s=record.duration_s, now=now
        ):
            return None
        return record.holder

    def forget(self, name: str) -> None:
        """Drop the cached copy of ``name`` (the next call reads it again)."""
        self._seen.pop(name, None)

    async def _read(self, name: str) -> dict[str, Any] | None:
        try:
            lease = await self._api.get(LEASES, self._namespace, name)
        except NotFound:
            self._seen.pop(name, None)
            return None
        self._seen[name] = lease
        return lease

    async def _patch(self, name: str, ops: list[dict[str, Any]]) -> bool:
        """Apply a patch whose first operation tests the holder; False if the test failed or
        the lease is gone. The cached copy is dropped either way (it is stale now)."""
        self._seen.pop(name, None)
        try:
            await json_patch(self._api, LEASES, self._namespace, name, ops)
        except (InvalidObject, NotFound):
            return False
        return True

    async def _write(self, name: str, lease: dict[str, Any]) -> bool:
        """A replace guarded by the lease's resourceVersion; False if someone wrote first."""
        try:
            self._seen[name] = await self._api.replace(LEASES, self._namespace, name, lease)
        except (Conflict, NotFound):
            self._seen.pop(name, None)
            return False
        except StoreError:
            self._seen.pop(name, None)
            raise
        return True
