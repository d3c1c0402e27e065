"""Two replicas, one node: exactly one owner, hand-over on release, take-over after a kill."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cloudhub.k8s.api import KubeApi
from cloudhub.k8s.leases import LeaseClient
from cloudhub.k8s.ownership import NodeOwnership
from tests.support.kubeapi import KubeApiEmulator
from tests.support.procs import wait_until

pytestmark = pytest.mark.timeout(20)

LEASE = "/apis/coordination.k8s.io/v1/namespaces/edgebridge/leases/edge-1"


@pytest.fixture
async def pair(api: KubeApi) -> AsyncIterator[tuple[NodeOwnership, NodeOwnership, list[str]]]:
    lost: list[str] = []
    a = NodeOwnership(
        LeaseClient(api), identity="cloudhub-a", duration_s=1, renew_every=0.2, on_lost=lost.append
    )
    b = NodeOwnership(LeaseClient(api), identity="cloudhub-b", duration_s=1, renew_every=0.2)
    yield a, b, lost
    await a.close(release=False)
    await b.close(release=False)


async def test_only_one_replica_owns_a_node_and_keeps_it_while_renewing(
    kubeapi: KubeApiEmulator, pair: tuple[NodeOwnership, NodeOwnership, list[str]]
) -> None:
    """The first claim wins; renewals keep the second replica out beyond the lease duration."""
    a, b, _ = pair
    assert await a.claim("edge-1")
    assert not await b.claim("edge-1")
    await wait_until(lambda: kubeapi.count("patch", LEASE) >= 6)  # > 1 s of renewals
    assert not await b.claim("edge-1")
    assert a.owns("edge-1") and not b.owns("edge-1")


async def test_release_hands_the_node_over_at_once(
    pair: tuple[NodeOwnership, NodeOwnership, list[str]],
) -> None:
    """The edge disconnected from A and reconnected to B: B's claim succeeds immediately."""
    a, b, _ = pair
    assert await a.claim("edge-1")
    await a.release("edge-1")
    assert await b.claim("edge-1")
    assert not a.owns("edge-1")


async def test_a_killed_replicas_nodes_are_taken_over_after_expiry(
    pair: tuple[NodeOwnership, NodeOwnership, list[str]],
) -> None:
    """A stops renewing without releasing (killed): B gets the node once the lease ran out."""
    a, b, lost = pair
    assert await a.claim("edge-1")
    await a.close(release=False)
    assert not await b.claim("edge-1")
    assert await wait_until(lambda: b.claim("edge-1"), timeout=5)
    assert lost == []


async def test_an_owner_that_cannot_renew_gives_the_node_up(
    kubeapi: KubeApiEmulator, pair: tuple[NodeOwnership, NodeOwnership, list[str]]
) -> None:
    """Renewals failing for a whole lease duration: on_lost is called, the node is not owned."""
    a, b, lost = pair
    assert await a.claim("edge-1")
    kubeapi.inject(500, method="PATCH", path=LEASE, times=1000)
    await wait_until(lambda: lost == ["edge-1"], timeout=5)
    assert not a.owns("edge-1")
    kubeapi.clear_injections()
    assert await wait_until(lambda: b.claim("edge-1"), timeout=5)


async def test_every_owned_node_is_renewed_in_the_same_passes(
    kubeapi: KubeApiEmulator, pair: tuple[NodeOwnership, NodeOwnership, list[str]]
) -> None:
    """Nodes claimed one after the other are all kept beyond the lease duration, renewed
    together (as many renewals of each)."""
    a, b, lost = pair
    nodes = [f"edge-{i}" for i in range(4)]
    for node in nodes:
        assert await a.claim(node)
    paths = [LEASE.replace("edge-1", node) for node in nodes]
    kubeapi.reset_counts()
    await wait_until(lambda: min(kubeapi.count("patch", p) for p in paths) >= 8, timeout=10)
    counts = [kubeapi.count("patch", p) for p in paths]
    assert max(counts) - min(counts) <= 1
    assert not any([await b.claim(node) for node in nodes])
    assert a.owned == frozenset(nodes) and lost == []
