"""In-process cloud and edges for the security tests: the real cloudhub/edgecore compositions
(``cloudhub.app.start``, ``edgecore.join``, ``edgecore.app.start``) on 127.0.0.1 and port 0,
in the test's event loop, so each test takes a second or less."""

from __future__ import annotations

import datetime as dt
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from websockets.asyncio.client import ClientConnection, connect

from cloudhub import app as cloud_app
from cloudhub.config import CloudSettings, HubSettings
from edgecore import app as edge_app
from edgecore import config as edge_config
from edgecore.config import EdgeSettings
from tests.support import inproc
from tests.support.inproc import edge_tls
from tests.support.procs import free_port
from wire.codec import encode
from wire.messages import Message

PROJECT = "e632aba927ea4ac2b575ec1603d56f10"

StartCloud = Callable[..., Awaitable[cloud_app.CloudApp]]


@pytest.fixture
async def start_cloud(tmp_path: Path) -> AsyncIterator[StartCloud]:
    """Start an in-process cloudhub in ``tmp_path/cloud``; keyword overrides for the settings.

    ``validity`` (a timedelta) sets ``--node-cert-validity``, ``https_port`` the HTTPS port;
    other keywords go to HubSettings (``ws_port`` to reuse a port after a restart).
    """
    running: list[cloud_app.CloudApp] = []

    async def start(
        *, validity: dt.timedelta = dt.timedelta(days=30), https_port: int = 0, **hub: Any
    ) -> cloud_app.CloudApp:
        settings = CloudSettings(
            data_dir=tmp_path / "cloud",
            https_port=https_port,
            hub=HubSettings(**{"bind": "127.0.0.1", "ws_port": 0, **hub}),
            node_cert_validity=validity,
            auth_refresh_interval=0.2,
        )
        app = await cloud_app.start(settings)
        running.append(app)
        return app

    yield start
    for app in running:
        await app.stop()


@pytest.fixture
async def cloud(start_cloud: StartCloud) -> cloud_app.CloudApp:
    return await start_cloud()


async def join_node(
    cloud: cloud_app.CloudApp, tmp_path: Path, name: str = "edge-1", **token: Any
) -> EdgeSettings:
    """``edgecore join`` into ``tmp_path/name`` with a fresh token (``uses``, ``node``...)."""
    return await inproc.join_node(cloud, name, tmp_path / name, ttl=3600, **token)


def ws_url(cloud: cloud_app.CloudApp, node: str) -> str:
    return f"wss://127.0.0.1:{cloud.ws_port}/{PROJECT}/{node}/events"


def link(cloud: cloud_app.CloudApp, settings: EdgeSettings, **kw: Any) -> Any:
    """A hand-driven websocket link authenticated with ``settings``' certificate."""
    return connect(ws_url(cloud, settings.node_name), ssl=edge_tls(settings), **kw)


async def send(ws: ClientConnection, msg: Message) -> None:
    await ws.send(encode(msg))


async def answer_to(ws: ClientConnection, msg: Message) -> dict[str, Any]:
    """The cloud's response/error whose parent is ``msg``, skipping everything else."""
    while True:
        frame = json.loads(await ws.recv())
        if frame["header"]["parent_msg_id"] == msg.id and frame["route"]["operation"] in (
            "response",
            "error",
        ):
            return frame  # type: ignore[no-any-return]


def write_edge_config(settings: EdgeSettings, **sections: dict[str, Any]) -> EdgeSettings:
    """Merge ``sections`` (e.g. ``cert={...}``) into edgecore.yaml and return the new settings."""
    path = settings.data_dir / edge_config.CONFIG_FILE
    raw = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(raw))
    return edge_config.load(path)


StartEdge = Callable[[EdgeSettings], Awaitable[edge_app.EdgeApp]]


@pytest.fixture
async def start_edge() -> AsyncIterator[StartEdge]:
    """Run an in-process edgecore (local API on a free port, fast heartbeat)."""
    running: list[edge_app.EdgeApp] = []

    async def start(settings: EdgeSettings) -> edge_app.EdgeApp:
        settings = settings.model_copy(deep=True)
        settings.meta.local_api = "127.0.0.1:0"
        settings.mqtt.port = free_port()  # the internal mosquitto: never the shared 1883
        settings.hub.heartbeat = 0.5
        settings.hub.reconnect_initial = 0.05
        settings.hub.reconnect_cap = 0.5
        settings.runtime.kind = "none"  # pods stay metadata, whatever runtime the machine has
        app = await edge_app.start(settings)
        running.append(app)
        return app

    yield start
    for app in running:
        if not app.stopped.is_set():
            await app.stop()


async def admin(
    cloud: cloud_app.CloudApp,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = "admin",
) -> tuple[int, Any]:
    """Call the admin API (``/admin/v1`` + ``path``); ``token="admin"`` uses the real one."""
    import aiohttp

    headers = {}
    if token == "admin":
        headers["Authorization"] = f"Bearer {cloud.authority.admin_token}"
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    ctx = ssl.create_default_context(cadata=cloud.authority.ca_pem.decode())
    url = f"https://127.0.0.1:{cloud.https_port}/admin/v1{path}"
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, json=body, headers=headers, ssl=ctx) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text
