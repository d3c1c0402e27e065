"""Where the mapper learns its devices: the edge local API, listed and watched.

The edge serves the Devices and DeviceModels bound to its node from its SQLite cache
(``/apis/devices.kubeedge.io/v1beta1/devices`` and ``.../devicemodels``), the same online or
offline, so a mapper started while the cloud is away still finds its devices. Each kind is
listed, then watched (``?watch=true``, newline-delimited ``{"type", "object"}`` events); a
broken stream or an edge that is not up yet is retried with jittered back-off and starts over
with a fresh list, so deletions that happened meanwhile are noticed.

The source only keeps the objects; :class:`~devices.service.MapperService` decides what to
serve whenever :attr:`Source.changed` is set.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Mapping
from typing import Any, Final, Protocol

import aiohttp

from hive.backoff import backoff

log = logging.getLogger(__name__)

API: Final = "/apis/devices.kubeedge.io/v1beta1"
KINDS: Final = ("devices", "devicemodels")
#: bytes a watch line may reach (an object with hundreds of properties)
READ_BUFSIZE: Final = 1 << 22


def object_key(obj: Mapping[str, Any]) -> str | None:
    """``namespace/name`` of an API object, or ``None`` when it has no name."""
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping) or not meta.get("name"):
        return None
    return f"{meta.get('namespace') or 'default'}/{meta['name']}"


class Source(Protocol):
    """What the service reads: the current objects and a flag raised on every change."""

    changed: asyncio.Event
    devices: dict[str, dict[str, Any]]
    models: dict[str, dict[str, Any]]

    async def run(self) -> None:
        """Keep ``devices`` and ``models`` current until cancelled."""


class StaticSource:
    """Objects given by the caller (tests, embedding), changed with :meth:`put`/:meth:`delete`."""

    def __init__(self) -> None:
        self.changed = asyncio.Event()
        self.devices: dict[str, dict[str, Any]] = {}
        self.models: dict[str, dict[str, Any]] = {}

    def put(self, *objects: dict[str, Any]) -> None:
        """Add or replace Devices and DeviceModels (by ``kind``)."""
        for obj in objects:
            key = object_key(obj)
            if key is not None:
                target = self.models if obj.get("kind") == "DeviceModel" else self.devices
                target[key] = obj
        self.changed.set()

    def delete(self, kind: str, key: str) -> None:
        """Remove a Device (``kind="Device"``) or DeviceModel by ``namespace/name``."""
        (self.models if kind == "DeviceModel" else self.devices).pop(key, None)
        self.changed.set()

    async def run(self) -> None:
        """Nothing to follow."""
        await asyncio.Event().wait()


class LocalApiSource:
    """Lists and watches the edge local API at ``base`` (``http://127.0.0.1:10550``).

    Args:
        base: the local API's URL.
        reconnect_initial, reconnect_cap: back-off bounds in seconds.
        rng: jitter.
    """

    def __init__(
        self,
        base: str,
        *,
        reconnect_initial: float = 0.5,
        reconnect_cap: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        self.base = base.rstrip("/")
        self.changed = asyncio.Event()
        self.devices: dict[str, dict[str, Any]] = {}
        self.models: dict[str, dict[str, Any]] = {}
        self._initial = reconnect_initial
        self._cap = reconnect_cap
        self._rng = rng or random.Random()

    def _store(self, kind: str) -> dict[str, dict[str, Any]]:
        return self.devices if kind == "devices" else self.models

    async def run(self) -> None:
        """Follow both kinds until cancelled."""
        timeout = aiohttp.ClientTimeout(total=None, connect=5, sock_connect=5)
        # a watch line is one whole object: allow big Devices (aiohttp's default is 64 KiB)
        async with aiohttp.ClientSession(timeout=timeout, read_bufsize=READ_BUFSIZE) as session:
            async with asyncio.TaskGroup() as tg:
                for kind in KINDS:
                    tg.create_task(self._follow(session, kind), name=f"local-api-{kind}")

    async def _follow(self, session: aiohttp.ClientSession, kind: str) -> None:
        delays = backoff(initial=self._initial, cap=self._cap, rng=self._rng)
        complained = False
        while True:
            try:
                await self._list(session, kind)
                if complained:
                    log.info("local API %s answers again", self.base)
                complained = False
                delays = backoff(initial=self._initial, cap=self._cap, rng=self._rng)
                await self._watch(session, kind)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                delay = next(delays)
                if not complained:
                    log.warning(
                        "local API %s: %s %s; retrying (serving what is known meanwhile)",
                        self.base,
                        kind,
                        exc or type(exc).__name__,
                    )
                    complained = True
                await asyncio.sleep(delay)

    async def _list(self, session: aiohttp.ClientSession, kind: str) -> None:
        async with session.get(f"{self.base}{API}/{kind}") as resp:
            resp.raise_for_status()
            body = await resp.json()
        items = body.get("items") if isinstance(body, dict) else None
        fresh = {}
        for obj in items if isinstance(items, list) else []:
            key = object_key(obj) if isinstance(obj, dict) else None
            if key is not None:
                fresh[key] = obj
        store = self._store(kind)
        if fresh != store:
            store.clear()
            store.update(fresh)
            self.changed.set()

    async def _watch(self, session: aiohttp.ClientSession, kind: str) -> None:
        store = self._store(kind)
        async with session.get(f"{self.base}{API}/{kind}", params={"watch": "true"}) as resp:
            resp.raise_for_status()
            async for line in resp.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                obj = event.get("object") if isinstance(event, dict) else None
                key = object_key(obj) if isinstance(obj, dict) else None
                if key is None or not isinstance(obj, dict):
                    continue
                if event.get("type") == "DELETED":
                    if store.pop(key, None) is not None:
                        self.changed.set()
                elif store.get(key) != obj:
                    store[key] = obj
                    self.changed.set()
        raise aiohttp.ClientPayloadError("watch stream ended")
