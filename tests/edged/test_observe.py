"""What edged reads once per container instance, and what it reads again."""

from __future__ import annotations

import pytest

from edgecore.cri import api_pb2 as pb
from edgecore.edged.observe import OOM_SETTLE, is_final

pytestmark = pytest.mark.timeout(10)

FINISHED = 1_000.0


def _status(state: pb.ContainerState, exit_code: int = 0, reason: str = "") -> pb.ContainerStatus:
    return pb.ContainerStatus(
        state=state, exit_code=exit_code, reason=reason, finished_at=int(FINISHED * 1e9)
    )


def test_running_and_plain_exits() -> None:
    """A running container is read again; an ordinary exit is final at once."""
    assert not is_final(_status(pb.CONTAINER_RUNNING), FINISHED)
    assert is_final(_status(pb.CONTAINER_EXITED, 0, "Completed"), FINISHED)
    assert is_final(_status(pb.CONTAINER_EXITED, 1, "Error"), FINISHED)
    assert is_final(_status(pb.CONTAINER_EXITED, 137, "OOMKilled"), FINISHED)


def test_a_sigkill_exit_is_read_again_until_its_oom_reason_could_have_landed() -> None:
    """Exit 137 reported as Error may turn into OOMKilled: not final for OOM_SETTLE seconds."""
    killed = _status(pb.CONTAINER_EXITED, 137, "Error")
    assert not is_final(killed, FINISHED + 1)
    assert is_final(killed, FINISHED + OOM_SETTLE + 0.1)
