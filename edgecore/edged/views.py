"""What each container of a pod looks like to its status, from one round's observation. Pure.

Picks the newest instance of each container of the spec in the pod's current sandbox and
says what :mod:`edgecore.edged.status` needs: running (ready by its readiness probe), exited
(``terminated``, or ``waiting: CrashLoopBackOff`` while the restart back-off runs), or not
started (``waiting`` with the reason of the last failure: ``ErrImagePull`` then
``ImagePullBackOff``, ``CreateContainerConfigError``, …, else ``ContainerCreating``); the
instance before it gives ``lastState``.
"""

from __future__ import annotations

from collections.abc import Mapping

from edgecore.edged.actions import Failure
from edgecore.edged.observe import Details, Observed
from edgecore.edged.podspec import Container, Pod
from edgecore.edged.probes import ProbeState
from edgecore.edged.status import ContainerView, Terminated, terminated_reason
from edgecore.edged.sync import ObservedContainer, ObservedSandbox, should_restart

#: how long a failed pull shows ``ErrImagePull`` before ``ImagePullBackOff``, seconds
ERR_IMAGE_PULL_SHOWN = 2.0


def terminated(c: ObservedContainer, details: Mapping[str, Details]) -> Terminated:
    d = details.get(c.id)
    code = d.exit_code if d else c.exit_code
    return Terminated(
        exit_code=code,
        reason=terminated_reason(code, d.reason if d else ""),
        message=(d.message if d else "")[:1000],
        started_at=c.started_at,
        finished_at=c.finished_at,
        container_id=c.id,
    )


def container_view(
    pod: Pod,
    spec: Container,
    sandbox: ObservedSandbox | None,
    observed: Observed,
    *,
    details: Mapping[str, Details],
    failure: Failure | None,
    readiness: Mapping[str, ProbeState],
    backing_off: Mapping[tuple[str, str], float],
    now: float,
) -> ContainerView:
    """The view of container ``spec`` of ``pod`` (``readiness``: container id -> probe)."""
    mine = sorted(
        (
            c
            for c in observed.containers
            if sandbox is not None and c.sandbox_id == sandbox.id and c.name == spec.name
        ),
        key=lambda c: (c.attempt, c.started_at),
    )
    latest = mine[-1] if mine else None
    previous = mine[-2] if len(mine) > 1 else None
    base = sandbox.restart_base.get(spec.name, 0) if sandbox else 0
    waiting_reason, waiting_message = "ContainerCreating", ""
    if failure is not None and (latest is None or latest.state != "running"):
        waiting_reason, waiting_message = failure.reason, failure.message
        if failure.reason == "ErrImagePull" and now >= failure.at + ERR_IMAGE_PULL_SHOWN:
            waiting_reason = "ImagePullBackOff"
            waiting_message = f'Back-off pulling image "{spec.image}": {failure.message}'
    if latest is None:
        return ContainerView(
            spec.name,
            spec.image,
            waiting_reason=waiting_reason,
            waiting_message=waiting_message,
            restart_count=base,
        )
    d = details.get(latest.id)
    image_id = d.image_ref if d else ""
    last = terminated(previous, details) if previous and previous.state == "exited" else None
    restarts = max(latest.attempt, base)
    if latest.state == "running":
        ready = True
        if spec.readinessProbe is not None:
            probe = readiness.get(latest.id)
            ready = probe is not None and probe.passing
        return ContainerView(
            spec.name,
            spec.image,
            container_id=latest.id,
            image_id=image_id,
            state="running",
            started_at=latest.started_at,
            restart_count=restarts,
            ready=ready,
            last=last,
        )
    if latest.state in ("exited", "unknown"):
        term = terminated(latest, details)
        due = backing_off.get((pod.key, spec.name))
        if due is not None:
            return ContainerView(
                spec.name,
                spec.image,
                container_id=latest.id,
                image_id=image_id,
                state="waiting",
                waiting_reason="CrashLoopBackOff",
                waiting_message=(
                    f"back-off {max(0, round(due - latest.finished_at))}s restarting failed "
                    f"container={spec.name} pod={pod.metadata.name}_{pod.metadata.namespace}"
                    f"({pod.metadata.uid})"
                ),
                restart_count=restarts,
                last=term,
                will_restart=True,
            )
        return ContainerView(
            spec.name,
            spec.image,
            container_id=latest.id,
            image_id=image_id,
            state="terminated",
            terminated=term,
            restart_count=restarts,
            last=last,
            will_restart=should_restart(pod.spec.restartPolicy, latest.exit_code),
        )
    return ContainerView(
        spec.name,
        spec.image,
        container_id=latest.id,
        image_id=image_id,
        waiting_reason=waiting_reason,
        waiting_message=waiting_message,
        restart_count=restarts,
        last=last,
    )
