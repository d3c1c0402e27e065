"""edgestream's runtime over CRI.

edgestream finds containers the way a kubelet's tools do: by the labels edged puts on them
(:mod:`edgecore.cri.labels`), restricted to this node's. The newest container of a name is
the one that counts (a restart creates a new one, with a new log file).
"""

from __future__ import annotations

from collections.abc import Sequence

from edgecore.cri import api_pb2 as pb
from edgecore.cri import labels
from edgecore.cri.client import CriClient
from edgecore.edgestream.runtime import ExecResult, RuntimeContainer


class CriRuntime:
    """:class:`StreamRuntime` through the CRI (edged's client)."""

    def __init__(self, cri: CriClient, *, node_name: str) -> None:
        self._cri = cri
        self._node = node_name

    async def find(self, namespace: str, pod: str, container: str) -> RuntimeContainer | None:
        selector = {
            **labels.managed_selector(self._node),
            labels.POD_NAMESPACE: namespace,
            labels.POD_NAME: pod,
            labels.CONTAINER_NAME: container,
        }
        found = await self._cri.list_containers(labels=selector)
        if not found:
            return None
        newest = max(found, key=lambda c: c.created_at)
        status = await self._cri.container_status(newest.id)
        return RuntimeContainer(
            id=newest.id,
            log_path=status.log_path,
            running=status.state == pb.CONTAINER_RUNNING,
            created_at=newest.created_at,
        )

    async def close(self) -> None:
        await self._cri.close()

    async def exec_url(
        self, container_id: str, command: Sequence[str], *, tty: bool, stdin: bool
    ) -> str:
        return await self._cri.exec(container_id, command, tty=tty, stdin=stdin)

    async def exec_sync(self, container_id: str, command: Sequence[str]) -> ExecResult:
        res = await self._cri.exec_sync(container_id, command)
        return ExecResult(exit_code=res.exit_code, stdout=res.stdout, stderr=res.stderr)
