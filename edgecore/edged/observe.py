"""What the runtime has of this node's pods: sandboxes and containers, by edged's labels.

:class:`Observer` lists them (two CRI calls a round) and keeps what does not change while a
sandbox or container lives, so a round asks the runtime only about what is new: a sandbox's IP
(``PodSandboxStatus``, once per sandbox) and a container's start, exit code and reason
(``ContainerStatus``, once while it runs and once when it has exited).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from edgecore.cri import api_pb2 as pb
from edgecore.cri import labels as L
from edgecore.cri.client import CriClient
from edgecore.edged import configs
from edgecore.edged.sync import ContainerState, ObservedContainer, ObservedSandbox

STATES: dict[int, ContainerState] = {
    pb.CONTAINER_CREATED: "created",
    pb.CONTAINER_RUNNING: "running",
    pb.CONTAINER_EXITED: "exited",
    pb.CONTAINER_UNKNOWN: "unknown",
}


@dataclass(slots=True)
class Details:
    """ContainerStatus of one container instance (final once it exited)."""

    started_at: float
    finished_at: float
    exit_code: int
    reason: str
    message: str
    image_ref: str
    final: bool


@dataclass(slots=True)
class Observed:
    """One round's view of the runtime."""

    sandboxes: list[ObservedSandbox]
    containers: list[ObservedContainer]
    #: sandbox id -> its IP ("" for none yet, or host network)
    sandbox_ip: dict[str, str] = field(default_factory=dict)


def seconds(ns: int) -> float:
    return ns / 1e9 if ns else 0.0


#: seconds after a SIGKILL exit (137) during which its reason is read again: containerd records
#: a cgroup OOM as an event of its own that can land after the exit, so the first read may say
#: ``Error`` where a later one says ``OOMKilled``
OOM_SETTLE = 10.0


def is_final(cs: pb.ContainerStatus, now: float) -> bool:
    """Whether this status of an instance will not change any more."""
    if cs.state != pb.CONTAINER_EXITED:
        return False
    settling = cs.exit_code == 137 and cs.reason in ("", "Error")
    return not (settling and now - seconds(cs.finished_at) < OOM_SETTLE)


def _restart_base(annotations: Mapping[str, str]) -> dict[str, int]:
    """The restart counts a sandbox was created with (see :class:`sync.CreateSandbox`)."""
    try:
        raw = json.loads(annotations.get(configs.RESTART_BASE, "{}"))
        return {str(k): int(v) for k, v in raw.items()}
    except (ValueError, AttributeError, TypeError):
        return {}


class Observer:
    """Lists this node's sandboxes and containers; caches what stays true while they live."""

    def __init__(self, node_name: str) -> None:
        self._selector = L.managed_selector(node_name)
        self.details: dict[str, Details] = {}
        self.sandbox_ip: dict[str, str] = {}

    async def observe(self, cri: CriClient) -> Observed:
        boxes, items = await asyncio.gather(
            cri.list_pod_sandbox(labels=self._selector), cri.list_containers(labels=self._selector)
        )
        sandboxes = [
            ObservedSandbox(
                id=sb.id,
                namespace=sb.metadata.namespace,
                name=sb.metadata.name,
                uid=sb.metadata.uid,
                ready=sb.state == pb.SANDBOX_READY,
                attempt=sb.metadata.attempt,
                created_at=seconds(sb.created_at),
                sandbox_hash=sb.annotations.get(configs.SANDBOX_HASH, ""),
                grace_seconds=int(sb.annotations.get(L.TERMINATION_GRACE, "30") or 30),
                restart_base=_restart_base(sb.annotations),
            )
            for sb in boxes
        ]
        ready = [
            sb.id for sb in boxes if sb.state == pb.SANDBOX_READY and sb.id not in self.sandbox_ip
        ]
        if ready:
            statuses = await asyncio.gather(
                *(cri.pod_sandbox_status(i) for i in ready), return_exceptions=True
            )
            for sid, st in zip(ready, statuses, strict=True):
                if isinstance(st, pb.PodSandboxStatusResponse):
                    self.sandbox_ip[sid] = st.status.network.ip
        need = [
            c.id
            for c in items
            if c.id not in self.details
            or (not self.details[c.id].final and c.state != pb.CONTAINER_RUNNING)
        ]
        if need:
            details = await asyncio.gather(
                *(cri.container_status(i) for i in need), return_exceptions=True
            )
            now = time.time()
            for cid, cs in zip(need, details, strict=True):
                if isinstance(cs, pb.ContainerStatus):
                    self.details[cid] = Details(
                        started_at=seconds(cs.started_at),
                        finished_at=seconds(cs.finished_at),
                        exit_code=cs.exit_code,
                        reason=cs.reason,
                        message=cs.message,
                        image_ref=cs.image_ref,
                        final=is_final(cs, now),
                    )
        containers = []
        for c in items:
            d = self.details.get(c.id)
            containers.append(
                ObservedContainer(
                    id=c.id,
                    sandbox_id=c.pod_sandbox_id,
                    name=c.metadata.name,
                    state=STATES.get(c.state, "unknown"),
                    attempt=c.metadata.attempt,
                    spec_hash=c.annotations.get(L.SPEC_HASH, ""),
                    exit_code=d.exit_code if d else 0,
                    started_at=d.started_at if d else 0.0,
                    finished_at=d.finished_at if d else 0.0,
                )
            )
        return Observed(
            sandboxes, containers, {s.id: self.sandbox_ip.get(s.id, "") for s in sandboxes}
        )

    def forget(self, observed: Observed) -> None:
        """Drop what is kept about containers and sandboxes the runtime no longer has."""
        ids = {c.id for c in observed.containers}
        for cid in [c for c in self.details if c not in ids]:
            del self.details[cid]
        live = {sb.id for sb in observed.sandboxes}
        for sid in [s for s in self.sandbox_ip if s not in live]:
            del self.sandbox_ip[sid]
