"""One owner per data dir: a second cloudhub or edgecore on it exits at once, naming the first,
and the first keeps working."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.manifests import bundle, configmap
from tests.support.procs import Cloud, Edge, MakeEdge, Proc, wait_until

pytestmark = pytest.mark.timeout(90)


def _exit_of(proc: Proc, within: float = 15.0) -> tuple[int, str]:
    """Start ``proc`` (logging to its own file) and wait for it to exit: (code, output)."""
    proc.log = proc.log.with_name("second-" + proc.log.name)
    proc.start()
    assert proc.popen is not None
    code = proc.popen.wait(within)
    return code, proc.text()


async def test_second_cloudhub_on_the_same_data_dir_exits_and_the_first_keeps_writing(
    tmp_path: Path, cloud: Cloud
) -> None:
    """A second `cloudhub serve --data-dir` (other ports) exits non-zero with one line naming
    the first one's pid; the first still accepts writes."""
    assert cloud.proc.popen is not None
    second = Cloud(tmp_path, name="cloud")  # same data dir, fresh ports
    started = time.monotonic()
    code, out = _exit_of(second.proc)
    assert code == 1
    assert time.monotonic() - started < 10
    assert out.strip().splitlines() == [
        f"cloudhub: data dir {cloud.dir} is in use by cloudhub serve "
        f"(pid {cloud.proc.popen.pid}): stop it first, or use another --data-dir"
    ]
    cloud.apply(configmap("after-second", "2"))
    assert cloud.get_json("configmaps", "after-second", "-n", "default")["data"] == {"LEVEL": "2"}


async def test_second_edgecore_on_the_same_data_dir_leaves_the_first_and_its_broker_alone(
    tmp_path: Path, cloud: Cloud, make_edge: MakeEdge
) -> None:
    """A second `edgecore run` on the same edge data dir exits at once naming the first; the
    first one's mosquitto is not killed and its cloud link stays up."""
    edge: Edge = make_edge()
    edge.join(cloud)
    await edge.start()
    await wait_until(lambda: cloud.node_ready("edge-1"))
    pid_file = edge.dir / "mosquitto" / "mosquitto.pid"
    await wait_until(pid_file.exists)
    broker = pid_file.read_text().strip()
    second = Edge(tmp_path, "edge-1")  # same data dir, other local API and MQTT ports
    code, out = _exit_of(second.proc)
    assert edge.proc.popen is not None
    assert code == 1
    assert out.strip().splitlines() == [
        f"edgecore: data dir {edge.dir} is in use by edgecore run "
        f"(pid {edge.proc.popen.pid}): stop it first, or use another --data-dir"
    ]
    assert pid_file.read_text().strip() == broker
    assert Path(f"/proc/{broker}").exists()  # noqa: ASYNC240
    assert "left over" not in edge.proc.text()
    cloud.apply(bundle())  # a pod bound to edge-1 with its configmap: still delivered
    await wait_until(lambda: edge.has("/api/v1/namespaces/default/configmaps/web-config"))
    assert "disconnected" not in edge.proc.text()


async def test_a_killed_edgecore_frees_its_data_dir_for_the_next_run(
    cloud: Cloud, make_edge: MakeEdge
) -> None:
    """After `kill -9` the kernel releases the lock: the next `edgecore run` starts at once."""
    edge: Edge = make_edge()
    edge.join(cloud)
    await edge.start()
    edge.proc.kill9()
    await edge.start()
    await wait_until(lambda: cloud.node_ready("edge-1"))
    assert "in use by" not in edge.proc.text()
