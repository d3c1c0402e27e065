"""The soak's parts (``bench/soak.py``): the objects it applies, the counting twin mapper, one
edge with its fault proxy, and the watcher of the cloud's Device status."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from bench.cloud import Admin
from bench.twin_parts import EdgeCore
from edgecore import config
from tests.support.proxy import FaultProxy

NAMESPACE = "default"
MODEL = "soak-counter"
PROPERTY = "count"


def model_object() -> dict[str, Any]:
    prop = {"name": PROPERTY, "type": "INT", "accessMode": "ReadOnly"}
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": MODEL, "namespace": NAMESPACE},
        "spec": {"protocol": "virtual", "properties": [prop]},
    }


def device_object(name: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "deviceModelRef": {"name": MODEL},
            "nodeName": node,
            "protocol": {"protocolName": "virtual"},
            "properties": [{"name": PROPERTY, "reportToCloud": True}],
        },
    }


def workload(node: str, generation: int) -> list[dict[str, Any]]:
    """The pod bound to ``node`` and the configmap it uses, at ``generation``."""
    name = f"soak-{node}"
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": {"generation": str(generation)},
    }
    container = {
        "name": "app",
        "image": "registry.example.com/soak/app:1.0",
        "envFrom": [{"configMapRef": {"name": name}}],
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "annotations": {"soak/generation": str(generation)},
        },
        "spec": {"nodeName": node, "containers": [container]},
    }
    return [cm, pod]


# -- the twin mapper ------------------------------------------------------------------------


@dataclass
class CountingMapper:
    """Reports ``count`` = 1, 2, 3, … for one device; remembers which reports the edge accepted."""

    device: str
    port: int
    interval: float
    sent: int = 0
    accepted: list[int] = field(default_factory=list)
    refused: int = 0
    connects: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def max_accepted(self) -> int:
        return max(self.accepted, default=0)

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                await self._session()
            except aiomqtt.MqttError:
                pass  # the broker was killed: edgecore restarts it
            if not self._stop.is_set():
                await asyncio.sleep(0.2)

    async def _session(self) -> None:
        base = f"$hw/events/device/{self.device}/twin/update"
        async with aiomqtt.Client(
            "127.0.0.1", self.port, identifier=f"soak-{self.device}-{self.connects}", keepalive=5
        ) as client:
            self.connects += 1
            await client.subscribe(f"{base}/result", qos=1)
            receiver = asyncio.create_task(self._receive(client))
            try:
                while not self._stop.is_set() and not receiver.done():
                    self.sent += 1
                    value = self.sent
                    payload = {
                        "event_id": str(value),
                        "timestamp": int(time.time() * 1000),
                        "twin": {
                            PROPERTY: {
                                "actual": {"value": str(value)},
                                "metadata": {"type": "int"},
                            }
                        },
                    }
                    await client.publish(base, json.dumps(payload), qos=1)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), self.interval)
                if receiver.done():
                    receiver.result()
                # the answers to the last reports
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(receiver), 1.0)
            finally:
                receiver.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await receiver

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            raw = message.payload
            try:
                data = json.loads(raw if isinstance(raw, str | bytes | bytearray) else "")
                value = int(data["event_id"])
            except (ValueError, KeyError, TypeError):
                continue
            code = data.get("code")
            if code is None or 200 <= int(code) < 300:
                self.accepted.append(value)
            else:
                self.refused += 1


# -- one edge ---------------------------------------------------------------------------------


@dataclass
class SoakEdge:
    node: str
    core: EdgeCore
    proxy: FaultProxy
    mapper: CountingMapper | None = None

    @property
    def device(self) -> str:
        return f"counter-{self.node}"

    def tune(self, *, heartbeat: float) -> None:
        """Set the link's keepalive in the ``edgecore.yaml`` that join wrote."""
        path = self.core.data_dir / config.CONFIG_FILE
        settings = config.load(path)
        settings.hub.heartbeat = heartbeat
        config.save(settings, path)

    def local(self, path: str) -> dict[str, Any] | None:
        """GET on the edge's local API; None when it does not answer 200."""
        url = f"http://127.0.0.1:{self.core.api_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                body: dict[str, Any] = json.loads(resp.read())
                return body
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def twin_actual(self) -> str | None:
        """The edge's own actual value of the device's ``count`` (its SQLite twin)."""
        try:
            with contextlib.closing(
                sqlite3.connect(f"file:{self.core.db_path}?mode=ro", uri=True, timeout=1.0)
            ) as db:
                row = db.execute(
                    "SELECT actual FROM device_twin WHERE name = ? AND deviceid LIKE ?",
                    (PROPERTY, f"%{self.device}"),
                ).fetchone()
        except sqlite3.Error:
            return None
        if row is None or row[0] is None:
            return None
        try:
            actual = json.loads(row[0])
        except ValueError:
            return str(row[0])
        return str(actual.get("value")) if isinstance(actual, dict) else str(actual)


# -- the cloud's view -------------------------------------------------------------------------


def reported(device: dict[str, Any]) -> tuple[tuple[int, int], int] | None:
    """``((cloudVersion, edgeVersion), value)`` of the ``count`` the cloud holds, or None."""
    for twin in (device.get("status") or {}).get("twins") or []:
        if twin.get("propertyName") != PROPERTY:
            continue
        rep = twin.get("reported") or {}
        meta = rep.get("metadata") or {}
        try:
            version = (int(meta.get("cloudVersion", 0)), int(meta.get("edgeVersion", 0)))
            return version, int(rep["value"])
        except (KeyError, ValueError, TypeError):
            return None
    return None


@dataclass
class CloudWatch:
    """Polls the cloud's Devices; a version or value that goes backwards is a revert."""

    admin: Admin
    interval: float = 0.5
    seen: dict[str, tuple[tuple[int, int], int]] = field(default_factory=dict)
    reverts: list[str] = field(default_factory=list)
    polls: int = 0

    async def run(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # cloudhub may be down right now
                await self.poll()
            await asyncio.sleep(self.interval)

    async def poll(self) -> dict[str, dict[str, Any]]:
        listed = await self.admin.list("devices")
        self.polls += 1
        out: dict[str, dict[str, Any]] = {}
        for device in listed:
            name = str(device["metadata"]["name"])
            out[name] = device
            now = reported(device)
            if now is None:
                continue
            before = self.seen.get(name)
            if before is not None and (now[0] < before[0] or now[1] < before[1]):
                self.reverts.append(f"{name}: {before} -> {now}")
            if before is None or now[0] >= before[0]:
                self.seen[name] = now
        return out
