"""On a cluster, recorded Events are real core/v1 Events: created, then patched on repeats."""

from __future__ import annotations

import pytest

from cloudhub.fleet.derive import node_event, twin_refused_event
from cloudhub.fleet.eventstore import KubeEvents
from cloudhub.k8s.api import KubeApi
from tests.support.kubeapi import KubeApiEmulator

pytestmark = pytest.mark.timeout(20)


async def test_repeats_patch_the_count_of_one_event(api: KubeApi, kubeapi: KubeApiEmulator) -> None:
    """Two NodeNotReady occurrences are one Event with count 2 in the cluster."""
    events = KubeEvents(api)
    await events.record([node_event("edge-1", online=False, at=100)])
    await events.record([node_event("edge-1", online=False, at=160)])
    [stored] = kubeapi.objects("events")
    assert stored["count"] == 2
    assert stored["involvedObject"]["name"] == "edge-1"
    assert stored["lastTimestamp"] == "1970-01-01T00:02:40Z"
    [listed] = await events.list(kind="Node", name="edge-1")
    assert listed.count == 2 and listed.reason == "NodeNotReady"


async def test_another_replica_counts_on_from_the_cluster(api: KubeApi) -> None:
    """A replica that did not record an event before folds into the cluster's count."""
    await KubeEvents(api).record([twin_refused_event("default", "t1", "bad", at=1)])
    await KubeEvents(api).record([twin_refused_event("default", "t1", "bad", at=2)])
    [listed] = await KubeEvents(api).list(namespace="default", kind="Device")
    assert listed.count == 2 and listed.type == "Warning"
