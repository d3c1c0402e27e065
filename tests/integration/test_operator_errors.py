"""What a new user gets wrong is one line, before anything starts, and never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.support.procs import PY, Cloud, Edge, MakeEdge, free_port, wait_until

pytestmark = pytest.mark.timeout(90)


def _run(*argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", *argv], capture_output=True, text=True, timeout=timeout)


def _one_line(res: subprocess.CompletedProcess[str], prefix: str) -> str:
    """The command's stderr without log lines: exactly one line, no traceback."""
    assert "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if not ln[:4].isdigit()]  # log lines: dates
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(prefix), lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--ws-port", "99999"], "argument --ws-port: '99999': must be at most 65535"),
        (["--https-port", "0"], "argument --https-port: '0': must be at least 1"),
        (["--heartbeat", "-5"], "argument --heartbeat: '-5': must be more than 0"),
        (["--heartbeat", "0"], "argument --heartbeat: '0': must be more than 0"),
        (["--auth-refresh-interval", "nan"], "argument --auth-refresh-interval"),
        (["--node-cert-validity", "-1h"], "argument --node-cert-validity"),
        (["--link-workers", "-1"], "argument --link-workers: '-1': must be at least 0"),
    ],
)
def test_cloudhub_bad_flag_values_exit_2_before_anything_starts(
    tmp_path: Path, flags: list[str], says: str
) -> None:
    """`cloudhub serve` with a flag out of range: exit 2, one line naming it, no data dir."""
    data = tmp_path / "cloud"
    res = _run("cloudhub", "serve", "--data-dir", str(data), *flags)
    assert res.returncode == 2
    assert says in _one_line(res, "cloudhub serve: ")
    assert not data.exists()


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--mqtt-port", "99999"], "argument --mqtt-port: '99999': must be at most 65535"),
        (["--heartbeat", "-5"], "argument --heartbeat: '-5': must be more than 0"),
        (["--heartbeat", "0"], "argument --heartbeat: '0': must be more than 0"),
        (["--local-api", "127.0.0.1:99999"], "argument --local-api"),
        (["--local-api", "127.0.0.1:0"], "argument --local-api: '0': must be at least 1"),
        (["--mqtt-url", "http://x"], "argument --mqtt-url"),
    ],
)
def test_edgecore_run_bad_flag_values_exit_2(tmp_path: Path, flags: list[str], says: str) -> None:
    """`edgecore run` with a flag out of range: exit 2 and one line, before the config is read."""
    res = _run("edgecore", "run", "--data-dir", str(tmp_path), *flags)
    assert res.returncode == 2
    assert says in _one_line(res, "edgecore run: ")


def test_edgecore_join_bad_cert_port_exits_2(tmp_path: Path) -> None:
    """`edgecore join --cert-port 0`: exit 2, one line."""
    res = _run(
        "edgecore", "join", "--cloud", "127.0.0.1", "--token", "x", "--node-name", "n",
        "--cert-port", "0", "--data-dir", str(tmp_path / "e"),
    )  # fmt: skip
    assert res.returncode == 2
    assert "--cert-port" in _one_line(res, "edgecore join: ")


def test_unwritable_data_dir_is_one_line_for_serve_join_and_run(tmp_path: Path) -> None:
    """A data dir that cannot be written (a file where a directory must be; root may write
    anywhere else) is one line and exit 1 for `cloudhub serve`, `edgecore join` and `run`."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    bad = blocker / "data"
    res = _run("cloudhub", "serve", "--data-dir", str(bad), "--ws-port", str(free_port()))
    assert res.returncode == 1
    assert str(bad) in _one_line(res, "cloudhub: cannot use data dir")
    token = "a" * 64 + ".x.y.z"
    res = _run(
        "edgecore", "join", "--cloud", "127.0.0.1:1", "--token", token, "--node-name", "n",
        "--data-dir", str(bad),
    )  # fmt: skip
    assert res.returncode == 1
    assert "is not a directory" in _one_line(res, "edgecore: cannot use data dir")
    res = _run("edgecore", "run", "--data-dir", str(bad))
    assert res.returncode == 1
    _one_line(res, "edgecore: ")


async def test_edgecore_run_with_unwritable_data_dir_is_one_line(
    tmp_path: Path, cloud: Cloud
) -> None:
    """`edgecore run` whose data dir cannot hold its lock and cache: one line, exit 1."""
    edge = Edge(tmp_path, "edge-1")
    edge.join(cloud)
    config = yaml.safe_load((edge.dir / "edgecore.yaml").read_text())
    blocker = tmp_path / "file"
    blocker.write_text("x")
    config["data_dir"] = str(blocker / "data")
    other = tmp_path / "edgecore.yaml"
    other.write_text(yaml.safe_dump(config))
    res = _run("edgecore", "run", "--config", str(other), "--mqtt-port", str(free_port()))
    assert res.returncode == 1
    _one_line(res, "edgecore: ")


async def test_mqtt_port_in_use_is_one_line_and_a_prompt_exit(tmp_path: Path, cloud: Cloud) -> None:
    """The internal broker's port held by another process (a system mosquitto): one line
    naming the port, exit 1, within seconds (systemd then restarts the unit)."""
    edge = Edge(tmp_path, "edge-1")
    edge.join(cloud)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        started = time.monotonic()
        res = _run(
            "edgecore", "run", "--data-dir", str(edge.dir), "--mqtt-port", str(port),
            "--local-api", f"127.0.0.1:{free_port()}",
        )  # fmt: skip
    assert res.returncode == 1
    assert time.monotonic() - started < 20
    line = _one_line(res, "edgecore: ")
    assert f"MQTT port 127.0.0.1:{port} is in use" in line


async def test_join_with_a_wrong_websocket_port_fails_and_spends_no_token_use(
    tmp_path: Path, cloud: Cloud
) -> None:
    """`edgecore join --cloud HOST:WRONGPORT` fails with one line naming the port, whether
    nothing listens there or it is the HTTPS port; the one-use token still works after."""
    token = cloud.edgectl("token", "create", "--ttl", "1h", "--uses", "1").strip()
    for wrong, says in (
        (free_port(), "cannot reach the websocket port"),
        (cloud.https_port, "is cloudhub's HTTPS port"),
    ):
        res = _run(
            "edgecore", "join", "--cloud", f"127.0.0.1:{wrong}", "--token", token,
            "--node-name", "edge-1", "--cert-port", str(cloud.https_port),
            "--data-dir", str(tmp_path / "edge-1"),
        )  # fmt: skip
        assert res.returncode == 1
        line = _one_line(res, "edgecore: ")
        assert says in line and f"127.0.0.1:{wrong}" in line
    Edge(tmp_path, "edge-1").join(cloud, token)


async def test_run_warns_naming_the_address_it_cannot_reach(
    tmp_path: Path, cloud: Cloud, make_edge: MakeEdge
) -> None:
    """An edge whose cloud address does not answer logs a WARNING naming it, once per retry."""
    edge: Edge = make_edge()
    edge.join(cloud)
    config_path = edge.dir / "edgecore.yaml"
    config = yaml.safe_load(config_path.read_text())
    dead = free_port()
    config["hub"]["ws_port"] = dead
    config_path.write_text(yaml.safe_dump(config))
    await edge.start()
    warning = f"WARNING edgecore.edgehub.module: cannot reach the cloud at 127.0.0.1:{dead}"
    await wait_until(lambda: edge.proc.text().count(warning) >= 3, timeout=20)
    lines = [ln for ln in edge.proc.text().splitlines() if warning in ln]
    assert all("(connection refused); retrying in" in ln for ln in lines), lines


def test_edgectl_waits_for_a_cloudhub_that_is_starting(tmp_path: Path) -> None:
    """The README's `cloudhub serve … &` then `edgectl --data-dir … token create` at once:
    edgectl waits for the data dir and the admin port, saying so on stderr, and prints the
    token."""
    cloud = Cloud(tmp_path)
    argv = [PY, "-m", "edgectl", "--server", f"https://127.0.0.1:{cloud.https_port}"]
    argv += ["--data-dir", str(cloud.dir), "token", "create", "--ttl", "1h"]
    ctl = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert ctl.stderr is not None
    try:
        said = ctl.stderr.readline()  # edgectl is waiting now: only then start cloudhub
        cloud.proc.start()
        out, err = ctl.communicate(timeout=30)
    finally:
        cloud.proc.stop()
    assert said.startswith("edgectl: waiting up to 10s for cloudhub to create")
    assert ctl.returncode == 0, err
    assert len(out.strip().split(".")) == 4  # {ca-hash}.{jwt}
    assert "Traceback" not in said + err


def test_demo_with_a_port_in_use_prints_cloudhubs_reason_at_once(tmp_path: Path) -> None:
    """`scripts/demo.sh` whose wss port is taken stops with cloudhub's one-line reason as soon
    as cloudhub exits, not after a 20 s wait for something that will never come up."""
    root = Path(__file__).resolve().parents[2]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = dict(
            os.environ,
            WS_PORT=str(port),
            HTTPS_PORT=str(free_port()),
            LOCAL_API=f"127.0.0.1:{free_port()}",
            MQTT_PORT=str(free_port()),
            DEMO_DIR=str(tmp_path / "demo"),
        )
        started = time.monotonic()
        res = subprocess.run(
            [str(root / "scripts" / "demo.sh")], env=env, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
    assert res.returncode == 1
    assert time.monotonic() - started < 19  # the old wait alone was 20 s
    assert f"cloudhub exited: cloudhub: cannot listen on 127.0.0.1:{port} (wss)" in res.stderr
    assert "timed out" not in res.stderr and "Traceback" not in res.stderr


def test_a_broken_edgecore_yaml_is_one_line(tmp_path: Path) -> None:
    """`edgecore run --config` of a file that is not YAML: one line naming the file and line."""
    bad = tmp_path / "edgecore.yaml"
    bad.write_text("hub: [\n")
    res = _run("edgecore", "run", "--config", str(bad))
    assert res.returncode == 1
    assert f"cannot read {bad}: " in _one_line(res, "edgecore: ")
