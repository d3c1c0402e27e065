"""A real cloudhub HTTPS app (admin API) on an embedded store, and edgectl run in-process."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from cloudhub.config import HubSettings
from cloudhub.httpserver.app import bound_port, make_app, serve_https
from cloudhub.hub.module import HubModule
from cloudhub.pki import Authority
from cloudhub.routes import NodePresence
from cloudhub.store.base import ObjectStore
from cloudhub.store.embedded import EmbeddedStore
from edgectl.cli import main
from hive.bus import Bus


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Links:
    """Which nodes are connected: what the hub reports at the process edge (no edges here)."""

    online: dict[str, float] = field(default_factory=dict)

    def presence(self, node: str) -> NodePresence:
        seen = self.online.get(node)
        return NodePresence(online=seen is not None, last_seen=seen)


@dataclass
class Cloud:
    authority: Authority
    store: EmbeddedStore  # or any ObjectStore (Kubernetes tests)
    data_dir: Path
    server: str
    capsys: pytest.CaptureFixture[str]
    runner: web.AppRunner

    async def stop(self) -> None:
        """Stop serving (as cloudhub does when it stops); safe to call twice."""
        await self.runner.cleanup()

    @property
    def globals(self) -> tuple[str, ...]:
        return ("--server", self.server, "--data-dir", str(self.data_dir))

    async def run(self, *argv: str, globals_: tuple[str, ...] | None = None) -> Result:
        """Run edgectl in a thread (its HTTP client blocks) while the loop serves."""
        if globals_ is None:
            globals_ = self.globals
        out = io.StringIO()
        self.capsys.readouterr()
        try:
            code = await asyncio.to_thread(main, [*globals_, *argv], out=out)
        except SystemExit as exc:
            code = int(exc.code or 0)
        return Result(code, out.getvalue(), self.capsys.readouterr().err)


async def serve(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    presence: object | None,
    store: ObjectStore | None = None,
) -> AsyncIterator[Cloud]:
    """An admin API on port 0 over ``store`` (default: a new embedded one, closed after)."""
    data = tmp_path / "data" / "cloud"
    authority = Authority.load_or_create(data, advertise=[])
    owned = store is None
    if store is None:
        store = EmbeddedStore(data / "store.db")
        await store.start()
    if presence is None:
        presence = HubModule(
            bus=Bus(), settings=HubSettings(), ssl_context=authority.mtls_ssl_context()
        )
    runner = await serve_https(
        make_app(authority=authority, store=store, presence=presence),  # type: ignore[arg-type]
        host="127.0.0.1",
        port=0,
        ssl_context=authority.server_ssl_context(),
    )
    server = f"https://127.0.0.1:{bound_port(runner)}"
    cloud = Cloud(authority, store, data, server, capsys, runner)  # type: ignore[arg-type]
    yield cloud
    await cloud.stop()
    if owned:
        await store.close()


@pytest.fixture
async def cloud(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> AsyncIterator[Cloud]:
    async for c in serve(tmp_path, capsys, None):
        yield c


@pytest.fixture
def links() -> Links:
    return Links()


@pytest.fixture
async def linked_cloud(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], links: Links
) -> AsyncIterator[Cloud]:
    """A cloud whose node presence the test sets through ``links``."""
    async for c in serve(tmp_path, capsys, links):
        yield c
