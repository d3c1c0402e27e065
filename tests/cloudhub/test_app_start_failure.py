"""A cloudhub whose start-up fails part-way leaves nothing behind: no listener on the wss
port, no link worker process, no lock on the data dir, and a second start on the same data
dir then works."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudhub import app as cloud_app
from cloudhub.config import CloudSettings, HubSettings
from tests.support.procs import free_port, wait_until
from wire.errors import ConfigError

pytestmark = pytest.mark.timeout(30)


def _children() -> set[int]:
    """The pids of this process's live (not zombie) child processes."""
    me = os.getpid()
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces, so split after its ')'
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == me and state != "Z":
            found.add(int(entry.name))
    return found


@contextlib.contextmanager
def _port_in_use() -> Iterator[int]:
    """A port on 127.0.0.1 that something else listens on meanwhile."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def _can_listen(port: int) -> bool:
    """Whether 127.0.0.1:``port`` can be bound and listened on again (as the hub binds it)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
        return True


async def test_https_port_in_use_closes_wss_listener_and_link_workers(tmp_path: Path) -> None:
    """With the HTTPS port taken, start fails with one ConfigError and leaves no listener,
    no link worker process and no data-dir lock behind."""
    before = _children()
    ws_port = free_port()
    with _port_in_use() as https_port:
        settings = CloudSettings(
            data_dir=tmp_path / "cloud",
            https_port=https_port,
            hub=HubSettings(bind="127.0.0.1", ws_port=ws_port, link_workers=1),
        )
        with pytest.raises(ConfigError, match=f"{https_port}.*HTTPS"):
            await cloud_app.start(settings)
    await wait_until(lambda: not (_children() - before), timeout=10)
    assert _can_listen(ws_port)
    # the lock is released: the same data dir starts now that the port is free
    cloud = await cloud_app.start(
        settings.model_copy(
            update={"https_port": 0, "hub": HubSettings(bind="127.0.0.1", ws_port=0)}
        )
    )
    try:
        assert cloud.https_port > 0
    finally:
        await cloud.stop()


async def test_wss_port_in_use_releases_store_and_lock(tmp_path: Path) -> None:
    """With the wss port taken, start fails with one ConfigError and closes the store and the
    data dir's lock it had opened: the next start on the same data dir works."""
    with _port_in_use() as ws_port:
        settings = CloudSettings(
            data_dir=tmp_path / "cloud",
            https_port=0,
            hub=HubSettings(bind="127.0.0.1", ws_port=ws_port, link_workers=0),
        )
        with pytest.raises(ConfigError, match=f"{ws_port}.*wss"):
            await cloud_app.start(settings)
    cloud = await cloud_app.start(
        settings.model_copy(update={"hub": HubSettings(bind="127.0.0.1", ws_port=0)})
    )
    try:
        assert cloud.ws_port > 0
    finally:
        await cloud.stop()
