"""How figures are shown to people, the same in ``edgectl`` and on the fleet page: pure.

- :func:`human_duration`: kubectl's short ages (``42s``, ``5m``, ``3h``, ``12d``).
- :func:`property_states`: a Device's properties as rows (desired, reported, when, in sync).
  A property is in sync (``yes``) when the edge has observed the desired value and the device
  reports it, ``pending`` while either is behind, ``-`` without a desired value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SYNC_YES = "yes"
SYNC_PENDING = "pending"
SYNC_NONE = "-"


def human_duration(seconds: float) -> str:
    """kubectl-style short age: ``42s``, ``5m``, ``3h``, ``12d``."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 120 * 60:
        return f"{s // 60}m"
    if s < 48 * 3600:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


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


def pod_summary(pod: dict[str, Any]) -> PodSummary:
    """As kubectl computes them: STATUS is a container's waiting or terminated reason when
    there is one, else the phase (``Pending`` before any status)."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    statuses = [s for s in status.get("containerStatuses") or [] if isinstance(s, dict)]
    ready = sum(1 for s in statuses if s.get("ready"))
    shown = str(status.get("reason") or status.get("phase") or "Pending")
    for s in statuses:
        state = s.get("state") or {}
        waiting = state.get("waiting") or {}
        ended = state.get("terminated") or {}
        reason = waiting.get("reason") or ended.get("reason")
        if reason:
            shown = str(reason)
            break
    restarts = 0
    for s in statuses:
        try:
            restarts += int(s.get("restartCount") or 0)
        except (TypeError, ValueError):
            continue
    return PodSummary(f"{ready}/{len(containers) or len(statuses)}", shown, restarts)
