"""``edgecore join`` end to end against the real HTTPS app: pinning, tokens, files written."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import stat
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from cloudhub import routes
from cloudhub.config import HubSettings
from cloudhub.httpserver.app import bound_port, make_app, serve_https
from cloudhub.hub.module import HubModule
from cloudhub.pki import Authority
from cloudhub.store.embedded import EmbeddedStore
from edgecore import config
from edgecore.join import join, parse_cloud, split_token
from hive.bus import Bus
from tests.support.procs import free_port
from wire.errors import ConfigError, TokenError


@dataclass
class Cloud:
    authority: Authority
    store: EmbeddedStore
    #: the HTTPS port (join endpoints)
    port: int
    #: ``HOST:WS_PORT`` of the edge port, which join checks answers with the cloud's CA
    ws: str
    hub_task: asyncio.Task[None]

    async def close(self, runner: web.AppRunner) -> None:
        self.hub_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.hub_task
        await runner.cleanup()
        await self.store.close()


async def _start(data: Path, host: str, advertise: list[str]) -> tuple[Cloud, web.AppRunner]:
    authority = Authority.load_or_create(data, advertise=advertise)
    store = EmbeddedStore(data / "store.db")
    await store.start()
    bus = Bus()
    bus.register(routes.HUB, "hub")
    hub = HubModule(
        bus=bus,
        settings=HubSettings(bind=host, ws_port=0),
        ssl_context=authority.mtls_ssl_context(),
    )
    await hub.listen()
    hub_task = asyncio.create_task(hub.run(), name="test:hub")
    runner = await serve_https(
        make_app(authority=authority, store=store, presence=hub),
        host=host,
        port=0,
        ssl_context=authority.server_ssl_context(),
    )
    return Cloud(authority, store, bound_port(runner), f"{host}:{hub.port}", hub_task), runner


def _exists(path: Path) -> bool:
    return path.exists()


def _assert_credentials(edge_dir: Path, authority: Authority) -> None:
    assert stat.S_IMODE(edge_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((edge_dir / "node.key").stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((edge_dir / "node.crt").read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "system:node:edge-1"
    )
    ca = x509.load_pem_x509_certificate((edge_dir / "ca.crt").read_bytes())
    assert ca.public_bytes(serialization.Encoding.DER) == authority.ca_der
    key = serialization.load_pem_private_key((edge_dir / "node.key").read_bytes(), None)
    assert key.public_key() == cert.public_key()


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    c, runner = await _start(tmp_path / "cloud", "127.0.0.1", [])
    yield c
    await c.close(runner)


@pytest.fixture
def edge_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "edge"


async def test_join_writes_credentials_config_and_node(cloud: Cloud, edge_dir: Path) -> None:
    """A good token yields key, cert and CA on disk, edgecore.yaml, and a Node object."""
    token = cloud.authority.issue_token(60)
    settings = await join(
        cloud=cloud.ws,
        token=token,
        node_name="edge-1",
        cert_port=cloud.port,
        data_dir=edge_dir,
    )
    _assert_credentials(edge_dir, cloud.authority)

    loaded = config.load(edge_dir / "edgecore.yaml")
    assert loaded == settings
    assert loaded.node_name == "edge-1"
    assert loaded.data_dir.is_absolute()
    assert (loaded.hub.cloud_host, loaded.hub.ws_port, loaded.hub.cert_port) == (
        "127.0.0.1",
        int(cloud.ws.rsplit(":", 1)[1]),
        cloud.port,
    )
    node = await cloud.store.get("node", None, "edge-1")
    assert node["metadata"]["labels"] == {
        "node-role.kubernetes.io/edge": "",
        "kubernetes.io/hostname": "edge-1",
    }


async def test_wrong_ca_hash_is_refused_before_sending_anything(
    cloud: Cloud, edge_dir: Path, tmp_path: Path
) -> None:
    """A token for another CA fails the pin; no CSR is sent and nothing is written."""
    other = Authority.load_or_create(tmp_path / "other", advertise=[])
    token = other.ca_hash + "." + cloud.authority.issue_token(60).split(".", 1)[1]
    with pytest.raises(TokenError, match=r"^CA certificate hash does not match the token$"):
        await join(
            cloud=cloud.ws, token=token, node_name="e", cert_port=cloud.port, data_dir=edge_dir
        )
    assert not _exists(edge_dir)
    assert (await cloud.store.list("node"))[0] == []


async def test_expired_token_is_refused_with_the_cloud_reason(cloud: Cloud, edge_dir: Path) -> None:
    """An expired token fails with the server's reason, "token expired"."""
    token = cloud.authority.issue_token(5, now=time.time() - 60)
    with pytest.raises(TokenError, match="token expired"):
        await join(
            cloud=cloud.ws, token=token, node_name="e", cert_port=cloud.port, data_dir=edge_dir
        )
    assert not _exists(edge_dir)


async def test_forged_token_is_refused(cloud: Cloud, edge_dir: Path) -> None:
    """A JWT not signed by this cloudhub fails, even with the right CA hash."""
    now = int(time.time())
    forged = jwt.encode(
        {"iat": now, "exp": now + 60, "jti": "f"}, "x" * 32 + "-not-the-key", algorithm="HS256"
    )
    token = f"{cloud.authority.ca_hash}.{forged}"
    with pytest.raises(TokenError, match="token signature invalid"):
        await join(
            cloud=cloud.ws, token=token, node_name="e", cert_port=cloud.port, data_dir=edge_dir
        )


@pytest.mark.parametrize("token", ["", "abc", "deadbeef.a.b.c", "0" * 64 + ".a.b", "0" * 64])
async def test_malformed_token_is_refused_locally(token: str, edge_dir: Path) -> None:
    """A token that is not {hash}.{jwt} fails before any network call."""
    with pytest.raises(TokenError, match=r"^malformed token: expected \{ca-hash\}\.\{jwt\}$"):
        await join(cloud="127.0.0.1", token=token, node_name="e", cert_port=1, data_dir=edge_dir)


async def test_unreachable_cloud_is_a_config_error(edge_dir: Path) -> None:
    """Nothing listening: ConfigError naming the URL."""
    port = free_port()
    token = "0" * 64 + ".a.b.c"
    with pytest.raises(ConfigError, match=f"cannot reach cloudhub at https://127.0.0.1:{port}"):
        await join(cloud="127.0.0.1", token=token, node_name="e", cert_port=port, data_dir=edge_dir)


async def test_address_missing_from_server_cert_names_the_fix(tmp_path: Path) -> None:
    """Dialling an address not in the SANs says to add --advertise-address; adding it works."""
    data = tmp_path / "cloud"
    cloud, runner = await _start(data, "127.0.0.2", [])
    try:
        with pytest.raises(ConfigError, match=r"--advertise-address 127\.0\.0\.2"):
            await join(
                cloud=cloud.ws,
                token=cloud.authority.issue_token(60),
                node_name="e",
                cert_port=cloud.port,
                data_dir=tmp_path / "edge",
            )
    finally:
        await cloud.close(runner)
    cloud, runner = await _start(data, "127.0.0.2", ["127.0.0.2"])
    try:
        await join(
            cloud=cloud.ws,
            token=cloud.authority.issue_token(60),
            node_name="e",
            cert_port=cloud.port,
            data_dir=tmp_path / "edge",
        )
    finally:
        await cloud.close(runner)


async def test_token_is_never_logged(
    cloud: Cloud, edge_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Neither a good nor a refused join writes the token (or its JWT) to the log."""
    caplog.set_level(logging.DEBUG)
    good = cloud.authority.issue_token(60)
    await join(cloud=cloud.ws, token=good, node_name="e", cert_port=cloud.port, data_dir=edge_dir)
    bad = cloud.authority.issue_token(1, now=time.time() - 60)
    with pytest.raises(TokenError):
        await join(
            cloud=cloud.ws, token=bad, node_name="e", cert_port=cloud.port, data_dir=edge_dir
        )
    for token in (good, bad):
        assert token.split(".", 1)[1] not in caplog.text


def test_parse_cloud_forms() -> None:
    """HOST, HOST:PORT and IPv6 literals parse; URLs and bad ports are refused."""
    assert parse_cloud("cloud.example.com") == ("cloud.example.com", 10000)
    assert parse_cloud("10.0.0.1:11000") == ("10.0.0.1", 11000)
    assert parse_cloud("[::1]:10001") == ("::1", 10001)
    assert parse_cloud("[::1]") == ("::1", 10000)
    assert parse_cloud("fe80::1") == ("fe80::1", 10000)
    for bad in ("", "https://x", "x:0", "x:99999", "x:abc", ":10000", "[::1"):
        with pytest.raises(ConfigError):
            parse_cloud(bad)


def test_split_token_takes_hash_and_jwt() -> None:
    """The hash is the first 64 hex chars; the rest is the JWT."""
    digest = hashlib.sha256(b"x").hexdigest()
    assert split_token(f"{digest}.a.b.c") == (digest, "a.b.c")
