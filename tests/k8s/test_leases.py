"""Ownership Leases between replicas: take when free, renew, release, steal only after expiry."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudhub.k8s.api import KubeApi
from cloudhub.k8s.leases import (
    LeaseClient,
    format_micro_time,
    lease_expired,
    parse_micro_time,
)
from tests.support.kubeapi import KubeApiEmulator
from wire.errors import StoreError

pytestmark = pytest.mark.timeout(20)

LEASE = "/apis/coordination.k8s.io/v1/namespaces/edgebridge/leases/edge-1"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    """A settable UTC clock shared by both replicas."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def replicas(api: KubeApi, clock: Clock) -> tuple[LeaseClient, LeaseClient]:
    return LeaseClient(api, clock=clock), LeaseClient(api, clock=clock)


times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@given(renewed=times, duration=st.integers(1, 3600), offset_us=st.integers(0, 7200 * 10**6))
def test_expiry_is_renew_time_plus_duration(
    renewed: datetime, duration: int, offset_us: int
) -> None:
    """A lease is live strictly before renewTime + duration and expired from then on."""
    now = renewed + timedelta(microseconds=offset_us)
    expired = lease_expired(renew_time=renewed, duration_s=duration, now=now)
    assert expired == (offset_us >= duration * 10**6)


def test_a_lease_never_renewed_counts_as_expired() -> None:
    """No renewTime or no duration: anybody may take it."""
    assert lease_expired(renew_time=None, duration_s=10, now=T0)
    assert lease_expired(renew_time=T0, duration_s=None, now=T0)


@given(at=times)
def test_micro_time_round_trips(at: datetime) -> None:
    """MicroTime keeps microseconds and parses back to the same instant."""
    assert parse_micro_time(format_micro_time(at)) == at


@given(at=times)
def test_micro_time_is_rfc3339_in_utc_with_microseconds(at: datetime) -> None:
    """The text is what strftime("%Y-%m-%dT%H:%M:%S.%fZ") writes for the instant in UTC."""
    assert format_micro_time(at) == at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def test_first_replica_takes_a_missing_lease_and_the_second_is_refused(
    kubeapi: KubeApiEmulator, replicas: tuple[LeaseClient, LeaseClient]
) -> None:
    """acquire creates the lease; another holder cannot take it while it is live."""
    a, b = replicas
    assert await a.acquire("edge-1", "replica-a", 15)
    assert not await b.acquire("edge-1", "replica-b", 15)
    lease = kubeapi.get("leases", "edgebridge", "edge-1", group="coordination.k8s.io")
    assert lease is not None and lease["spec"]["holderIdentity"] == "replica-a"
    assert lease["spec"]["leaseDurationSeconds"] == 15
    assert await b.holder_of("edge-1") == "replica-a"


async def test_a_renewed_lease_is_not_stolen_and_an_expired_one_is(
    kubeapi: KubeApiEmulator, replicas: tuple[LeaseClient, LeaseClient], clock: Clock
) -> None:
    """Renewals keep the lease; once renewals stop it is taken only after the duration."""
    a, b = replicas
    assert await a.acquire("edge-1", "replica-a", 15)
    for _ in range(3):
        clock.advance(10)
        assert await a.renew("edge-1", "replica-a")
        assert not await b.acquire("edge-1", "replica-b", 15)
    clock.advance(14.9)  # a stopped renewing (killed): still within its duration
    assert not await b.acquire("edge-1", "replica-b", 15)
    clock.advance(0.2)
    assert await b.acquire("edge-1", "replica-b", 15)
    lease = kubeapi.get("leases", "edgebridge", "edge-1", group="coordination.k8s.io")
    assert lease is not None and lease["spec"]["leaseTransitions"] == 1
    assert not await a.renew("edge-1", "replica-a")  # a finds out it lost it; nothing written
    assert await b.holder_of("edge-1") == "replica-b"


async def test_released_lease_is_taken_at_once(replicas: tuple[LeaseClient, LeaseClient]) -> None:
    """release clears the holder: the other replica need not wait for expiry."""
    a, b = replicas
    assert await a.acquire("edge-1", "replica-a", 15)
    assert await a.release("edge-1", "replica-a")
    assert await a.holder_of("edge-1") is None
    assert await b.acquire("edge-1", "replica-b", 15)
    assert not await a.release("edge-1", "replica-a")  # not a's to release any more


async def test_two_replicas_racing_for_a_free_lease_get_exactly_one_winner(
    replicas: tuple[LeaseClient, LeaseClient], clock: Clock
) -> None:
    """Concurrent acquires, of a missing and of an expired lease: one True, one False."""
    a, b = replicas
    results = await asyncio.gather(
        a.acquire("edge-1", "replica-a", 15), b.acquire("edge-1", "replica-b", 15)
    )
    assert sorted(results) == [False, True]
    clock.advance(60)
    results = await asyncio.gather(
        a.acquire("edge-1", "replica-a2", 15), b.acquire("edge-1", "replica-b2", 15)
    )
    assert sorted(results) == [False, True]


async def test_a_steady_renewal_costs_one_request(
    kubeapi: KubeApiEmulator, replicas: tuple[LeaseClient, LeaseClient], clock: Clock
) -> None:
    """Renewing is one conditional JSON patch, no read."""
    a, _ = replicas
    assert await a.acquire("edge-1", "replica-a", 15)
    kubeapi.reset_counts()
    for _ in range(5):
        clock.advance(5)
        assert await a.renew("edge-1", "replica-a")
    assert kubeapi.count() == 5 and kubeapi.count("patch", LEASE) == 5


async def test_a_renewal_the_api_refuses_raises(
    kubeapi: KubeApiEmulator, replicas: tuple[LeaseClient, LeaseClient]
) -> None:
    """An API failure is an error, not a silent "still mine"."""
    a, _ = replicas
    assert await a.acquire("edge-1", "replica-a", 15)
    kubeapi.inject(500, method="PATCH", path=LEASE)
    with pytest.raises(StoreError):
        await a.renew("edge-1", "replica-a")
