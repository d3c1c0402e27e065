"""The admin API's credential check and join-token endpoint, over real HTTPS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from cloudhub.config import HubSettings
from cloudhub.httpserver.app import make_app, serve_https
from cloudhub.hub.module import HubModule
from cloudhub.pki import Authority
from cloudhub.store.embedded import EmbeddedStore
from hive.bus import Bus
from tests.support.inproc import https_port, trusting_session
from wire.errors import ConfigError


@dataclass
class Server:
    authority: Authority
    base: str
    session: aiohttp.ClientSession


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    authority = Authority.load_or_create(tmp_path / "cloud", advertise=[])
    store = EmbeddedStore(tmp_path / "cloud" / "store.db")
    await store.start()
    async with https_port(authority, store) as base, trusting_session(authority) as session:
        yield Server(authority, base, session)
    await store.close()


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic abc", "Bearer ", "bearer"])
async def test_admin_api_refuses_missing_or_wrong_token(
    server: Server, authorization: str | None
) -> None:
    """Every admin path, even unknown ones, answers 401 JSON without the admin token."""
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in [
        ("GET", "/admin/v1/nodes"),
        ("POST", "/admin/v1/tokens"),
        ("GET", "/admin/v1/nope/x/y/z"),
    ]:
        async with server.session.request(method, server.base + path, headers=headers) as resp:
            assert resp.status == 401, path
            assert "admin token" in (await resp.json())["error"]


async def test_join_token_from_the_api_verifies(server: Server) -> None:
    """POST /tokens returns a token the authority accepts, with the requested lifetime."""
    headers = {"Authorization": f"Bearer {server.authority.admin_token}"}
    async with server.session.post(
        server.base + "/admin/v1/tokens", json={"ttl_seconds": 90}, headers=headers
    ) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["token"].startswith(server.authority.ca_hash + ".")
    claims = server.authority.verify_join_token(body["token"])
    assert claims["exp"] - claims["iat"] == 90
    assert body["expires_at"].endswith("Z")


@pytest.mark.parametrize("payload", [{"ttl_seconds": 0}, {"ttl_seconds": -5}, {"ttl": 5}])
async def test_bad_token_request_is_400(server: Server, payload: dict[str, float]) -> None:
    """A non-positive TTL or an unknown field is a JSON 400."""
    headers = {"Authorization": f"Bearer {server.authority.admin_token}"}
    async with server.session.post(
        server.base + "/admin/v1/tokens", json=payload, headers=headers
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"].startswith("invalid request")


async def test_unknown_admin_endpoint_is_json_404(server: Server) -> None:
    """An unknown path under /admin/v1 answers a JSON 404 once authenticated."""
    headers = {"Authorization": f"Bearer {server.authority.admin_token}"}
    async with server.session.get(server.base + "/admin/v1/a/b", headers=headers) as resp:
        assert resp.status == 404
        assert "no such endpoint" in (await resp.json())["error"]


async def test_healthz_and_ca_need_no_credential(server: Server) -> None:
    """/healthz and /ca.crt are public."""
    async with server.session.get(server.base + "/healthz") as resp:
        assert resp.status == 200 and await resp.text() == "ok"
    async with server.session.get(server.base + "/ca.crt") as resp:
        assert resp.status == 200
        assert await resp.read() == server.authority.ca_der


async def test_port_in_use_is_a_config_error(server: Server, tmp_path: Path) -> None:
    """Binding a port that is taken raises ConfigError naming the address."""
    port = int(server.base.rsplit(":", 1)[1])
    app = make_app(
        authority=server.authority,
        store=EmbeddedStore(tmp_path / "unused.db"),
        presence=HubModule(
            bus=Bus(), settings=HubSettings(), ssl_context=server.authority.mtls_ssl_context()
        ),
    )
    with pytest.raises(ConfigError, match=f"127.0.0.1:{port}"):
        await serve_https(app, host="127.0.0.1", port=port, ssl_context=None)
