"""edged's pod status lands on pods bound to its node, as a status-only write; others refused."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cloudhub import routes
from cloudhub.store.embedded import EmbeddedStore
from hive.bus import Bus
from wire.messages import Message

pytestmark = pytest.mark.timeout(20)

STATUS = {"phase": "Running", "podIP": "10.1.2.3", "containerStatuses": [{"name": "app"}]}


async def bound_pod(bus: Bus, store: EmbeddedStore, node: str = "edge-1") -> dict[str, Any]:
    """Apply a pod bound to ``node`` and wait until the controller has fanned it out."""
    (pod,) = [
        a.object
        for a in await store.apply(
            [
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": "web", "namespace": "default"},
                    "spec": {"nodeName": node, "containers": [{"name": "app", "image": "busybox"}]},
                }
            ]
        )
    ]
    while True:
        msg = await asyncio.wait_for(bus.receive(routes.HUB), 5)
        changes = getattr(msg.content, "changes", ())
        if any(c.key == "default/pod/web" for c in changes):
            return pod


async def answer(bus: Bus, sender: str, content: Any) -> Message:
    msg = Message.new(
        source=routes.HUB,
        group="resource",
        operation="update",
        resource=f"node/{sender}/default/podstatus/web",
        content=content,
    )
    await bus.send(routes.EDGECONTROLLER, msg)
    while True:
        reply = await asyncio.wait_for(bus.receive(routes.HUB), 5)
        if reply.parent_id == msg.id:
            return reply


async def test_status_of_a_bound_pod_is_stored(controlled: tuple[Bus, EmbeddedStore]) -> None:
    """The node's report becomes the pod's status; spec and generation are unchanged."""
    bus, store = controlled
    pod = await bound_pod(bus, store)
    uid = pod["metadata"]["uid"]
    reply = await answer(bus, "edge-1", {"uid": uid, "status": STATUS})
    assert reply.operation == "response"
    stored = await store.get("pod", "default", "web")
    assert stored["status"]["phase"] == "Running" and stored["status"]["podIP"] == "10.1.2.3"
    assert stored["metadata"].get("generation") == pod["metadata"].get("generation")
    assert stored["spec"] == pod["spec"]


async def test_status_from_another_node_is_refused(controlled: tuple[Bus, EmbeddedStore]) -> None:
    """A node may not write the status of a pod bound elsewhere; nothing is written."""
    bus, store = controlled
    pod = await bound_pod(bus, store)
    reply = await answer(bus, "edge-2", {"uid": pod["metadata"]["uid"], "status": STATUS})
    assert reply.operation == "error" and "not bound" in reply.content
    assert "phase" not in ((await store.get("pod", "default", "web")).get("status") or {})


async def test_status_of_an_earlier_pod_is_refused(controlled: tuple[Bus, EmbeddedStore]) -> None:
    """A report for another uid (a pod deleted and re-created) does not touch the new pod."""
    bus, store = controlled
    await bound_pod(bus, store)
    reply = await answer(bus, "edge-1", {"uid": "someone-else", "status": STATUS})
    assert reply.operation == "error" and "uid" in reply.content


async def test_malformed_status_is_refused(controlled: tuple[Bus, EmbeddedStore]) -> None:
    """A report without a status object gets an error naming the problem."""
    bus, store = controlled
    await bound_pod(bus, store)
    reply = await answer(bus, "edge-1", {"status": "broken"})
    assert reply.operation == "error" and "invalid pod status" in reply.content
