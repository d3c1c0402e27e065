"""A cloudhub (or its HTTPS port alone) in the test's (or benchmark's) own process, and edges
joined to it."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from cloudhub import app as cloud_app
from cloudhub.app import CloudApp
from cloudhub.config import CloudSettings, HubSettings
from cloudhub.httpserver.app import bound_port, make_app, serve_https
from cloudhub.hub.module import HubModule
from cloudhub.pki import Authority
from cloudhub.store.base import ObjectStore
from edgecore.config import EdgeSettings
from edgecore.join import join
from hive.bus import Bus
from tests.support.procs import free_port


def cloud_settings(data_dir: Path, **fields: Any) -> CloudSettings:
    """A cloudhub for this process: on 127.0.0.1, ports the OS picks, no link workers;
    ``fields`` add to or replace these settings."""
    base: dict[str, Any] = {
        "data_dir": data_dir,
        "https_port": 0,
        "hub": HubSettings(bind="127.0.0.1", ws_port=0, link_workers=0),
    }
    return CloudSettings(**(base | fields))


async def start_cloud(data_dir: Path, **fields: Any) -> CloudApp:
    """A cloudhub started in this process with :func:`cloud_settings` (the caller stops it)."""
    return await cloud_app.start(cloud_settings(data_dir, **fields))


@contextlib.asynccontextmanager
async def https_port(
    authority: Authority, store: ObjectStore, *, host: str = "127.0.0.1"
) -> AsyncIterator[str]:
    """cloudhub's HTTPS port alone (``/ca.crt``, ``/edge.crt``, the admin API) over ``store``,
    on ``host`` and a port the OS picks: yields its base URL. Presence comes from a hub
    module that never listens (every node offline)."""
    hub = HubModule(bus=Bus(), settings=HubSettings(), ssl_context=authority.mtls_ssl_context())
    runner = await serve_https(
        make_app(authority=authority, store=store, presence=hub),
        host=host,
        port=0,
        ssl_context=authority.server_ssl_context(),
    )
    try:
        yield f"https://{host}:{bound_port(runner)}"
    finally:
        await runner.cleanup()


def trusting_session(authority: Authority, *, admin: bool = False) -> aiohttp.ClientSession:
    """An HTTP client that trusts ``authority``'s CA only; with ``admin``, it sends the admin
    token on every request."""
    ctx = ssl.create_default_context(cadata=authority.ca_der)
    headers = {"Authorization": f"Bearer {authority.admin_token}"} if admin else {}
    return aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(ssl=ctx))


async def join_node(
    cloud: CloudApp, node: str, data_dir: Path, *, ttl: float = 600, **token: Any
) -> EdgeSettings:
    """Join ``node`` to ``cloud`` with a fresh token (valid ``ttl`` seconds; ``token`` names
    its limits: ``uses``, ``node``...): its certificate and settings in ``data_dir``."""
    return await join(
        cloud=f"127.0.0.1:{cloud.ws_port}",
        token=cloud.authority.issue_token(ttl, **token),
        node_name=node,
        cert_port=cloud.https_port,
        data_dir=data_dir,
    )


async def join_local_edge(cloud: CloudApp, node: str, data_dir: Path) -> EdgeSettings:
    """:func:`join_node`, with settings for an edgecore started in this process: its local API
    on a free port and its own mosquitto port (never the shared 1883)."""
    settings = await join_node(cloud, node, data_dir)
    settings.meta.local_api = "127.0.0.1:0"
    settings.mqtt.port = free_port()
    return settings


def edge_tls(edge: EdgeSettings) -> ssl.SSLContext:
    """A client TLS context that trusts the cloud's CA and presents the edge's certificate."""
    ctx = ssl.create_default_context(cafile=str(edge.ca_path))
    ctx.load_cert_chain(str(edge.cert_path), str(edge.key_path))
    return ctx
