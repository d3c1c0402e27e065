"""The fleet page in a real browser: Debian's chromium, headless, driven by Playwright."""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from tests.support.chromium import CHROMIUM, launch
from tests.support.procs import Cloud, Edge, MakeEdge, Mapper, wait_until

pytestmark = pytest.mark.timeout(120)

#: the edges' keepalive interval, seconds
HEARTBEAT = 2.0
#: where screenshots are kept besides the test's tmp dir (ignored by git)
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"

EXAMPLES = Path(__file__).parents[2] / "examples" / "devices"
POD = """
apiVersion: v1
kind: Pod
metadata: {name: sensor-reader, namespace: default}
spec:
  nodeName: edge-1
  containers: [{name: reader, image: busybox}]
"""


def _need_chromium() -> None:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing (scripts/bootstrap.sh installs chromium)")
        pytest.skip(f"{CHROMIUM} is not installed")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    _need_chromium()
    async with async_playwright() as pw:
        b = await launch(pw)
        try:
            yield b
        finally:
            await b.close()


def _save(shot: Path, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / name)


async def test_page_lists_nodes_and_shows_an_edge_going_offline(
    cloud: Cloud, make_edge: MakeEdge, browser: Browser, tmp_path: Path
) -> None:
    """Token once in the URL, then a cookie; the nodes table lists the edges, and an edge
    killed shows offline by itself within the liveness window; screenshots are saved."""
    cloud.edgectl("apply", "-f", str(EXAMPLES / "thermostat-model.yaml"))
    cloud.edgectl("apply", "-f", str(EXAMPLES / "thermostat-device.yaml"))
    cloud.apply(POD)
    # 2 s keepalives: a loaded CI box must not flap an edge within the 4 s liveness window
    edges: list[Edge] = [make_edge(f"edge-{i}", heartbeat=HEARTBEAT) for i in (1, 2)]
    for edge in edges:
        edge.join(cloud)
        await edge.start()
    for edge in edges:
        await wait_until(functools.partial(cloud.node_ready, edge.name), timeout=20)
    device = "/apis/devices.kubeedge.io/v1beta1/namespaces/default/devices/thermostat-1"
    await wait_until(lambda: edges[0].has(device), timeout=20)
    mapper = Mapper(tmp_path, edges[0])
    mapper.start()
    token = (cloud.dir / "admin.token").read_text().strip()
    base = f"https://127.0.0.1:{cloud.https_port}/ui/"

    context = await browser.new_context(
        ignore_https_errors=True, viewport={"width": 1280, "height": 860}
    )
    page = await context.new_page()
    await page.goto(f"{base}?token={token}")
    assert page.url == base, "the token must leave the address bar"
    cookies = await context.cookies()
    assert [c["httpOnly"] for c in cookies if c["name"] == "edgebridge_ui"] == [True]
    for name in ("edge-1", "edge-2"):
        await page.locator(f'#nodes tr[data-node="{name}"][data-status="online"]').wait_for()
    assert await page.locator("#nodes tbody tr").count() == 2
    await page.get_by_text("2 online").wait_for()
    await page.screenshot(path=str(tmp_path / "fleet-online.png"), full_page=True)
    _save(tmp_path / "fleet-online.png", "fleet-online.png")

    edges[1].proc.kill9()
    # within the liveness window (two heartbeats) and the page's refresh (2 s), with a margin
    await page.locator('#nodes tr[data-node="edge-2"][data-status="offline"]').wait_for(
        timeout=(2 * HEARTBEAT + 2 + 3) * 1000
    )
    await page.get_by_text("1 offline").wait_for()
    await page.screenshot(path=str(tmp_path / "fleet-offline.png"), full_page=True)
    _save(tmp_path / "fleet-offline.png", "fleet-offline.png")

    await page.click('#nodes a:text("edge-2")')
    assert "edge-2" in await page.inner_text("h1")
    await page.get_by_role("cell", name="NodeNotReady", exact=True).wait_for(timeout=5_000)
    await page.screenshot(path=str(tmp_path / "node-offline.png"), full_page=True)
    _save(tmp_path / "node-offline.png", "node-offline.png")

    await page.goto(f"{base}pods")
    await page.locator('#pods tr[data-pod="default/sensor-reader"]').wait_for()
    await page.screenshot(path=str(tmp_path / "pods.png"), full_page=True)
    _save(tmp_path / "pods.png", "pods.png")

    await page.goto(f"{base}devices")
    # the mapper reports every second: a line of recent temperatures appears by itself
    await page.locator("svg.spark polyline").first.wait_for(timeout=20_000)
    await page.screenshot(path=str(tmp_path / "devices.png"), full_page=True)
    _save(tmp_path / "devices.png", "devices.png")

    await page.goto(f"{base}nodes/edge-1")
    await page.locator("svg.spark polyline").first.wait_for(timeout=10_000)
    main = await page.inner_text("main")
    assert "sensor-reader" in main and "thermostat-1" in main and "NodeReady" in main
    await page.screenshot(path=str(tmp_path / "node.png"), full_page=True)
    _save(tmp_path / "node.png", "node.png")
    mapper.proc.stop()

    stranger = await browser.new_context(ignore_https_errors=True)
    other = await stranger.new_page()
    response = await other.goto(base)
    assert response is not None and response.status == 401
    assert "edge-1" not in await other.content()
    assert await other.locator("input[name=token]").count() == 1
    await other.screenshot(path=str(tmp_path / "login.png"))
    _save(tmp_path / "login.png", "login.png")
    await stranger.close()
    await context.close()
