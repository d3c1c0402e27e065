"""Kubernetes mode: a stock edge's acked record is one ConfigMap; a restarted replica reads it
back and sends the reconnecting stock edge only what changed."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cloudhub import app as cloud_app
from cloudhub.hub.acked import AckedRecord
from cloudhub.k8s.acked import DATA_KEY, KubeAcked, configmap_name
from cloudhub.k8s.api import KubeApi
from cloudhub.k8s.labels import MANAGED_BY_CLOUDHUB, MANAGED_BY_LABEL
from tests.k8s.objects import pod
from tests.support.inproc import cloud_settings, join_node
from tests.support.kubeapi import KubeApiEmulator
from tests.support.procs import wait_until
from tests.support.stock_edge import stock_connect

pytestmark = pytest.mark.timeout(60)

PODS = [f"p{i:02d}" for i in range(10)]


def _names(name: str) -> Callable[[dict[str, Any]], bool]:
    """A frame match: the frame's resource ends with ``name``."""

    def match(frame: dict[str, Any]) -> bool:
        return str(frame["route"]["resource"]).endswith(name)

    return match


async def test_a_restarted_replica_sends_a_stock_edge_only_what_changed(
    kubeapi: KubeApiEmulator, kubeconfig: Path, tmp_path: Path
) -> None:
    """One ConfigMap holds the node's record; after a restart the edge gets the one pod
    changed meanwhile, within 0.5 s of connecting, and nothing else."""
    settings = cloud_settings(tmp_path / "cloud", kubeconfig=kubeconfig, replica="a")
    for name in PODS:
        kubeapi.seed(pod(name, "edge-1"))
    cloud = await cloud_app.start(settings)
    try:
        edge = await join_node(cloud, "edge-1", tmp_path / "edge-1")
        async with stock_connect(cloud, edge, "edge-1") as link:
            for name in PODS:
                await link.until(_names(name))
            session = cloud.hub.sessions["edge-1"]
            await wait_until(lambda: session.downstream.backlog == 0, timeout=5)
        await wait_until(lambda: "edge-1" not in cloud.hub.sessions, timeout=5)
    finally:
        await cloud.stop()
    record = kubeapi.get("configmaps", "edgebridge", configmap_name("edge-1"))
    assert record is not None and DATA_KEY in record["binaryData"]

    changed = pod("p04", "edge-1")
    changed["metadata"]["annotations"] = {"changed": "1"}
    kubeapi.seed(changed)
    cloud = await cloud_app.start(settings)
    try:
        loop = asyncio.get_running_loop()
        async with stock_connect(cloud, edge, "edge-1") as link:
            began = loop.time()
            await link.until(lambda f: f["route"]["resource"] == "default/pod/p04", timeout=10)
            took = loop.time() - began
            session = cloud.hub.sessions["edge-1"]
            await wait_until(lambda: session.started and session.downstream.backlog == 0)
            assert [f["route"]["resource"] for f in link.objects()] == ["default/pod/p04"]
        assert took <= 0.5
    finally:
        await cloud.stop()


async def test_a_deleted_nodes_record_goes_with_it(
    kubeapi: KubeApiEmulator, kubeconfig: Path, tmp_path: Path
) -> None:
    """edgectl delete node: the node's acked ConfigMap is removed with its leases."""
    cloud = await cloud_app.start(
        cloud_settings(tmp_path / "cloud", kubeconfig=kubeconfig, replica="a")
    )
    try:
        await join_node(cloud, "edge-1", tmp_path / "edge-1")
        kubeapi.seed(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": configmap_name("edge-1"), "namespace": "edgebridge"},
                "binaryData": {DATA_KEY: ""},
            }
        )
        await cloud.store.delete("node", None, "edge-1")
        await wait_until(
            lambda: kubeapi.get("configmaps", "edgebridge", configmap_name("edge-1")) is None
        )
    finally:
        await cloud.stop()


async def test_a_record_an_older_cloudhub_wrote_is_read_and_labelled_on_its_next_write(
    kubeapi: KubeApiEmulator, api: KubeApi
) -> None:
    """A record without the managed-by label still loads by name; the next save carries the
    label, which keeps it off the configmap watch from then on."""
    old = AckedRecord(serial=7, acked={"default/pod/a": "5"})
    name = configmap_name("edge-1")
    kubeapi.seed(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "edgebridge"},
            "binaryData": {DATA_KEY: base64.b64encode(old.encode()).decode()},
        }
    )
    acked = KubeAcked(api, namespace="edgebridge")
    assert await acked.load("edge-1") == old
    new = AckedRecord(serial=7, acked={"default/pod/a": "6"})
    await acked.save({"edge-1": new})
    stored = kubeapi.get("configmaps", "edgebridge", name)
    assert stored is not None
    assert stored["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY_CLOUDHUB
    assert await acked.load("edge-1") == new
