"""Pod status as a kubelet writes it, from what edged observed. Pure.

:func:`pod_status` turns a pod's spec and the runtime's view of its sandbox and containers
into ``status``: ``phase``, ``conditions`` (``PodScheduled``, ``Initialized``,
``ContainersReady``, ``Ready``), ``hostIP``, ``podIP``/``podIPs``, ``startTime`` and one
``containerStatuses`` entry per container of the spec (``state``, ``lastState``, ``ready``,
``restartCount``, ``image``, ``imageID``, ``containerID`` = ``containerd://ID``, ``started``).

Phase, as kubelet's ``getPhase``: ``Pending`` until every container has started once;
``Succeeded`` when all terminated with 0 and none will restart; ``Failed`` when all terminated,
some not with 0, and none will restart; else ``Running``.

Reasons a user looks for are the kubelet's: ``ContainerCreating``, ``ErrImagePull``,
``ImagePullBackOff``, ``ErrImageNeverPull``, ``CrashLoopBackOff``,
``CreateContainerConfigError`` (a missing configmap key), ``OOMKilled``, ``Error``,
``Completed``; the message is the runtime's or ours, in one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edgecore.edged.podspec import Pod


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Terminated:
    exit_code: int
    reason: str
    message: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    container_id: str = ""

    def as_state(self) -> dict[str, Any]:
        out: dict[str, Any] = {"exitCode": self.exit_code, "reason": self.reason}
        if self.message:
            out["message"] = self.message
        if self.started_at:
            out["startedAt"] = rfc3339(self.started_at)
        if self.finished_at:
            out["finishedAt"] = rfc3339(self.finished_at)
        if self.container_id:
            out["containerID"] = f"containerd://{self.container_id}"
        return {"terminated": out}


@dataclass(frozen=True, slots=True)
class ContainerView:
    """What edged knows of one container of the spec (its newest instance)."""

    name: str
    image: str
    container_id: str = ""
    image_id: str = ""
    #: "running", "terminated", or "waiting" (not started, or waiting to start again)
    state: str = "waiting"
    started_at: float = 0.0
    terminated: Terminated | None = None
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    restart_count: int = 0
    #: the readiness probe's verdict (True when it has none and runs)
    ready: bool = False
    #: the instance before this one ended so (``lastState``)
    last: Terminated | None = None
    #: it will be started again (restart policy and back-off)
    will_restart: bool = False


def terminated_reason(exit_code: int, runtime_reason: str) -> str:
    """``OOMKilled`` as the runtime says it; else ``Completed`` for 0 and ``Error`` otherwise."""
    if runtime_reason and runtime_reason not in ("Completed", "Error"):
        return runtime_reason
    return "Completed" if exit_code == 0 else "Error"


def _container_status(view: ContainerView) -> dict[str, Any]:
    state: dict[str, Any]
    if view.state == "running":
        state = (
            {"running": {"startedAt": rfc3339(view.started_at)}}
            if view.started_at
            else {"running": {}}
        )
    elif view.state == "terminated" and view.terminated is not None:
        state = view.terminated.as_state()
    else:
        waiting: dict[str, Any] = {"reason": view.waiting_reason}
        if view.waiting_message:
            waiting["message"] = view.waiting_message
        state = {"waiting": waiting}
    out: dict[str, Any] = {
        "name": view.name,
        "state": state,
        "lastState": view.last.as_state() if view.last is not None else {},
        "ready": view.state == "running" and view.ready,
        "restartCount": view.restart_count,
        "image": view.image,
        "imageID": view.image_id,
        "started": view.state == "running",
    }
    if view.container_id:
        out["containerID"] = f"containerd://{view.container_id}"
    return out


def phase(pod: Pod, views: list[ContainerView]) -> str:
    """Kubelet's pod phase from its containers."""
    if not views:
        return "Pending"
    running = sum(v.state == "running" for v in views)
    terminated = [v for v in views if v.state == "terminated" or (v.last and v.state == "waiting")]
    waiting_fresh = sum(v.state == "waiting" and v.last is None for v in views)
    if waiting_fresh:
        return "Pending"
    if running:
        return "Running"
    if any(v.will_restart for v in views):
        return "Running"
    if len(terminated) == len(views):
        codes = [
            (v.terminated or v.last).exit_code  # type: ignore[union-attr]
            for v in terminated
        ]
        if all(c == 0 for c in codes):
            return "Succeeded"
        return "Failed" if pod.spec.restartPolicy != "Always" else "Running"
    return "Pending"


def pod_status(
    pod: Pod,
    views: Mapping[str, ContainerView],
    *,
    pod_ip: str,
    host_ip: str,
    start_time: float,
    now: float,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``status`` of ``pod``; transitions keep their time from ``previous`` when unchanged."""
    ordered = [views.get(c.name) or ContainerView(c.name, c.image) for c in pod.spec.containers]
    ph = phase(pod, ordered)
    all_ready = all(v.state == "running" and v.ready for v in ordered)
    not_ready = [v.name for v in ordered if not (v.state == "running" and v.ready)]
    reason = (
        ""
        if all_ready
        else ("PodCompleted" if ph in ("Succeeded", "Failed") else "ContainersNotReady")
    )
    message = (
        ""
        if all_ready or reason == "PodCompleted"
        else (f"containers with unready status: [{' '.join(not_ready)}]")
    )
    conditions = [
        _condition("PodReadyToStartContainers", bool(pod_ip) or pod.spec.hostNetwork),
        _condition("Initialized", True),
        _condition("Ready", all_ready, reason, message),
        _condition("ContainersReady", all_ready, reason, message),
        _condition("PodScheduled", True),
    ]
    old = {
        c.get("type"): c for c in (previous or {}).get("conditions") or [] if isinstance(c, dict)
    }
    for c in conditions:
        prev = old.get(c["type"])
        stamp = (
            prev.get("lastTransitionTime") if prev and prev.get("status") == c["status"] else None
        )
        c["lastTransitionTime"] = stamp or rfc3339(now)
    status: dict[str, Any] = {
        "phase": ph,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}] if host_ip else [],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}] if pod_ip else [],
        "startTime": rfc3339(start_time),
        "qosClass": _qos(pod),
        "containerStatuses": [_container_status(v) for v in ordered],
    }
    return status


def invalid_status(message: str, *, now: float, reason: str = "InvalidPodSpec") -> dict[str, Any]:
    """The status of a pod edged cannot run at all (its spec does not validate)."""
    return {
        "phase": "Pending",
        "reason": reason,
        "message": message,
        "conditions": [
            _condition("PodScheduled", True) | {"lastTransitionTime": rfc3339(now)},
            _condition("Ready", False, reason, message) | {"lastTransitionTime": rfc3339(now)},
        ],
    }


def _condition(type: str, ok: bool, reason: str = "", message: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": type, "status": "True" if ok else "False"}
    if not ok and reason:
        out["reason"] = reason
    if not ok and message:
        out["message"] = message
    return out


def _qos(pod: Pod) -> str:
    limits = [c.resources.limits for c in pod.spec.containers]
    requests = [c.resources.requests for c in pod.spec.containers]
    if not any(limits) and not any(requests):
        return "BestEffort"
    guaranteed = all(
        "cpu" in lim and "memory" in lim and all(req.get(k, lim[k]) == lim[k] for k in req)
        for lim, req in zip(limits, requests, strict=True)
    )
    return "Guaranteed" if guaranteed else "Burstable"
