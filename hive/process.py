"""What every edgebridge command does around its app: logging, and running until signalled."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

from hive import logs
from hive.logs import LogFormat

log = logging.getLogger(__name__)


def setup_logging(*, verbose: bool, level: str | None = None, fmt: LogFormat = "text") -> None:
    """One format for every command, to stderr (see :mod:`hive.logs`); DEBUG with ``-v``
    unless ``level`` says otherwise."""
    logs.configure(level=level or ("debug" if verbose else "info"), fmt=fmt)


async def run_until_signalled(stop: Callable[[], Awaitable[None]]) -> None:
    """Wait for SIGINT or SIGTERM, then ``stop()`` the app (also if the wait is cancelled)."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # no signal handlers on this platform
            loop.add_signal_handler(sig, stopping.set)
    try:
        await stopping.wait()
    finally:
        log.info("stopping")
        await stop()
