"""What every edgebridge command does around its app: logging, and running until signalled."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

from hive import logs
from hive.logs import LogFormat

log = logging.getLogger(__name__)


def one_line(exc: BaseException) -> str:
    """An error's message as the one line a command prints (a wrapped library's message may
    span lines)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def os_error_line(exc: OSError) -> str:
    """An OSError as one line for an operator: ``Permission denied: /var/lib/edgecore``."""
    reason = exc.strerror or str(exc)
    return f"{reason}: {exc.filename}" if exc.filename else reason


def setup_logging(*, verbose: bool, level: str | None = None, fmt: LogFormat = "text") -> None:
    """One format for every command, to stderr (see :mod:`hive.logs`); DEBUG with ``-v``
    unless ``level`` says otherwise."""
    logs.configure(level=level or ("debug" if verbose else "info"), fmt=fmt)


def parse_flags(
    parser: argparse.ArgumentParser, argv: list[str] | None
) -> argparse.Namespace | int:
    """The command's flags, or the exit code when argparse ended the command: ``--help`` (0),
    or a usage error already said in one line (2)."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2


def setup_service_logging(args: argparse.Namespace) -> None:
    """Logging as a service command's flags ask: ``-v``, ``--log-level``, ``--log-format``."""
    setup_logging(
        verbose=args.verbose,
        level=logs.level_from(args),
        fmt=getattr(args, "log_format", "text"),
    )


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
