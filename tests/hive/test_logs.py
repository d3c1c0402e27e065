"""Logging: --log-format text|json and --log-level, on the real commands and in-process."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from hive import logs
from tests.support.procs import Cloud, wait_until

pytestmark = pytest.mark.timeout(60)


def test_json_lines_carry_level_logger_message_extras_and_exception() -> None:
    """Each record is one JSON object; extras and tracebacks are fields, not extra lines."""
    out = io.StringIO()
    logs.configure(level="info", fmt="json", stream=out)
    log = logging.getLogger("cloudhub.test")
    log.debug("hidden")
    adapter = logging.LoggerAdapter(log, {"node": "edge-1"})
    adapter.info("node %s connected", "edge-1")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("it failed")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "INFO" and first["logger"] == "cloudhub.test"
    assert first["message"] == "node edge-1 connected" and first["node"] == "edge-1"
    assert first["time"].endswith("+00:00")
    assert second["level"] == "ERROR" and "RuntimeError: boom" in second["exception"]


def test_access_log_lines_are_debug() -> None:
    """aiohttp's per-request INFO lines show only at DEBUG, as DEBUG."""
    out = io.StringIO()
    logs.configure(level="info", fmt="text", stream=out)
    logging.getLogger("aiohttp.access").info('127.0.0.1 "GET /admin/v1/nodes" 200')
    assert out.getvalue() == ""
    logs.configure(level="debug", fmt="text", stream=out)
    logging.getLogger("aiohttp.access").info('127.0.0.1 "GET /admin/v1/nodes" 200')
    assert " DEBUG aiohttp.access: " in out.getvalue()


def test_unknown_level_or_format_is_refused() -> None:
    """configure refuses what the flags would not accept."""
    with pytest.raises(ValueError, match="log level"):
        logs.configure(level="chatty")
    with pytest.raises(ValueError, match="log format"):
        logs.configure(fmt="xml")  # type: ignore[arg-type]


async def test_cloudhub_logs_json_and_requests_only_at_debug(tmp_path: Path) -> None:
    """cloudhub serve --log-format json writes only JSON lines; admin requests are DEBUG."""
    quiet = Cloud(tmp_path, name="quiet", extra=["--log-format", "json"])
    await quiet.start()
    try:
        quiet.edgectl("get", "nodes")
        await wait_until(lambda: "serving" in quiet.proc.text())
    finally:
        quiet.proc.stop()
    records = [json.loads(line) for line in quiet.proc.text().splitlines()]
    assert {r["level"] for r in records} <= {"INFO", "WARNING"}
    assert not [r for r in records if r["logger"] == "aiohttp.access"]
    assert any(r["message"].startswith("serving") for r in records)

    chatty = Cloud(tmp_path, name="chatty", extra=["--log-format", "json", "--log-level", "debug"])
    await chatty.start()
    try:
        chatty.edgectl("get", "nodes")
        await wait_until(lambda: "aiohttp.access" in chatty.proc.text())
    finally:
        chatty.proc.stop()
    records = [json.loads(line) for line in chatty.proc.text().splitlines()]
    access = [r for r in records if r["logger"] == "aiohttp.access"]
    assert access and {r["level"] for r in access} == {"DEBUG"}
    assert "GET /admin/v1/nodes" in access[0]["message"]
