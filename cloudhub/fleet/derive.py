"""Which Events a change of an object means: pure rules, no I/O, no clock (``at`` is passed).

Pods, as a kubelet words them: a container whose ``running.startedAt`` is new was ``Started``;
a container waiting for a reason that is not part of a normal start (``ErrImagePull``,
``CrashLoopBackOff``, ...) ``Failed`` (``BackOff`` for the back-off reasons); a container that
ended with a non-zero exit code ``Failed``; a pod whose phase became ``Failed`` ``Failed``.
Devices: ``status.state`` changing to ``online`` / anything else. Nodes: the hub's link
reports. Twin reports the cloud refused: the devicecontroller's reason.

Only changes count: the first sight of an object (cloudhub starting and listing the store)
records nothing, so a restart does not replay history as new events.
"""

from __future__ import annotations

from typing import Any

from wire.events import (
    DEVICE_OFFLINE,
    DEVICE_ONLINE,
    NODE_OFFLINE,
    NODE_ONLINE,
    POD_BACKOFF,
    POD_FAILED,
    POD_STARTED,
    TWIN_REFUSED,
    Event,
    ObjectReference,
    new_event,
)
from wire.kinds import DEVICES_API_VERSION

#: waiting reasons of a container on its normal way to running: not worth an event
_BENIGN_WAITING = frozenset({"", "ContainerCreating", "PodInitializing"})


def reference(obj: dict[str, Any]) -> ObjectReference:
    """``involvedObject`` for a Kubernetes-shaped object."""
    meta = obj.get("metadata") or {}
    return ObjectReference(
        kind=str(obj.get("kind") or ""),
        name=str(meta.get("name") or ""),
        namespace=meta.get("namespace"),
        uid=meta.get("uid"),
        api_version=obj.get("apiVersion"),
    )


def node_event(node: str, *, online: bool, at: float) -> Event:
    """The node's link came up or went away."""
    ref = ObjectReference(kind="Node", name=node, uid=node, api_version="v1")
    if online:
        return new_event(
            ref, reason=NODE_ONLINE, message=f"Node {node} status is now: NodeReady", at=at
        )
    return new_event(
        ref,
        reason=NODE_OFFLINE,
        message=f"Node {node} status is now: NodeNotReady (no link to cloudhub)",
        type="Warning",
        at=at,
    )


def twin_refused_event(namespace: str, name: str, reason: str, *, at: float) -> Event:
    """The cloud refused a twin or state report of a device."""
    ref = ObjectReference(
        kind="Device",
        name=name,
        namespace=namespace,
        api_version=DEVICES_API_VERSION,
    )
    return new_event(ref, reason=TWIN_REFUSED, message=reason, type="Warning", at=at)


def device_events(old: dict[str, Any] | None, new: dict[str, Any], *, at: float) -> list[Event]:
    """``DeviceOnline``/``DeviceOffline`` when ``status.state`` changed."""
    if old is None:
        return []
    before = (old.get("status") or {}).get("state")
    after = (new.get("status") or {}).get("state")
    if after == before or not after:
        return []
    ref = reference(new)
    if after == "online":
        return [new_event(ref, reason=DEVICE_ONLINE, message="device is online", at=at)]
    return [
        new_event(ref, reason=DEVICE_OFFLINE, message=f"device is {after}", type="Warning", at=at)
    ]


def pod_events(old: dict[str, Any] | None, new: dict[str, Any], *, at: float) -> list[Event]:
    """What a kubelet would have recorded for the status change from ``old`` to ``new``."""
    if old is None:
        return []
    old_status, new_status = old.get("status"), new.get("status")
    if old_status is new_status or old_status == new_status:
        return []  # the usual change (labels, annotations, spec): nothing a kubelet records
    ref = reference(new)
    before = _containers(old)
    out: list[Event] = []
    for name, status in _containers(new).items():
        prev = before.get(name) or {}
        out.extend(_container_events(ref, name, prev.get("state") or {}, status, at))
    old_phase = (old_status or {}).get("phase")
    status = new_status or {}
    phase = status.get("phase")
    if phase != old_phase and phase == "Failed":
        why = status.get("message") or status.get("reason") or "all containers ended, some failed"
        out.append(
            new_event(ref, reason=POD_FAILED, message=f"Pod failed: {why}", type="Warning", at=at)
        )
    elif phase != old_phase and phase == "Running" and not _containers(new):
        out.append(new_event(ref, reason=POD_STARTED, message="Pod is running", at=at))
    return out


def _container_events(
    ref: ObjectReference, name: str, prev: dict[str, Any], status: dict[str, Any], at: float
) -> list[Event]:
    state = status.get("state") or {}
    pod_ref = ref.model_copy(update={"field_path": f"spec.containers{{{name}}}"})
    running = state.get("running")
    if isinstance(running, dict):
        started = running.get("startedAt")
        if started != ((prev.get("running") or {}).get("startedAt")):
            return [
                new_event(pod_ref, reason=POD_STARTED, message=f"Started container {name}", at=at)
            ]
        return []
    waiting = state.get("waiting")
    if isinstance(waiting, dict):
        why = str(waiting.get("reason") or "")
        if why in _BENIGN_WAITING or why == ((prev.get("waiting") or {}).get("reason") or ""):
            return []
        detail = waiting.get("message")
        message = f"container {name}: {why}" + (f": {detail}" if detail else "")
        reason = POD_BACKOFF if why.endswith("BackOff") else POD_FAILED
        return [new_event(pod_ref, reason=reason, message=message, type="Warning", at=at)]
    ended = state.get("terminated")
    if isinstance(ended, dict):
        code = ended.get("exitCode")
        previous = prev.get("terminated") or {}
        same = previous.get("finishedAt") == ended.get("finishedAt") and bool(previous)
        if code in (0, None) or same:
            return []
        why = ended.get("reason") or "Error"
        message = f"container {name} exited with code {code} ({why})"
        return [new_event(pod_ref, reason=POD_FAILED, message=message, type="Warning", at=at)]
    return []


def _containers(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return {str(s.get("name")): s for s in statuses if isinstance(s, dict)}
