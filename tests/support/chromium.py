"""Debian's chromium as the fleet-page test and benchmark launch it: headless, through
Playwright, with the background work that would add noise to a measurement switched off."""

from __future__ import annotations

from playwright.async_api import Browser, Playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


async def launch(pw: Playwright) -> Browser:
    """A headless chromium with :data:`CHROMIUM_ARGS` (the caller closes it)."""
    return await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
