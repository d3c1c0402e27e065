"""``python -m devices`` as a user runs it: --help, the drivers, bad flags as one line."""

from __future__ import annotations

import asyncio
import sys

import pytest

pytestmark = pytest.mark.timeout(30)


async def _run(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devices",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_help_explains_the_flags() -> None:
    """--help names the broker, the local API and the device filter."""
    code, out, _ = await _run("--help")
    assert code == 0
    for flag in ("--broker", "--local-api", "--device", "--namespace"):
        assert flag in out


async def test_list_drivers_names_the_built_in_protocols() -> None:
    """--list-drivers prints modbus, opcua and virtual, one a line."""
    code, out, _ = await _run("--list-drivers")
    assert code == 0
    assert {"modbus", "opcua", "virtual"} <= set(out.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--broker", "http://127.0.0.1"], "scheme must be mqtt:// or tcp://"),
        (["--broker", "mqtt://127.0.0.1:99999"], "bad port"),
        (["--local-api", "nowhere"], "argument --local-api: 'nowhere'"),
        (["--local-api", "127.0.0.1:0"], "--local-api"),
        (["--device", ""], "--device"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
async def test_bad_flags_exit_2_with_one_line(args: list[str], message: str) -> None:
    """Bad flags exit 2 with the reason on one stderr line, no traceback."""
    code, _, err = await _run(*args)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


async def test_waits_for_the_edge_and_stops_cleanly_on_sigterm() -> None:
    """With no broker and no local API yet, it waits (one warning each); SIGTERM exits 0."""
    import signal

    from tests.support.procs import free_port

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "devices",
        "--broker", f"mqtt://127.0.0.1:{free_port()}",
        "--local-api", f"127.0.0.1:{free_port()}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    seen = b""
    while b"local API" not in seen or b"broker" not in seen.split(b"drivers", 1)[-1]:
        line = await asyncio.wait_for(proc.stderr.readline(), 15)
        assert line, seen.decode()
        seen += line
    proc.send_signal(signal.SIGTERM)
    _, rest = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0
    assert "Traceback" not in (seen + rest).decode()
