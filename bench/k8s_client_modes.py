"""The Kubernetes clients ``bench/k8s_clients.py`` compares, each behind the same dict-in,
dict-out surface a facade would offer cloudhub.

- ``facade``: :class:`cloudhub.k8s.api.KubeApi` (aiohttp; objects stay the server's JSON).
- ``k8sa-typed``: ``kubernetes_asyncio`` as its README uses it: ``CoreV1Api`` methods that
  return generated models, turned back into dicts with ``sanitize_for_serialization`` (a
  dict-out facade must), and its ``Watch`` (which builds a model per event; the facade would
  hand on the event's ``raw_object``).
- ``k8sa-raw``: ``kubernetes_asyncio`` with ``_preload_content=False`` on every call (its
  request building, auth and aiohttp session; no models): the body is read and decoded as
  the facade does (``pydantic_core``), watch lines too.

Each client's package is imported only when its mode is built, so a child process measures
the import cost and memory of its own client alone (and ``kubernetes_asyncio`` need not be
installed for ``facade``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import pydantic_core

Obj = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
#: (connect, read) seconds for short calls, as the facade's default
SHORT_TIMEOUT = (10.0, 30.0)
WATCH_SECONDS = 300

MODES = ("facade", "k8sa-typed", "k8sa-raw")


class Client(Protocol):
    """What the workload calls; pods only, every list and watch across namespaces by label."""

    async def create(self, ns: str, body: Obj) -> Obj:
        """POST a pod; the stored pod."""

    async def list(self, selector: str) -> tuple[list[Obj], str]:
        """The pods matching ``selector`` in all namespaces, and the list's resourceVersion."""

    async def get(self, ns: str, name: str) -> Obj:
        """One pod."""

    async def replace(self, ns: str, name: str, body: Obj) -> Obj:
        """PUT a pod (guarded by its resourceVersion)."""

    async def patch(self, ns: str, name: str, patch: Obj, *, status: bool = False) -> Obj:
        """A merge patch of the pod or of its status."""

    async def delete(self, ns: str, name: str) -> None:
        """Delete at once (grace period 0)."""

    def watch(self, selector: str, rv: str) -> AsyncIterator[tuple[str, Obj]]:
        """(event type, object) of the pods matching ``selector`` after ``rv``."""

    async def close(self) -> None:
        """Release connections."""


class FacadeClient:
    """:class:`~cloudhub.k8s.api.KubeApi`."""

    def __init__(self, kubeconfig: Path, *, connections: int) -> None:
        from cloudhub.k8s.api import PODS, KubeApi

        self.api = KubeApi.from_config(kubeconfig, workers=connections)
        self.pods = PODS

    async def create(self, ns: str, body: Obj) -> Obj:
        return await self.api.create(self.pods, ns, body)

    async def list(self, selector: str) -> tuple[list[Obj], str]:
        data = await self.api.list(self.pods, label_selector=selector)
        return list(data.get("items") or []), str(data["metadata"]["resourceVersion"])

    async def get(self, ns: str, name: str) -> Obj:
        return await self.api.get(self.pods, ns, name)

    async def replace(self, ns: str, name: str, body: Obj) -> Obj:
        return await self.api.replace(self.pods, ns, name, body)

    async def patch(self, ns: str, name: str, patch: Obj, *, status: bool = False) -> Obj:
        return await self.api.patch(self.pods, ns, name, patch, status=status)

    async def delete(self, ns: str, name: str) -> None:
        await self.api.delete(self.pods, ns, name, grace_period_seconds=0)

    async def watch(self, selector: str, rv: str) -> AsyncIterator[tuple[str, Obj]]:
        stream = self.api.watch(
            self.pods,
            resource_version=rv,
            timeout_seconds=WATCH_SECONDS,
            inactivity_timeout=70.0,
            label_selector=selector,
        )
        async with contextlib.aclosing(stream):
            async for event in stream:
                yield event.type, event.object

    async def close(self) -> None:
        await self.api.close()


class TypedClient:
    """``kubernetes_asyncio`` with its models (results turned into dicts)."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes_asyncio import client

        self.api_client = api_client
        # Any: its stubs say V1Pod where it accepts (and we pass) plain dicts, and they do not
        # know _content_type or the raw response of _preload_content=False
        self.v1: Any = client.CoreV1Api(api_client)

    @classmethod
    async def connect(cls, kubeconfig: Path, *, connections: int) -> TypedClient:
        return cls(await _api_client(kubeconfig, connections))

    def _dict(self, model: Any) -> Obj:
        out: Obj = self.api_client.sanitize_for_serialization(model)
        return out

    async def create(self, ns: str, body: Obj) -> Obj:
        return self._dict(
            await self.v1.create_namespaced_pod(ns, body, _request_timeout=SHORT_TIMEOUT)
        )

    async def list(self, selector: str) -> tuple[list[Obj], str]:
        data = self._dict(
            await self.v1.list_pod_for_all_namespaces(
                label_selector=selector, _request_timeout=SHORT_TIMEOUT
            )
        )
        return list(data.get("items") or []), str(data["metadata"]["resourceVersion"])

    async def get(self, ns: str, name: str) -> Obj:
        return self._dict(
            await self.v1.read_namespaced_pod(name, ns, _request_timeout=SHORT_TIMEOUT)
        )

    async def replace(self, ns: str, name: str, body: Obj) -> Obj:
        return self._dict(
            await self.v1.replace_namespaced_pod(name, ns, body, _request_timeout=SHORT_TIMEOUT)
        )

    async def patch(self, ns: str, name: str, patch: Obj, *, status: bool = False) -> Obj:
        call = self.v1.patch_namespaced_pod_status if status else self.v1.patch_namespaced_pod
        return self._dict(
            await call(name, ns, patch, _content_type=MERGE_PATCH, _request_timeout=SHORT_TIMEOUT)
        )

    async def delete(self, ns: str, name: str) -> None:
        await self.v1.delete_namespaced_pod(
            name, ns, grace_period_seconds=0, _request_timeout=SHORT_TIMEOUT
        )

    async def watch(self, selector: str, rv: str) -> AsyncIterator[tuple[str, Obj]]:
        from kubernetes_asyncio import watch

        async with watch.Watch() as stream:
            async for event in stream.stream(
                self.v1.list_pod_for_all_namespaces,
                label_selector=selector,
                resource_version=rv,
                allow_watch_bookmarks=True,
                timeout_seconds=WATCH_SECONDS,
            ):
                yield str(event["type"]), event["raw_object"]

    async def close(self) -> None:
        await self.api_client.close()


class RawClient(TypedClient):
    """``kubernetes_asyncio`` with ``_preload_content=False``: its requests, our decoding."""

    @classmethod
    async def connect(cls, kubeconfig: Path, *, connections: int) -> RawClient:
        return cls(await _api_client(kubeconfig, connections))

    @staticmethod
    async def _read(response: Any) -> Obj:
        async with response:
            data = await response.read()
            if not 200 <= response.status <= 299:
                raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")
        decoded: Obj = pydantic_core.from_json(data)
        return decoded

    async def create(self, ns: str, body: Obj) -> Obj:
        return await self._read(
            await self.v1.create_namespaced_pod(
                ns, body, _preload_content=False, _request_timeout=SHORT_TIMEOUT
            )
        )

    async def list(self, selector: str) -> tuple[list[Obj], str]:
        data = await self._read(
            await self.v1.list_pod_for_all_namespaces(
                label_selector=selector, _preload_content=False, _request_timeout=SHORT_TIMEOUT
            )
        )
        return list(data.get("items") or []), str(data["metadata"]["resourceVersion"])

    async def get(self, ns: str, name: str) -> Obj:
        return await self._read(
            await self.v1.read_namespaced_pod(
                name, ns, _preload_content=False, _request_timeout=SHORT_TIMEOUT
            )
        )

    async def replace(self, ns: str, name: str, body: Obj) -> Obj:
        return await self._read(
            await self.v1.replace_namespaced_pod(
                name, ns, body, _preload_content=False, _request_timeout=SHORT_TIMEOUT
            )
        )

    async def patch(self, ns: str, name: str, patch: Obj, *, status: bool = False) -> Obj:
        call = self.v1.patch_namespaced_pod_status if status else self.v1.patch_namespaced_pod
        return await self._read(
            await call(
                name,
                ns,
                patch,
                _content_type=MERGE_PATCH,
                _preload_content=False,
                _request_timeout=SHORT_TIMEOUT,
            )
        )

    async def delete(self, ns: str, name: str) -> None:
        await self._read(
            await self.v1.delete_namespaced_pod(
                name,
                ns,
                grace_period_seconds=0,
                _preload_content=False,
                _request_timeout=SHORT_TIMEOUT,
            )
        )

    async def watch(self, selector: str, rv: str) -> AsyncIterator[tuple[str, Obj]]:
        response = await self.v1.list_pod_for_all_namespaces(
            label_selector=selector,
            resource_version=rv,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SECONDS,
            watch=True,
            _preload_content=False,
        )
        async with response:
            async for line in response.content:
                if line.strip():
                    event = pydantic_core.from_json(line)
                    yield str(event["type"]), event["object"]


async def _api_client(kubeconfig: Path, connections: int) -> Any:
    from kubernetes_asyncio import client, config

    configuration = client.Configuration()
    configuration.connection_pool_maxsize = connections + 1  # the calls and the watch
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return client.ApiClient(configuration)


async def connect(mode: str, kubeconfig: Path, *, connections: int) -> Client:
    """The client of ``mode`` (one of :data:`MODES`), ``connections`` calls in flight."""
    if mode == "facade":
        return FacadeClient(kubeconfig, connections=connections)
    if mode == "k8sa-typed":
        return await TypedClient.connect(kubeconfig, connections=connections)
    if mode == "k8sa-raw":
        return await RawClient.connect(kubeconfig, connections=connections)
    raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
