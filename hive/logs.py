"""How every edgebridge command logs: to stderr, as text or JSON lines, at a chosen level.

- ``--log-format text`` (default) is one line per record for people; ``json`` is one JSON
  object per line for log shippers: ``time`` (RFC 3339 UTC, milliseconds), ``level``,
  ``logger``, ``message``, the record's extra fields (a ``LoggerAdapter``'s ``node``...) and
  ``exception`` when there is one.
- ``--log-level debug|info|warning|error`` (``-v`` is ``debug``). INFO is for lifecycle
  (started, listening, node connected, stopped); lines per request or per message are DEBUG,
  including the HTTP access log lines aiohttp writes at INFO, which are demoted here
  (:class:`DemoteToDebug`) rather than dropped, so ``--log-level debug`` still shows them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from typing import Any, Literal, TextIO

LogFormat = Literal["text", "json"]
LEVELS = ("debug", "info", "warning", "error")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: loggers that write a line per request at INFO; shown at DEBUG instead
PER_REQUEST_LOGGERS = ("aiohttp.access",)

#: attributes every LogRecord has; anything else on a record came as ``extra``
_RECORD_FIELDS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module notes)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                doc[key] = value if isinstance(value, int | float | bool | None) else str(value)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return json.dumps(doc, ensure_ascii=False)


class DemoteToDebug(logging.Filter):
    """Re-levels a logger's records to DEBUG and lets them through only if DEBUG is on."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure` installs (a second call replaces it and nothing else).

    Without a stream it writes to ``sys.stderr`` as it is at each record, not as it was when
    configured (a test runner swaps stderr).
    """

    def __init__(self, stream: TextIO | None) -> None:
        self._fixed = stream
        super().__init__(stream or sys.stderr)

    @property
    def stream(self) -> TextIO:
        return self._fixed or sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # set by StreamHandler.__init__; the property decides


def configure(
    *, level: str = "info", fmt: LogFormat = "text", stream: TextIO | None = None
) -> None:
    """Send every logger's records to ``stream`` (stderr) in ``fmt``, from ``level`` up.

    Replaces handlers set before (a second call reconfigures).

    Raises:
        ValueError: an unknown level or format.
    """
    if level.lower() not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (expected one of {', '.join(LEVELS)})")
    if fmt not in ("text", "json"):
        raise ValueError(f"unknown log format {fmt!r} (expected text or json)")
    handler = _Handler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, _Handler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in PER_REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DemoteToDebug) for f in logger.filters):
            logger.addFilter(DemoteToDebug())


def current_format() -> LogFormat:
    """The format the root logger writes now (for child processes that log to the same
    stream: cloudhub's link workers)."""
    json_out = any(
        isinstance(h, _Handler) and isinstance(h.formatter, JsonFormatter)
        for h in logging.getLogger().handlers
    )
    return "json" if json_out else "text"


def add_options(parser: argparse.ArgumentParser) -> None:
    """``--log-format`` and ``--log-level`` on a command that runs a service."""
    group = parser.add_argument_group("logging")
    group.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text (default) or json: one JSON object per line (time, level, logger, message)",
    )
    group.add_argument(
        "--log-level",
        choices=LEVELS,
        type=str.lower,
        help="least severe level shown (default info; debug with -v): info is lifecycle, "
        "debug adds a line per request and message",
    )


def level_from(args: argparse.Namespace) -> str:
    """The level a command's flags ask for: ``--log-level``, else debug with ``-v``, else info."""
    given: str | None = getattr(args, "log_level", None)
    if given:
        return given
    return "debug" if getattr(args, "verbose", False) else "info"
