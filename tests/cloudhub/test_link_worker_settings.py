"""How many link workers cloudhub starts, and how a node's reading is paced on the ACK fast
path."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cloudhub import cli
from cloudhub.config import HubSettings
from cloudhub.hub.reader import FrameReader
from cloudhub.hub.session import NodeSession
from tests.cloudhub.test_session_writes import FakeLink, make_session
from wire.codec import decode

pytestmark = pytest.mark.timeout(10)

ACK = (
    '{"header":{"msg_id":"a1","parent_msg_id":"m1","timestamp":0,"resourceversion":"",'
    '"sync":false,"type":""},"route":{"source":"edgehub","destination":"","group":"resource",'
    '"operation":"response","resource":"default/pod/p"},"content":"OK"}'
)


def test_a_container_cpu_limit_caps_the_cores_counted(tmp_path: Path) -> None:
    """A cgroup v2 quota of 1.5 CPUs counts as 2 cores at most; no limit leaves the affinity."""
    limited = tmp_path / "cpu.max"
    limited.write_text("150000 100000\n")
    assert cli.available_cpus(limited) <= 2
    unlimited = tmp_path / "unlimited"
    unlimited.write_text("max 100000\n")
    assert cli.available_cpus(unlimited) >= 1
    assert cli.available_cpus(tmp_path / "missing") >= 1


@pytest.mark.parametrize(("value", "expected"), [("0", 0), ("3", 3), ("-1", None), ("x", None)])
def test_link_workers_takes_a_count(value: str, expected: int | None) -> None:
    """--link-workers N is a count from 0 to 64; anything else is refused."""
    if expected is None:
        with pytest.raises(argparse.ArgumentTypeError, match="or 'auto'"):
            cli._link_workers(value)
    else:
        assert cli._link_workers(value) == expected


def test_auto_leaves_one_core_to_cloudhub(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto: one worker per core beyond the first, none on one core, at most 4."""
    assert cli._link_workers("auto") is None
    for cores, workers in [(1, 0), (2, 1), (4, 3), (32, 4)]:
        monkeypatch.setattr(cli, "available_cpus", lambda cores=cores: cores)
        assert cli.auto_link_workers(kubernetes=False) == workers


def test_auto_is_no_worker_in_kubernetes_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto with a cluster: no worker process (the API server bounds throughput there)."""
    monkeypatch.setattr(cli, "available_cpus", lambda: 8)
    assert cli.auto_link_workers(kubernetes=True) == 0


def test_the_cli_rejects_a_bad_worker_count(capsys: pytest.CaptureFixture[str]) -> None:
    """A bad --link-workers exits 2 with one line saying what is allowed."""
    assert cli.main(["serve", "--link-workers", "many"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "argument --link-workers: 'many'" in err and "or 'auto'" in err


async def _flights(n: int) -> tuple[NodeSession, list[str]]:
    """A started session (on a fake websocket) with ``n`` objects in flight, and their ids."""
    session = make_session(FakeLink())
    session.state.start({}, {})
    for i in range(n):
        session.state.change(f"default/pod/p{i}", "1", {"kind": "Pod"})
    frames = session.state.poll(0.0, 0)
    return session, [decode(frame).id for frame in frames]


def _ack(msg_id: str) -> str:
    return ACK.replace('"m1"', f'"{msg_id}"')


async def test_the_ack_fast_path_declines_while_reading_is_paced() -> None:
    """Past the node's frame budget, ACKs wait for the paced reader instead of the fast path."""
    now = [100.0]
    session, ids = await _flights(5)
    settings = HubSettings(node_rate=20.0, node_burst=0.1)  # two ACKs (0.05 each) at once
    reader = FrameReader(session, settings, lambda: now[0])
    assert reader.ack_now(_ack(ids[0])) and reader.ack_now(_ack(ids[1]))
    assert reader.ack_now(_ack(ids[2]))  # goes into debt: reading is held from here
    assert reader.pace_until > now[0]
    assert not reader.ack_now(_ack(ids[3]))
    assert session.downstream.acks == 3 and session.downstream.in_flight == 2
    now[0] = reader.pace_until
    assert reader.ack_now(_ack(ids[3]))
    assert session.downstream.in_flight == 1
    assert session.traffic.frames_in == 4
    await session.close("done")


async def test_only_acks_take_the_fast_path() -> None:
    """A keepalive or any other frame is left to the reader task."""
    session, (msg_id,) = await _flights(1)
    reader = FrameReader(session, HubSettings(), lambda: 0.0)
    assert not reader.ack_now(_ack(msg_id).replace('"response"', '"keepalive"'))
    assert not reader.ack_now(b"binary")
    assert not reader.ack_now(_ack(msg_id).replace('"OK"', '{"a": 1}'))
    assert session.downstream.in_flight == 1 and session.traffic.frames_in == 0
    assert reader.ack_now(_ack(msg_id)) and session.downstream.in_flight == 0
    await session.close("done")
