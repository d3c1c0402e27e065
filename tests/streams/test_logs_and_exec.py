"""edgectl logs / exec reach a real container on the edge through cloudhub and the link."""

from __future__ import annotations

import asyncio
import signal
import ssl

import aiohttp
import pytest

from edgecore.cri import api_pb2 as pb
from tests.streams.conftest import QUIET, TICKER, Fleet, pod_manifest, stream_tasks
from tests.support.inproc import join_node
from tests.support.procs import wait_until

pytestmark = pytest.mark.timeout(90)


async def _log_has(fleet: Fleet, pod: str, text: str) -> bool:
    code, out, _ = await fleet.edgectl("logs", pod)
    return code == 0 and text in out


async def test_logs_print_the_container_output(fleet: Fleet) -> None:
    """`edgectl logs` prints stdout and stderr lines as written; --tail keeps the last N."""
    await fleet.run_pod("quiet", QUIET)
    await wait_until(lambda: _log_has(fleet, "quiet", "oops"), timeout=20, interval=0.3)
    code, out, err = await fleet.edgectl("logs", "quiet")
    assert (code, err) == (0, "")
    assert out == "line 1\nline 2\nline 3\nline 4\nline 5\noops\n"
    code, out, _ = await fleet.edgectl("logs", "quiet", "--tail", "2")
    assert (code, out) == (0, "line 5\noops\n")
    code, out, _ = await fleet.edgectl("logs", "quiet", "-c", "app", "--tail", "0")
    assert (code, out) == (0, "")
    code, _, err = await fleet.edgectl("logs", "quiet", "-p")
    assert (code, err) == (
        1,
        'edgectl: previous terminated container "app" in pod "quiet" not found\n',
    )


async def test_follow_streams_until_ctrl_c_which_cancels_on_the_edge(fleet: Fleet) -> None:
    """`logs -f` prints new lines as they come; Ctrl-C ends edgectl and the edge's stream."""
    await fleet.run_pod("ticker", TICKER)
    proc = await fleet.start_edgectl("logs", "ticker", "-f", "--tail", "1")
    assert proc.stdout is not None
    seen = [await asyncio.wait_for(proc.stdout.readline(), 15) for _ in range(4)]
    numbers = [int(line.split()[1]) for line in seen]
    assert numbers == list(range(numbers[0], numbers[0] + 4))
    assert len(stream_tasks()) == 1
    proc.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(proc.wait(), 10) == 130
    await wait_until(lambda: not stream_tasks(), timeout=10)


async def test_exec_keeps_stdout_and_stderr_apart_and_returns_the_exit_code(fleet: Fleet) -> None:
    """The command's stdout, stderr and exit code are edgectl's."""
    await fleet.run_pod("quiet", QUIET)
    code, out, err = await fleet.edgectl(
        "exec", "quiet", "--", "sh", "-c", "echo to-out; echo to-err >&2; exit 3"
    )
    assert (code, out, err) == (3, "to-out\n", "to-err\n")
    code, out, err = await fleet.edgectl("exec", "quiet", "-c", "app", "--", "cat", "/etc/hostname")
    assert (code, out, err) == (0, "quiet\n", ""), err


async def test_big_output_flows_through_the_window(fleet: Fleet) -> None:
    """Output many windows long arrives whole and in order."""
    await fleet.run_pod("quiet", QUIET)
    code, out, _ = await fleet.edgectl("exec", "quiet", "--", "seq", "1", "200000")
    assert code == 0
    assert out == "".join(f"{i}\n" for i in range(1, 200001))


async def test_unknown_pod_container_and_ambiguous_container_are_one_line(fleet: Fleet) -> None:
    """Mistakes in POD or -c are one line naming them, exit code 1, nothing relayed."""
    code, out, err = await fleet.edgectl("logs", "nosuch")
    assert (code, out) == (1, "")
    assert err == 'edgectl: pods "nosuch" not found in namespace default\n'
    await fleet.cloud.store.apply([pod_manifest("two", fleet.node, ("a", "b"))])
    code, _, err = await fleet.edgectl("exec", "two", "--", "true")
    assert code == 1
    assert err == (
        "edgectl: a container name must be specified for pod two, choose one of: [a b]\n"
    )
    code, _, err = await fleet.edgectl("logs", "two", "-c", "c")
    assert (code, err) == (1, "edgectl: container c is not valid for pod two\n")
    # known to the cloud, never started on the edge
    code, _, err = await fleet.edgectl("logs", "two", "-c", "a")
    assert code == 1
    assert "container a of pod default/two has not been created on node" in err
    assert not stream_tasks()


async def test_offline_node_is_one_line(fleet: Fleet) -> None:
    """A pod whose node has no link answers at once that the node is offline."""
    await fleet.run_pod("quiet", QUIET)
    await fleet.edge.stop()
    await wait_until(lambda: fleet.node not in fleet.cloud.hub.sessions, timeout=10)
    code, _, err = await fleet.edgectl("exec", "quiet", "--", "true")
    assert (code, err) == (1, f"edgectl: node {fleet.node} is offline (no link to cloudhub)\n")


async def test_a_follow_ends_with_a_line_when_the_node_goes_away(fleet: Fleet) -> None:
    """A node that disconnects during `logs -f` ends edgectl with one line, exit code 1."""
    await fleet.run_pod("ticker", TICKER)
    proc = await fleet.start_edgectl("logs", "ticker", "-f")
    assert proc.stdout is not None and proc.stderr is not None
    await asyncio.wait_for(proc.stdout.readline(), 15)
    await fleet.edge.stop()
    assert await asyncio.wait_for(proc.wait(), 15) == 1
    err = (await proc.stderr.read()).decode()
    assert err == f"edgectl: node {fleet.node} disconnected\n"


async def test_logs_follow_a_restart_to_the_new_container(fleet: Fleet) -> None:
    """When the container is replaced (a restart), `-f` goes on with the new one's log, and
    `-p` prints the previous run's."""
    first = await fleet.run_pod("ticker", TICKER)
    proc = await fleet.start_edgectl("logs", "ticker", "-f")
    assert proc.stdout is not None
    await asyncio.wait_for(proc.stdout.readline(), 15)
    # what edged does on a restart: a new container of the same name, log N+1
    status = await fleet.cri.container_status(first)
    sandbox = (await fleet.cri.list_containers(container_id=first))[0].pod_sandbox_id
    await fleet.cri.stop_container(first, 0)
    sandboxes = await fleet.cri.list_pod_sandbox(sandbox_id=sandbox)
    sb_status = await fleet.cri.pod_sandbox_status(sandbox)
    labels = dict(status.labels)
    config = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name="app", attempt=1),
        image=pb.ImageSpec(image="busybox"),
        command=["sh", "-c", "echo restarted; exec sleep 3600"],
        labels=labels,
        log_path="app/1.log",
    )
    sandbox_config = pb.PodSandboxConfig(
        metadata=sb_status.status.metadata,
        labels=dict(sandboxes[0].labels),
        log_directory=str(status.log_path).rsplit("/app/", 1)[0],
        linux=pb.LinuxPodSandboxConfig(),
    )
    cid = await fleet.cri.create_container(sandbox, config, sandbox_config)
    await fleet.cri.start_container(cid)

    stdout = proc.stdout
    assert stdout is not None

    async def saw_restart() -> bool:
        line = await asyncio.wait_for(stdout.readline(), 15)
        return line == b"restarted\n"

    await wait_until(saw_restart, timeout=20)
    proc.send_signal(signal.SIGINT)
    await asyncio.wait_for(proc.wait(), 10)
    code, out, _ = await fleet.edgectl("logs", "ticker", "--previous")
    assert code == 0 and out.startswith("tick 0\ntick 1\n")
    code, out, _ = await fleet.edgectl("logs", "ticker")
    assert (code, out) == (0, "restarted\n")


async def test_kubelet_endpoint_serves_a_node_only_its_own_pods(fleet: Fleet) -> None:
    """/containerLogs answers the admin and the pod's own node; another node's certificate
    is refused."""
    await fleet.run_pod("quiet", QUIET)
    await wait_until(lambda: _log_has(fleet, "quiet", "oops"), timeout=20, interval=0.3)
    url = f"https://127.0.0.1:{fleet.cloud.https_port}/containerLogs/default/quiet/app?tailLines=1"
    ca = fleet.cloud.authority.ca_pem.decode()

    async def get(ctx: ssl.SSLContext, headers: dict[str, str]) -> tuple[int, str]:
        async with aiohttp.ClientSession() as session:
            async with session.get(url, ssl=ctx, headers=headers) as resp:
                return resp.status, await resp.text()

    plain = ssl.create_default_context(cadata=ca)
    admin = {"Authorization": f"Bearer {fleet.cloud.authority.admin_token}"}
    assert await get(plain, admin) == (200, "oops\n")
    assert (await get(plain, {}))[0] == 401
    own = ssl.create_default_context(cadata=ca)
    s = fleet.edge_settings
    own.load_cert_chain(str(s.cert_path), str(s.key_path))
    assert await get(own, {}) == (200, "oops\n")
    # another node, joined for real, may not read this node's pod

    other = await join_node(fleet.cloud, "other-node", fleet.tmp / "other-node")
    foreign = ssl.create_default_context(cadata=ca)
    foreign.load_cert_chain(str(other.cert_path), str(other.key_path))
    status, text = await get(foreign, {})
    assert status == 403
    assert text == f"node other-node may not reach pods of node {fleet.node}\n"


async def test_exec_with_input_and_a_terminal(fleet: Fleet) -> None:
    """-i passes stdin to the command; -t gives it a terminal; the exit code still counts."""
    await fleet.run_pod("quiet", QUIET)
    proc = await fleet.start_edgectl(
        "exec",
        "-i",
        "quiet",
        "--",
        "sh",
        "-c",
        "read x; echo got $x; echo e >&2; exit 6",
        stdin=True,
    )
    out, err = await asyncio.wait_for(proc.communicate(b"hello\n"), 20)
    assert (proc.returncode, out, err) == (6, b"got hello\n", b"e\n")
    proc = await fleet.start_edgectl(
        "exec", "-it", "quiet", "--", "sh", "-c", "tty; exit 2", stdin=True
    )
    out, _ = await asyncio.wait_for(proc.communicate(b""), 20)
    assert proc.returncode == 2
    assert out.startswith(b"/dev/pts/")


async def test_a_plain_follow_client_that_leaves_stops_the_edge_stream(fleet: Fleet) -> None:
    """/containerLogs?follow=true streams as text; a client that disconnects cancels it."""
    await fleet.run_pod("ticker", TICKER)
    url = (
        f"https://127.0.0.1:{fleet.cloud.https_port}/containerLogs/default/ticker/app"
        "?follow=true&tailLines=1"
    )
    ctx = ssl.create_default_context(cadata=fleet.cloud.authority.ca_pem.decode())
    admin = {"Authorization": f"Bearer {fleet.cloud.authority.admin_token}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(url, ssl=ctx, headers=admin) as resp:
            assert resp.status == 200
            first = await asyncio.wait_for(resp.content.readline(), 15)
            second = await asyncio.wait_for(resp.content.readline(), 15)
            assert int(second.split()[1]) == int(first.split()[1]) + 1
            assert len(stream_tasks()) == 1
    await wait_until(lambda: not stream_tasks(), timeout=15)
