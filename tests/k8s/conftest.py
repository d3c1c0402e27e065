"""Fixtures for the Kubernetes backend: an emulated API server and clients bound to it.

Everything talks real HTTP to :class:`tests.support.kubeapi.KubeApiEmulator` on 127.0.0.1;
nothing is patched. Timeouts are shrunk (bookmarks every 0.2 s, a 1 s inactivity timeout)
so reconnect behaviour shows within a test's time budget.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cloudhub.k8s.api import KubeApi
from cloudhub.store.kubernetes import KubeSettings, KubeStore
from tests.support.kubeapi import KubeApiEmulator


@pytest.fixture
async def kubeapi() -> AsyncIterator[KubeApiEmulator]:
    async with KubeApiEmulator(bookmark_interval=0.2) as api:
        api.install_edgebridge()
        yield api


@pytest.fixture
def kubeconfig(kubeapi: KubeApiEmulator, tmp_path: Path) -> Path:
    return kubeapi.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
async def api(kubeconfig: Path) -> AsyncIterator[KubeApi]:
    client = KubeApi.from_config(kubeconfig)
    yield client
    await client.close()


@pytest.fixture
async def store(kubeconfig: Path) -> AsyncIterator[KubeStore]:
    settings = KubeSettings(inactivity_timeout=1.0, backoff_cap=0.2, watch_timeout=30)
    s = KubeStore.from_config(kubeconfig, settings=settings)
    await s.start()
    yield s
    await s.close()
