"""Join tokens: limited uses, bound node names, expiry and forgery all fail ``edgecore join``
with one clear line, change nothing, and tokens never reach a log."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from cloudhub.app import CloudApp
from cloudhub.pki import Authority
from edgecore.join import join
from tests.security.conftest import StartCloud
from wire.errors import NotFound, TokenError

pytestmark = pytest.mark.timeout(20)


async def _join(cloud: CloudApp, tmp_path: Path, token: str, name: str = "edge-1") -> None:
    await join(
        cloud=f"127.0.0.1:{cloud.ws_port}",
        token=token,
        node_name=name,
        cert_port=cloud.https_port,
        data_dir=tmp_path / name,
    )


async def _node_exists(cloud: CloudApp, name: str) -> bool:
    try:
        await cloud.store.get("node", None, name)
    except NotFound:
        return False
    return True


async def test_single_use_token_admits_one_join(cloud: CloudApp, tmp_path: Path) -> None:
    """A --uses 1 token joins one node; the second join fails with 'used up' and no Node."""
    token = cloud.authority.issue_token(3600, uses=1)
    await _join(cloud, tmp_path, token, "edge-1")
    with pytest.raises(TokenError, match="used up"):
        await _join(cloud, tmp_path, token, "edge-2")
    assert not await _node_exists(cloud, "edge-2")
    assert not (tmp_path / "edge-2" / "node.crt").exists()


async def test_use_count_survives_a_cloudhub_restart(
    start_cloud: StartCloud, tmp_path: Path
) -> None:
    """Uses are counted in auth.db: a restarted cloudhub still knows the token is used up."""
    cloud = await start_cloud()
    token = cloud.authority.issue_token(3600, uses=1)
    await _join(cloud, tmp_path, token, "edge-1")
    await cloud.stop()
    again = await start_cloud()
    with pytest.raises(TokenError, match="used up"):
        await _join(again, tmp_path, token, "edge-2")


async def test_refused_join_does_not_spend_a_use(cloud: CloudApp, tmp_path: Path) -> None:
    """A join refused for another reason (bad node name) leaves the single use available."""
    token = cloud.authority.issue_token(3600, uses=1, node="edge-1")
    with pytest.raises(TokenError, match="token is for node 'edge-1'"):
        await _join(cloud, tmp_path, token, "edge-9")
    assert not await _node_exists(cloud, "edge-9")
    await _join(cloud, tmp_path, token, "edge-1")


async def test_expired_token_fails_join_with_reason(cloud: CloudApp, tmp_path: Path) -> None:
    """An expired token: 'token expired', nothing written, no Node."""
    token = cloud.authority.issue_token(60, now=time.time() - 3600)
    with pytest.raises(TokenError, match="token expired"):
        await _join(cloud, tmp_path, token)
    assert not (tmp_path / "edge-1").exists()
    assert not await _node_exists(cloud, "edge-1")


async def test_forged_token_fails_join_with_reason(cloud: CloudApp, tmp_path: Path) -> None:
    """A token with our CA hash but signed by another key: 'signature invalid'."""
    other = Authority.load_or_create(tmp_path / "other", advertise=[])
    forged = cloud.authority.ca_hash + "." + other.issue_token(3600).split(".", 1)[1]
    with pytest.raises(TokenError, match="signature invalid"):
        await _join(cloud, tmp_path, forged)
    assert not await _node_exists(cloud, "edge-1")


async def test_tokens_never_appear_in_logs(
    cloud: CloudApp, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Neither a used token, an expired one nor a used-up one is logged, even in part."""
    good = cloud.authority.issue_token(3600, uses=1)
    expired = cloud.authority.issue_token(60, now=time.time() - 3600)
    with caplog.at_level(logging.DEBUG):
        await _join(cloud, tmp_path, good, "edge-1")
        for token in (good, expired):
            with pytest.raises(TokenError):
                await _join(cloud, tmp_path, token, "edge-2")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "joined" in text
    for token in (good, expired):
        for part in token.split("."):
            assert part not in text


def test_token_uses_and_node_must_be_sane(tmp_path: Path) -> None:
    """Zero uses or an invalid node name are refused when issuing."""
    authority = Authority.load_or_create(tmp_path / "ca", advertise=[])
    with pytest.raises(ValueError):
        authority.issue_token(60, uses=0)
    with pytest.raises(ValueError):
        authority.issue_token(60, node="Not A Node")
    claims = authority.verify_join_token(authority.issue_token(60, uses=3, node="gw-1"))
    assert claims["uses"] == 3 and claims["node"] == "gw-1"


async def test_admin_api_issues_counted_and_bound_tokens(cloud: CloudApp) -> None:
    """POST /tokens with uses and node: the token carries both; bad values are a 400."""
    from tests.security.conftest import admin

    status, body = await admin(
        cloud, "POST", "/tokens", {"ttl_seconds": 60, "uses": 2, "node": "gw-1"}
    )
    assert status == 200 and body["uses"] == 2 and body["node"] == "gw-1"
    claims = cloud.authority.verify_join_token(body["token"])
    assert claims["uses"] == 2 and claims["node"] == "gw-1"
    for bad in ({"uses": 0}, {"node": "Bad Name"}, {"uses": "many"}):
        status, body = await admin(cloud, "POST", "/tokens", {"ttl_seconds": 60, **bad})
        assert status == 400 and "error" in body
