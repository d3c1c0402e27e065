"""The edgecontroller runs unchanged on KubeStore: changes fan out, and a 410 means a re-list."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cloudhub import routes
from cloudhub.edgecontroller.controller import WATCHED_TYPES, EdgeController
from cloudhub.k8s.labels import MANAGED_BY_CLOUDHUB, MANAGED_BY_LABEL
from cloudhub.store.kubernetes import KubeStore
from hive.bus import Bus
from tests.k8s.objects import configmap, node, pod
from tests.support.kubeapi import KubeApiEmulator
from tests.support.procs import wait_until
from wire.messages import Message

pytestmark = pytest.mark.timeout(20)


class Hub:
    """Drains the hub's inbox, keeping the object changes it was sent."""

    def __init__(self, bus: Bus) -> None:
        self.fanouts: list[routes.Fanout] = []
        self._bus = bus
        self._task = asyncio.create_task(self._drain(), name="test:hub-inbox")

    async def _drain(self) -> None:
        while True:
            msg = await self._bus.receive(routes.HUB)
            if isinstance(msg.content, routes.Fanouts):
                self.fanouts.extend(msg.content.changes)

    def for_version(self, resource: str, rv: str) -> list[routes.Fanout]:
        return [f for f in self.fanouts if f.key == resource and f.resource_version == rv]

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@pytest.fixture
async def controller(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> AsyncIterator[tuple[EdgeController, Hub]]:
    kubeapi.seed(node("edge-1"))
    kubeapi.seed(pod("web", "edge-1"))
    bus = Bus()
    bus.register(routes.HUB, "hub")
    bus.register(routes.EDGECONTROLLER, "resource")
    ctl = EdgeController(bus=bus, store=store)
    hub = Hub(bus)
    task = asyncio.create_task(ctl.run(), name="test:edgecontroller")
    await asyncio.wait_for(ctl.synced.wait(), 10)
    yield ctl, hub
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await hub.stop()


async def test_a_pod_change_reaches_the_hub_as_a_fanout(
    kubeapi: KubeApiEmulator, controller: tuple[EdgeController, Hub]
) -> None:
    """A pod edited in the cluster becomes one Fanout for its node, at the new version."""
    _, hub = controller
    changed = pod("web", "edge-1")
    changed["metadata"]["labels"] = {"v": "2"}
    rv = kubeapi.seed(changed)["metadata"]["resourceVersion"]
    found = await wait_until(lambda: hub.for_version("default/pod/web", rv))
    assert found[0].nodes == ("edge-1",)
    assert found[0].object["metadata"]["labels"] == {"v": "2"}


async def test_after_a_forced_410_the_controller_relists_and_keeps_mirroring(
    kubeapi: KubeApiEmulator, controller: tuple[EdgeController, Hub]
) -> None:
    """Every watch ends with 410 and history is gone: the controller re-lists, changes flow."""
    _, hub = controller
    await wait_until(lambda: kubeapi.open_watches == len(WATCHED_TYPES))
    lists_before = kubeapi.count("list", "/api/v1/pods")
    kubeapi.expire_watches()
    await wait_until(lambda: kubeapi.count("list", "/api/v1/pods") > lists_before)
    changed = pod("web", "edge-1")
    changed["metadata"]["labels"] = {"after": "410"}
    rv = kubeapi.seed(changed)["metadata"]["resourceVersion"]
    found = await wait_until(lambda: hub.for_version("default/pod/web", rv))
    assert found[0].nodes == ("edge-1",)
    assert found[0].resource_version is not None  # an update, not a removal


async def test_an_unchanged_node_report_makes_no_request(
    kubeapi: KubeApiEmulator, controller: tuple[EdgeController, Hub]
) -> None:
    """A periodic node status report equal to what the Node holds is checked against the
    watched copy: no read, no write."""
    ctl, _ = controller
    bus = ctl._bus
    facts: dict[str, Any] = {
        "status": {"capacity": {"pods": "110"}},
        "labels": {"kubernetes.io/os": "linux"},
    }

    async def report() -> None:
        msg = Message.new(
            source=routes.HUB,
            group="resource",
            operation="update",
            resource="node/edge-1/null/nodestatus/edge-1",
            content=copy.deepcopy(facts),
        )
        await bus.send(routes.EDGECONTROLLER, msg)

    await report()
    await wait_until(
        lambda: ((ctl.index.get("null/node/edge-1") or {}).get("status") or {}).get("capacity")
    )
    await wait_until(
        lambda: (
            ((ctl.index.get("null/node/edge-1") or {}).get("metadata") or {})
            .get("labels", {})
            .get("kubernetes.io/os")
        )
    )
    kubeapi.reset_counts()
    await report()
    facts["status"]["capacity"] = {"pods": "99"}
    await report()  # a change is written (and shows that the one before was handled)
    await wait_until(lambda: kubeapi.count() > 0)
    node_obj = kubeapi.get("nodes", None, "edge-1")
    assert node_obj is not None and node_obj["status"]["capacity"] == {"pods": "99"}
    assert kubeapi.count("get", "/api/v1/nodes/edge-1") == 1  # the change's merge, only


async def test_a_configmap_labelled_as_cloudhubs_own_is_not_delivered(
    kubeapi: KubeApiEmulator, controller: tuple[EdgeController, Hub]
) -> None:
    """A pod references two ConfigMaps: the ordinary one reaches its node, the one labelled
    managed-by edgebridge-cloudhub never does."""
    _, hub = controller
    web = pod("web", "edge-1")
    web["spec"]["volumes"] = [
        {"name": "app", "configMap": {"name": "app-config"}},
        {"name": "ours", "configMap": {"name": "ours"}},
    ]
    rv = kubeapi.seed(web)["metadata"]["resourceVersion"]
    await wait_until(lambda: hub.for_version("default/pod/web", rv))
    # ours first: the configmap watch is in order, so once app-config arrived ours would have
    kubeapi.seed(configmap("ours", {"a": "1"}, labels={MANAGED_BY_LABEL: MANAGED_BY_CLOUDHUB}))
    rv = kubeapi.seed(configmap("app-config", {"a": "1"}))["metadata"]["resourceVersion"]
    found = await wait_until(lambda: hub.for_version("default/configmap/app-config", rv))
    assert found[0].nodes == ("edge-1",)
    assert not [f for f in hub.fanouts if f.key == "default/configmap/ours"]
