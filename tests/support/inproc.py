"""Edges joined to a cloudhub running in the test's (or benchmark's) own process."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from cloudhub import app as cloud_app
from cloudhub.app import CloudApp
from cloudhub.config import CloudSettings, HubSettings
from edgecore.config import EdgeSettings
from edgecore.join import join
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
