"""Small manifests for the Kubernetes backend tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from cloudhub.store.base import WatchEvent

EDGE = "node-role.kubernetes.io/edge"


def node(name: str, *, edge: bool = True) -> dict[str, Any]:
    labels = {EDGE: ""} if edge else {"node-role.kubernetes.io/worker": ""}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}


def pod(name: str, node_name: str | None = "edge-1", *, ns: str = "default") -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "nginx:1.27"}]}
    if node_name is not None:
        spec["nodeName"] = node_name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def configmap(
    name: str, data: dict[str, str], *, ns: str = "default", labels: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def secret(
    name: str, data: dict[str, str], *, ns: str = "default", labels: dict[str, str] | None = None
) -> dict[str, Any]:
    obj = configmap(name, {}, ns=ns, labels=labels)
    return obj | {"kind": "Secret", "type": "Opaque", "data": data}


def device(name: str, node_name: str = "edge-1") -> dict[str, Any]:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"deviceModelRef": {"name": "thermostat-model"}, "nodeName": node_name},
    }


class Collector:
    """Reads a store watch in the background, keeping events and the error that ended it."""

    def __init__(self, stream: AsyncIterator[WatchEvent]) -> None:
        self.events: list[WatchEvent] = []
        self.error: BaseException | None = None
        self._task = asyncio.create_task(self._run(stream), name="test:collect-watch")

    async def _run(self, stream: AsyncIterator[WatchEvent]) -> None:
        try:
            async for event in stream:
                self.events.append(event)
        except Exception as exc:
            self.error = exc

    def seen(self, kind: str, name: str) -> list[WatchEvent]:
        return [e for e in self.events if e.type == kind and e.object["metadata"]["name"] == name]

    @property
    def done(self) -> bool:
        return self._task.done()

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
