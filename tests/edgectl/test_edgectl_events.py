"""`edgectl get events` and the events in `describe`, from a real cloudhub that records them."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cloudhub import app as cloud_app
from edgectl.cli import main
from tests.support.inproc import start_cloud
from tests.support.procs import wait_until

pytestmark = pytest.mark.timeout(60)

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"nodeName": "edge-1", "containers": [{"name": "app", "image": "busybox"}]},
}
CRASHING = {
    "phase": "Running",
    "containerStatuses": [
        {
            "name": "app",
            "ready": False,
            "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}},
        }
    ],
}


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[cloud_app.CloudApp]:
    app = await start_cloud(tmp_path / "cloud")
    try:
        yield app
    finally:
        await app.stop()


async def _edgectl(
    cloud: cloud_app.CloudApp, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str, str]:
    flags = ["--server", f"https://127.0.0.1:{cloud.https_port}", "--data-dir"]
    out = io.StringIO()
    capsys.readouterr()
    code = await asyncio.to_thread(main, [*flags, str(cloud.settings.data_dir), *argv], out=out)
    return code, out.getvalue(), capsys.readouterr().err


async def test_events_in_get_and_describe(
    cloud: cloud_app.CloudApp, capsys: pytest.CaptureFixture[str]
) -> None:
    """A crash-looping pod's BackOff event is listed by get events and shown by describe."""
    await cloud.store.apply([POD])
    await cloud.store.update_status("pod", "default", "web", CRASHING)

    async def listed() -> str | None:
        code, out, _ = await _edgectl(cloud, capsys, "get", "events", "-n", "default")
        return out if code == 0 and "BackOff" in out else None

    table = await wait_until(listed, timeout=20)
    header, *rows = table.splitlines()
    assert header.split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert any(r.split()[1:4] == ["Warning", "BackOff", "pod/web"] for r in rows), table
    code, out, err = await _edgectl(cloud, capsys, "describe", "pod", "web")
    assert code == 0, err
    events = out[out.index("Events:") :].splitlines()
    assert events[1].split() == ["Type", "Reason", "Age", "From", "Message"]
    assert any(line.split()[:2] == ["Warning", "BackOff"] for line in events[3:]), out
