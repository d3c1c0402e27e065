"""How figures are shown to people, the same in ``edgectl`` and on the fleet page: pure.

- :func:`human_duration`: kubectl's short ages (``HumanDuration``: ``42s``, ``5m30s``, ``3h``,
  ``2d4h``, ``3y``).
- :func:`parse_time`: an RFC 3339 timestamp as Kubernetes writes it.
- :func:`property_states`: a Device's properties as rows (desired, reported, when, in sync).
  A property is in sync (``yes``) when the edge has observed the desired value and the device
  reports it, ``pending`` while either is behind, ``-`` without a desired value.
- :func:`pod_summary`: ``kubectl get pods``' READY, STATUS and RESTARTS, computed from the
  pod's ``status`` the way kubectl's printer computes them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

SYNC_YES = "yes"
SYNC_PENDING = "pending"
SYNC_NONE = "-"


def human_duration(seconds: float) -> str:
    """kubectl's short age (``HumanDuration``): ``42s``, ``5m30s``, ``3h``, ``2d4h``, ``3y``."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes, hours = s // 60, s // 3600
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    years, days = divmod(hours // 24, 365)
    if hours < 24 * 365 * 8:
        return f"{years}y{days}d" if days else f"{years}y"
    return f"{years}y"


def parse_time(value: Any) -> dt.datetime | None:
    """An RFC 3339 timestamp as Kubernetes writes it (``2024-05-01T12:00:00Z``), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class PropertyState:
    """One property of a Device as people read it."""

    name: str
    desired: str | None
    reported: str | None
    #: unix milliseconds of the report (the twin's ``metadata.timestamp``), None if unknown
    reported_at_ms: int | None
    sync: str


def property_states(device: dict[str, Any]) -> list[PropertyState]:
    """Every property of the spec, then any only the status knows, in that order."""
    spec = device.get("spec") or {}
    props = [p for p in spec.get("properties") or [] if isinstance(p, dict)]
    twins = {
        str(t.get("propertyName")): t
        for t in (device.get("status") or {}).get("twins") or []
        if isinstance(t, dict)
    }
    names = [str(p.get("name")) for p in props]
    names += [n for n in twins if n not in names]
    desired = {str(p.get("name")): (p.get("desired") or {}).get("value") for p in props}
    out: list[PropertyState] = []
    for name in names:
        twin = twins.get(name) or {}
        reported = twin.get("reported") or {}
        want = desired.get(name)
        value = reported.get("value")
        if want is None:
            sync = SYNC_NONE
        elif (twin.get("observedDesired") or {}).get("value") == want == value:
            sync = SYNC_YES
        else:
            sync = SYNC_PENDING
        try:
            stamp: int | None = int(str((reported.get("metadata") or {}).get("timestamp")))
        except ValueError:
            stamp = None
        out.append(
            PropertyState(
                name=name,
                desired=None if want is None else str(want),
                reported=None if value is None else str(value),
                reported_at_ms=stamp,
                sync=sync,
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class PodSummary:
    """``kubectl get pods``' READY, STATUS and RESTARTS of one pod."""

    ready: str
    status: str
    restarts: int
    #: when the newest restart happened (a container's ``lastState.terminated.finishedAt``),
    #: None if unknown; kubectl prints RESTARTS as ``3 (5m ago)`` with it
    last_restart: dt.datetime | None = None


def pod_summary(pod: dict[str, Any]) -> PodSummary:
    """READY, STATUS and RESTARTS of a pod, as kubectl's printer computes them.

    READY counts running, ready containers out of the spec's; STATUS is the last container's
    waiting or terminated reason (``CrashLoopBackOff``, ``ErrImagePull``, ``ExitCode:1``), an
    init container's progress (``Init:0/1``), ``Terminating`` while being deleted, else the
    phase. A pod nobody has reported on yet (``--runtime none``) is ``Pending``, as the API
    server would have it. RESTARTS sums the containers' restart counts.
    """
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    total = len(spec.get("containers") or [])
    ready = 0
    restarts = 0
    last_restart: dt.datetime | None = None
    reason = str(status.get("reason") or status.get("phase") or "Pending")

    def note_restart(cs: dict[str, Any]) -> None:
        nonlocal restarts, last_restart
        restarts += _int(cs.get("restartCount"))
        finished = parse_time(
            ((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        )
        if finished is not None and (last_restart is None or finished > last_restart):
            last_restart = finished

    init_specs = spec.get("initContainers") or []
    initializing = False
    for i, cs in enumerate(_dicts(status.get("initContainerStatuses"))):
        note_restart(cs)
        state = cs.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if isinstance(terminated, dict) and _int(terminated.get("exitCode")) == 0:
            continue
        initializing = True
        if isinstance(terminated, dict):
            reason = "Init:" + (terminated.get("reason") or _exit_text(terminated))
        elif isinstance(waiting, dict) and waiting.get("reason") not in (
            None,
            "",
            "PodInitializing",
        ):
            reason = f"Init:{waiting['reason']}"
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        break
    if not initializing or _condition(pod, "Initialized") == "True":
        has_running = False
        for cs in reversed(_dicts(status.get("containerStatuses"))):
            note_restart(cs)
            state = cs.get("state") or {}
            waiting, terminated = state.get("waiting"), state.get("terminated")
            if isinstance(waiting, dict) and waiting.get("reason"):
                reason = str(waiting["reason"])
            elif isinstance(terminated, dict):
                reason = str(terminated.get("reason") or _exit_text(terminated))
            elif cs.get("ready") and isinstance(state.get("running"), dict):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _condition(pod, "Ready") == "True" else "NotReady"
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    return PodSummary(f"{ready}/{total}", reason, restarts, last_restart)


def _condition(obj: dict[str, Any], kind: str) -> str:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == kind:
            return str(cond.get("status") or "")
    return ""


def _exit_text(terminated: dict[str, Any]) -> str:
    signal = _int(terminated.get("signal"))
    return f"Signal:{signal}" if signal else f"ExitCode:{_int(terminated.get('exitCode'))}"


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
