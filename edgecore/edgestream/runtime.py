"""What edgestream needs from the container runtime (its CRI implementation is
:mod:`edgecore.edgestream.cri`, imported only by an edge that runs a runtime: gRPC costs
~15 MB resident)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class RuntimeContainer:
    """One container of a pod, as the runtime reports it."""

    id: str
    #: the CRI log file (kubelet's layout: ``.../{container}/{restartCount}.log``)
    log_path: str
    running: bool
    #: nanoseconds since the epoch; orders a container's restarts
    created_at: int


@dataclass(frozen=True, slots=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes


class StreamRuntime(Protocol):
    """The runtime calls edgestream makes."""

    async def find(self, namespace: str, pod: str, container: str) -> RuntimeContainer | None:
        """The newest container named ``container`` of the pod, or None."""

    async def exec_sync(self, container_id: str, command: Sequence[str]) -> ExecResult:
        """Run ``command`` in the container to its end.

        Raises:
            ContainerRuntimeError: the runtime refused (gone container, no such executable).
        """

    async def exec_url(
        self, container_id: str, command: Sequence[str], *, tty: bool, stdin: bool
    ) -> str:
        """Prepare an interactive exec; the runtime's streaming URL (kubelet's streaming
        server: websocket, ``v4.channel.k8s.io``).

        Raises:
            ContainerRuntimeError: the runtime refused.
        """

    async def close(self) -> None:
        """Let go of the runtime connection (edgestream calls it when it stops)."""
