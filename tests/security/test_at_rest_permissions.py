"""Keys, tokens and databases are created owner-only; their directories are 0700."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cloudhub.app import CloudApp
from tests.security.conftest import StartEdge, admin, join_node
from tests.support.procs import listening_addresses, wait_until

pytestmark = pytest.mark.timeout(20)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _sqlite_files(db: Path) -> list[Path]:
    candidates = (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"))
    return [p for p in candidates if p.exists()]


async def test_cloud_secrets_are_owner_only(cloud: CloudApp) -> None:
    """ca.key, server.key, token.key, admin.token, auth.db and store.db: 0600; the dir: 0700."""
    data = cloud.settings.data_dir
    await admin(cloud, "POST", "/tokens", {"ttl_seconds": 60, "uses": 1})
    assert _mode(data) == 0o700
    for name in ("ca.key", "server.key", "token.key", "admin.token"):
        assert _mode(data / name) == 0o600, name
    for db in ("auth.db", "store.db"):
        files = _sqlite_files(data / db)
        assert files
        for f in files:
            assert _mode(f) == 0o600, f.name


async def test_edge_secrets_are_owner_only(
    cloud: CloudApp, start_edge: StartEdge, tmp_path: Path
) -> None:
    """node.key, edgecore.yaml and edgecore.db (with its WAL): 0600; the edge dir: 0700."""
    settings = await join_node(cloud, tmp_path)
    edge = await start_edge(settings)
    await wait_until(lambda: edge.hub.connected.is_set(), timeout=5)
    assert _mode(settings.data_dir) == 0o700
    assert _mode(settings.key_path) == 0o600
    assert _mode(settings.data_dir / "edgecore.yaml") == 0o600
    files = _sqlite_files(settings.db_path)
    assert settings.db_path in files
    for f in files:
        assert _mode(f) == 0o600, f.name


async def test_running_edge_listens_on_loopback_only(
    cloud: CloudApp, start_edge: StartEdge, tmp_path: Path
) -> None:
    """A running edgecore's internal MQTT broker and local API listen on 127.0.0.1 only."""
    settings = await join_node(cloud, tmp_path)
    edge = await start_edge(settings)
    mqtt_port = edge.settings.mqtt.port
    await wait_until(lambda: listening_addresses(mqtt_port), timeout=10)
    assert listening_addresses(mqtt_port) == {"0100007F"}  # 127.0.0.1, nothing else
    assert listening_addresses(edge.local_api_port) == {"0100007F"}
