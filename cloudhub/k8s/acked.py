"""Stock edges' acked records (:mod:`cloudhub.hub.acked`) in the cluster: one ConfigMap per node.

``edgebridge-acked-NODE`` in cloudhub's namespace, ``binaryData["acked.json.gz"]`` holding the
record (gzip of JSON, ~8 bytes a key). Not one object per (node, object) as stock cloudcore's
ObjectSyncs: a node costs one small write per flush interval while its delivery moves, and
none while it is idle. Only the replica serving the node writes it (it holds the node's
ownership Lease), so writes are plain replaces; a record a replica that lost the node writes
late is at worst older than the truth, which costs resends, never a missed change (see the
module notes there). The record is labelled as cloudhub's own (:mod:`cloudhub.k8s.labels`):
the store's configmap list and watch leave it out, so a write does not come back to cloudhub
as a watch event and is never mirrored to an edge; it is read by name. A deleted Node's record
goes with its leases (:mod:`cloudhub.k8s.reaper`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Mapping
from typing import Any

from cloudhub.hub.acked import AckedRecord
from cloudhub.k8s.api import CONFIGMAPS, KubeApi
from cloudhub.k8s.labels import MANAGED_BY_CLOUDHUB, MANAGED_BY_LABEL
from wire.errors import NotFound, StoreError

log = logging.getLogger(__name__)

#: ConfigMap name prefix; the node's name follows
PREFIX = "edgebridge-acked-"
DATA_KEY = "acked.json.gz"
#: the API server refuses a ConfigMap over 1 MiB; a record over this is not written (that
#: node's stock edge gets full resyncs)
MAX_BYTES = 900 * 1024
#: replaces in flight at once during a flush
_CONCURRENCY = 8


def configmap_name(node: str) -> str:
    return f"{PREFIX}{node}"


class KubeAcked:
    """An :class:`~cloudhub.hub.acked.AckedStore` of ConfigMaps."""

    #: each write is an API request: a busy node's record at most every 10 s (a link's end
    #: and a stop still write at once)
    interval = 10.0

    def __init__(self, api: KubeApi, *, namespace: str) -> None:
        self._api = api
        self._namespace = namespace

    async def load(self, node: str) -> AckedRecord | None:
        try:
            obj = await self._api.get(CONFIGMAPS, self._namespace, configmap_name(node))
        except NotFound:
            return None
        data = (obj.get("binaryData") or {}).get(DATA_KEY)
        if not isinstance(data, str):
            raise StoreError(f"ConfigMap {configmap_name(node)} holds no {DATA_KEY}")
        try:
            return AckedRecord.decode(base64.b64decode(data, validate=True))
        except (ValueError, binascii.Error) as exc:
            raise StoreError(f"ConfigMap {configmap_name(node)}: {exc}") from exc

    async def save(self, records: Mapping[str, AckedRecord]) -> None:
        gate = asyncio.Semaphore(_CONCURRENCY)
        failed: list[str] = []

        async def one(node: str, record: AckedRecord) -> None:
            async with gate:
                try:
                    await self._write(node, record)
                except StoreError as exc:
                    failed.append(f"{node}: {exc}")

        async with asyncio.TaskGroup() as tg:
            for node, record in records.items():
                tg.create_task(one(node, record))
        if failed:
            raise StoreError(f"{len(failed)} acked records not written ({failed[0]})")

    async def _write(self, node: str, record: AckedRecord) -> None:
        data = record.encode()
        name = configmap_name(node)
        if len(data) > MAX_BYTES:
            try:
                await self._api.delete(CONFIGMAPS, self._namespace, name)
            except NotFound:
                pass
            return
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": self._namespace,
                "labels": {
                    "app.kubernetes.io/part-of": "edgebridge",
                    "app.kubernetes.io/component": "stock-edge-acked",
                    # keeps it off cloudhub's configmap watch (a replace adds it to a record
                    # an older cloudhub wrote without it)
                    MANAGED_BY_LABEL: MANAGED_BY_CLOUDHUB,
                },
            },
            "binaryData": {DATA_KEY: base64.b64encode(data).decode()},
        }
        try:
            await self._api.replace(CONFIGMAPS, self._namespace, name, body)
        except NotFound:
            await self._api.create(CONFIGMAPS, self._namespace, body)

    async def close(self) -> None:
        return None  # the store owns the connection


async def forget(api: KubeApi, namespace: str, node: str) -> bool:
    """Delete a deleted node's record; whether there was one (a failure is logged only: a
    node joined again under the name gets a new certificate, so a stale record is unused)."""
    try:
        await api.delete(CONFIGMAPS, namespace, configmap_name(node))
    except NotFound:
        return False
    except StoreError as exc:
        log.warning("cannot delete the acked record of deleted node %s: %s", node, exc)
        return False
    return True


__all__ = ["DATA_KEY", "KubeAcked", "configmap_name", "forget"]
