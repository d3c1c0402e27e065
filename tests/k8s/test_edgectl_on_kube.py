"""edgectl's kubectl habits work the same with a Kubernetes cluster as the store."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from cloudhub.store.kubernetes import KubeStore
from tests.edgectl.conftest import Cloud, Links, serve

pytestmark = pytest.mark.timeout(60)


def _pod(name: str, **labels: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"nodeName": "edge-1", "containers": [{"name": "c", "image": "busybox"}]},
    }


@pytest.fixture
async def cloud(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], store: KubeStore
) -> AsyncIterator[Cloud]:
    async for c in serve(tmp_path, capsys, Links(), store):
        yield c


async def test_selector_version_and_not_found_on_kube(cloud: Cloud) -> None:
    """-l, version (store: kubernetes) and kubectl's NotFound line, with the cluster's store."""
    await cloud.store.apply([_pod("web", app="web"), _pod("db", app="db")])
    names = await cloud.run("get", "pods", "-l", "app=web", "-o", "name")
    assert (names.code, names.out) == (0, "pod/web\n"), names.err
    version = await cloud.run("version")
    assert "(store: kubernetes)" in version.out
    missing = await cloud.run("get", "pod", "-n", "default", "nope")
    assert (missing.code, missing.err) == (
        1,
        'Error from server (NotFound): pods "nope" not found\n',
    )


async def test_watch_follows_the_cluster(cloud: Cloud) -> None:
    """The admin API's watch streams the cluster's changes."""
    await cloud.store.apply([_pod("web", app="web")])
    ctx = ssl.create_default_context(cafile=str(cloud.data_dir / "ca.crt"))
    headers = {"Authorization": f"Bearer {cloud.authority.admin_token}"}
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx), headers=headers) as s,
        s.get(f"{cloud.server}/admin/v1/pods?watch=true&labelSelector=app%3Dweb") as response,
    ):

        async def change() -> tuple[str, str]:
            while True:
                line = await asyncio.wait_for(response.content.readline(), 10)
                event = json.loads(line)
                if event["type"] != "BOOKMARK":
                    return event["type"], event["object"]["metadata"]["name"]

        assert await change() == ("ADDED", "web")
        await cloud.store.apply([_pod("db", app="db"), _pod("web2", app="web")])
        assert await change() == ("ADDED", "web2")
        await cloud.store.delete("pod", "default", "web")
        assert await change() == ("DELETED", "web")
