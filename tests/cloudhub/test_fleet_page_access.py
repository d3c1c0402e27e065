"""The fleet page over real HTTPS: the admin token once, then a cookie; paging and filters."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from cloudhub import app as cloud_app
from tests.support.inproc import start_cloud
from tests.support.procs import wait_until

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[cloud_app.CloudApp]:
    app = await start_cloud(tmp_path / "cloud")
    try:
        nodes = [
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"edge-{i:03d}"}}
            for i in range(120)
        ]
        await app.store.apply(nodes)
        await wait_until(lambda: len(app.fleet.view.nodes) == 120, timeout=10)
        yield app
    finally:
        await app.stop()


@pytest.fixture
async def browser(cloud: cloud_app.CloudApp) -> AsyncIterator[aiohttp.ClientSession]:
    """A client that keeps cookies (also from an IP address) and does not follow redirects."""
    ctx = ssl.create_default_context(cadata=cloud.authority.ca_der)
    async with aiohttp.ClientSession(
        base_url=f"https://127.0.0.1:{cloud.https_port}",
        connector=aiohttp.TCPConnector(ssl=ctx),
        cookie_jar=aiohttp.CookieJar(unsafe=True),
    ) as session:
        yield session


async def _login(browser: aiohttp.ClientSession, token: str) -> None:
    async with browser.get("/ui/", params={"token": token}, allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/ui/"
        cookie = r.headers["Set-Cookie"]
        for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/ui/"):
            assert attribute in cookie
        assert token not in cookie


async def test_nothing_readable_without_the_token(
    cloud: cloud_app.CloudApp, browser: aiohttp.ClientSession
) -> None:
    """Pages answer 401 with the login form and no fleet data; a wrong token is refused."""
    for path in ("/ui/", "/ui/nodes/edge-000", "/ui/devices", "/ui/events"):
        async with browser.get(path, allow_redirects=False) as r:
            assert r.status == 401, path
            body = await r.text()
            assert 'name="token"' in body
            assert "data-node" not in body and "offline" not in body and "Pods" not in body
    async with browser.get("/ui/", params={"token": "nope"}, allow_redirects=False) as r:
        assert r.status == 401
    async with browser.get("/ui/", headers={"X-Fleet-Partial": "1"}) as r:
        assert r.status == 401
    async with browser.get("/ui/static/fleet.css") as r:
        assert r.status == 200 and r.content_type == "text/css"
    async with browser.get("/ui/static/..%2Fpages.py") as r:
        assert r.status == 404


async def test_token_once_then_the_cookie_pages_the_nodes(
    cloud: cloud_app.CloudApp, browser: aiohttp.ClientSession
) -> None:
    """After the token in the URL, pages are served from the cookie, 50 nodes a page."""
    await _login(browser, cloud.authority.admin_token)
    async with browser.get("/ui/") as r:
        assert r.status == 200
        body = await r.text()
    assert body.count('data-node="') == 50
    assert 'data-node="edge-049"' in body and "after=edge-049" in body
    assert "0 online" in body and "120 offline" in body
    async with browser.get("/ui/", params={"after": "edge-099"}) as r:
        body = await r.text()
    assert body.count('data-node="') == 20 and "101\u2013120 of 120" in body
    async with browser.get("/ui/", params={"q": "edge-11", "status": "offline"}) as r:
        body = await r.text()
    assert body.count('data-node="') == 10
    async with browser.get("/ui/", params={"status": "online"}) as r:
        assert 'data-node="' not in await r.text()
    async with browser.get("/ui/", headers={"X-Fleet-Partial": "1"}) as r:
        partial = await r.text()
    assert "<html" not in partial and 'data-node="edge-000"' in partial
    async with browser.get("/ui/nodes/edge-007") as r:
        assert r.status == 200 and "edge-007" in await r.text()
    async with browser.get("/ui/nodes/nope") as r:
        assert r.status == 404 and "node &#34;nope&#34; not found" in await r.text()


async def test_login_form_and_logout(
    cloud: cloud_app.CloudApp, browser: aiohttp.ClientSession
) -> None:
    """The form logs in and goes back only to a fleet page; logging out ends the session."""
    form = {"token": cloud.authority.admin_token, "next": "//evil.example/"}
    async with browser.post("/ui/login", data=form, allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/ui/"
    async with browser.get("/ui/devices") as r:
        assert r.status == 200
    async with browser.post("/ui/login", data={"token": "bad"}) as r:
        assert r.status == 401 and "wrong admin token" in await r.text()
    async with browser.post("/ui/logout", allow_redirects=False) as r:
        assert r.status == 303
    async with browser.get("/ui/", allow_redirects=False) as r:
        assert r.status == 401


async def test_pod_page_shows_status_events_and_where_logs_are(
    cloud: cloud_app.CloudApp, browser: aiohttp.ClientSession
) -> None:
    """A pod's page shows kubectl's READY/STATUS, its containers, its Started event, and
    points to edgectl logs while log lines are not relayed."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"nodeName": "edge-001", "containers": [{"name": "app", "image": "busybox"}]},
    }
    await cloud.store.apply([pod])
    await wait_until(lambda: ("default", "web") in cloud.fleet.view.pods, timeout=10)
    status = {
        "phase": "Running",
        "podIP": "10.88.0.7",
        "containerStatuses": [
            {
                "name": "app",
                "ready": True,
                "restartCount": 2,
                "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
                "containerID": "containerd://abc",
            }
        ],
    }
    await cloud.store.update_status("pod", "default", "web", status)
    await wait_until(lambda: cloud.fleet.recorded >= 1, timeout=10)
    await _login(browser, cloud.authority.admin_token)
    async with browser.get("/ui/pods/default/web") as r:
        assert r.status == 200
        body = await r.text()
    for text in ("1/1", "Running", "10.88.0.7", "containerd://abc", "Started container app"):
        assert text in body, text
    assert "edgectl logs web -n default" in body
    async with browser.get("/ui/nodes/edge-001") as r:
        node = await r.text()
    assert "/ui/pods/default/web" in node and "Started" in node
    async with browser.get("/ui/events") as r:
        assert "Started container app" in await r.text()
    async with browser.get("/ui/pods") as r:
        pods = await r.text()
    assert 'data-pod="default/web"' in pods and "1 Running" in pods
