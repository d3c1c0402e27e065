"""Where KubeStore finds its cluster, and the one-line errors when it cannot."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudhub.store.kubernetes import KubeStore
from tests.support.kubeapi import KubeApiEmulator
from tests.support.procs import free_port
from wire.errors import ConfigError, StoreError

pytestmark = pytest.mark.timeout(20)


async def test_an_explicit_kubeconfig_is_used(kubeapi: KubeApiEmulator, kubeconfig: Path) -> None:
    """``from_config(path)`` talks to the server that file names."""
    store = KubeStore.from_config(kubeconfig)
    await store.start()
    try:
        assert await store.list("configmap") == ([], kubeapi.resource_version)
    finally:
        await store.close()


async def test_kubeconfig_env_is_used_without_a_path(
    kubeapi: KubeApiEmulator, kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no path, ``$KUBECONFIG`` names the cluster."""
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    store = KubeStore.from_config(None)
    await store.start()
    try:
        await store.list("node")
        assert kubeapi.count("list", "/api/v1/nodes") == 1
    finally:
        await store.close()


def test_an_unreadable_kubeconfig_is_a_one_line_config_error(tmp_path: Path) -> None:
    """Garbage or a missing file: ConfigError naming the file, on one line."""
    garbage = tmp_path / "kubeconfig"
    garbage.write_text("clusters: [unclosed\n")
    for path in (garbage, tmp_path / "missing"):
        with pytest.raises(ConfigError) as err:
            KubeStore.from_config(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_no_config_outside_a_cluster_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither a path, nor KUBECONFIG, nor an in-cluster service account: say so."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match="in-cluster"):
        KubeStore.from_config(None)


async def test_an_unreachable_server_fails_start(tmp_path: Path) -> None:
    """start() checks the API answers, so a wrong address fails at once with StoreError."""
    port = free_port()
    emulator = KubeApiEmulator(port=port)
    kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig")  # nothing listens there
    store = KubeStore.from_config(kubeconfig)
    with pytest.raises(StoreError, match="cannot reach"):
        await store.start()
    await store.close()
