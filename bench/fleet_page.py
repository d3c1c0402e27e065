"""The fleet page's first paint with a large fleet, in a real browser.

Why: the page must stay usable at 10,000 nodes. It is paged and reads only memory, so its
first paint should not depend on the fleet's size; this measures it. The run: a real cloudhub
(embedded store) holding ``--nodes`` Nodes with a pod each and ``--devices`` Devices (no edge
connected: every node offline, the worst case for the summary), Debian's chromium driven
headless by Playwright. For each page (the fleet, a node, the devices), ``--views`` fresh
navigations; figures are the browser's own first-contentful-paint and the time to the
response's last byte.

Baseline, in the same process tree: the same HTML bytes, saved once, served by a bare aiohttp
handler in this process (plain HTTP, no work), painted by the same browser. The ratio fleet
page / baseline says what cloudhub's rendering adds to what painting that page costs anyway.
PASS when every page's median first paint is under ``--limit-ms`` (1000).

Run ``python bench/fleet_page.py --help``; ``--quick`` uses 500 nodes.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.resources
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright

from bench.cloud import Admin, CloudHub, bench_pod, node_object
from bench.common import add_run_options, finish_workdir, setup_logging
from bench.measure import Figures, percentile, run_benchmark
from tests.support.chromium import CHROMIUM, launch

log = logging.getLogger(__name__)

_TIMING = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const fcp = performance.getEntriesByName("first-contentful-paint")[0];
  return {fcp: fcp ? fcp.startTime : null, response: nav ? nav.responseEnd : null};
}"""


def device(name: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": name, "namespace": "bench"},
        "spec": {
            "deviceModelRef": {"name": "thermostat"},
            "nodeName": node,
            "properties": [{"name": "setpoint", "desired": {"value": "21.5"}}],
        },
    }


MODEL = {
    "apiVersion": "devices.kubeedge.io/v1beta1",
    "kind": "DeviceModel",
    "metadata": {"name": "thermostat", "namespace": "bench"},
    "spec": {
        "properties": [
            {"name": "temperature", "type": "FLOAT", "accessMode": "ReadOnly"},
            {"name": "setpoint", "type": "FLOAT", "accessMode": "ReadWrite"},
        ]
    },
}


async def paint(page: Page, url: str, views: int) -> tuple[list[float], list[float], str]:
    """First-contentful-paint and response-end times (ms) of ``views`` fresh loads."""
    fcps: list[float] = []
    responses: list[float] = []
    html = ""
    for _ in range(views):
        response = await page.goto(url, wait_until="load")
        if response is None or response.status != 200:
            raise RuntimeError(f"{url}: HTTP {response.status if response else '?'}")
        await page.wait_for_function(
            "performance.getEntriesByName('first-contentful-paint').length > 0"
        )
        timing = await page.evaluate(_TIMING)
        fcps.append(float(timing["fcp"]))
        responses.append(float(timing["response"]))
        html = await response.text()
    return fcps, responses, html


async def baseline(browser: Browser, pages: dict[str, str], views: int) -> dict[str, float]:
    """Median first paint of each page's saved HTML served as is (see the module notes)."""

    async def serve(request: web.Request) -> web.Response:
        html = pages.get(request.match_info["name"])
        if html is None:
            raise web.HTTPNotFound()
        return web.Response(text=html, content_type="text/html")

    static = importlib.resources.files("cloudhub.ui").joinpath("static")

    async def serve_static(request: web.Request) -> web.Response:
        name = request.match_info["file"]
        kind = "text/css" if name.endswith(".css") else "text/javascript"
        return web.Response(body=static.joinpath(name).read_bytes(), content_type=kind)

    app = web.Application()
    app.router.add_get("/ui/static/{file}", serve_static)
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        context = await browser.new_context()
        page = await context.new_page()
        out = {}
        for name in pages:
            fcps, _, _ = await paint(page, f"http://127.0.0.1:{port}/{name}", views)
            out[name] = percentile(fcps, 50)
        await context.close()
        return out
    finally:
        await runner.cleanup()


def _need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing (apt-get install chromium)")


async def run(args: argparse.Namespace, fig: Figures) -> bool:
    _need_chromium()
    workdir = Path(tempfile.mkdtemp(prefix="fleet-page-", dir=args.workdir))
    try:
        async with CloudHub(workdir=workdir) as hub:
            admin = Admin.for_hub(hub)
            try:
                n = args.nodes
                await admin.apply([MODEL])
                nodes = [node_object(f"node-{i:05d}") for i in range(n)]
                await admin.apply_batched(nodes, batch=500)
                pods = [bench_pod(f"pod-{i:05d}", f"node-{i:05d}") for i in range(n)]
                await admin.apply_batched(pods, batch=500)
                devices = [device(f"dev-{i:05d}", f"node-{i:05d}") for i in range(args.devices)]
                await admin.apply_batched(devices, batch=500)
                log.info("applied %d nodes, %d pods, %d devices", n, n, args.devices)
            finally:
                await admin.close()
            # the fleet module follows the store: wait until the page counts every node
            base = f"https://127.0.0.1:{hub.https_port}/ui/"
            async with async_playwright() as pw:
                browser = await launch(pw)
                try:
                    # bypass_csp: the page forbids eval, which Playwright's polling uses
                    context = await browser.new_context(ignore_https_errors=True, bypass_csp=True)
                    page = await context.new_page()
                    await page.goto(f"{base}?token={hub.admin_token}")
                    await page.wait_for_function(
                        "n => document.querySelector('.stat .value').textContent.trim() == n",
                        arg=str(n),
                        timeout=120_000,
                    )
                    targets = {
                        "fleet": base,
                        "node": f"{base}nodes/node-00000",
                        "devices": f"{base}devices",
                    }
                    saved: dict[str, str] = {}
                    ok = True
                    for name, url in targets.items():
                        fcps, responses, html = await paint(page, url, args.views)
                        saved[name] = html
                        if name == "node" and "pod-00000" not in html:
                            raise RuntimeError("the node page does not show the node's pod")
                        p50 = percentile(fcps, 50)
                        fig.add(f"{name}_first_paint_p50", p50, "ms (first-contentful-paint)")
                        fig.add(f"{name}_first_paint_max", max(fcps), "ms")
                        fig.add(f"{name}_response_p50", percentile(responses, 50), "ms (last byte)")
                        fig.add(f"{name}_html", len(html.encode()) / 1024, "KiB")
                        ok &= p50 < args.limit_ms
                    await context.close()
                    plain = await baseline(browser, saved, args.views)
                    for name, p50 in plain.items():
                        fig.add(f"{name}_baseline_first_paint_p50", p50, "ms (same HTML, static)")
                        mine = fig.value(f"{name}_first_paint_p50")
                        fig.ratio(f"{name}_ratio_vs_static", mine, p50)
                finally:
                    await browser.close()
            fig.add("nodes", n, "nodes (all offline)")
            fig.add("pods", n, "pods")
            fig.add("devices", args.devices, "devices")
            fig.add("limit", args.limit_ms, "ms (median first paint, each page)")
            fig.add("result", 1.0 if ok else 0.0, "PASS" if ok else "FAIL")
            return ok
    finally:
        finish_workdir(workdir, keep=args.keep)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="First paint of the fleet page with a large fleet, in headless chromium.",
        epilog="example: python bench/fleet_page.py --nodes 10000",
    )
    p.add_argument("--nodes", type=int, default=10_000, help="nodes, one pod each (10000)")
    p.add_argument("--devices", type=int, default=2_000, help="devices (2000)")
    p.add_argument("--views", type=int, default=5, help="loads of each page (5)")
    p.add_argument("--limit-ms", type=float, default=1000.0, help="pass limit, ms (1000)")
    p.add_argument("--quick", action="store_true", help="500 nodes, 100 devices, 3 views")
    add_run_options(p, timeout=600)
    args = p.parse_args(argv)
    if args.quick:
        args.nodes, args.devices, args.views = 500, 100, 3
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(verbose=args.verbose)
    fig = Figures(f"fleet_page nodes={args.nodes} devices={args.devices}")
    with contextlib.suppress(KeyboardInterrupt):
        return run_benchmark(fig, run(args, fig), timeout=args.timeout)
    return 130


if __name__ == "__main__":
    sys.exit(main())
