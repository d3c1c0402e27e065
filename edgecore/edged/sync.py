"""The pod-sync state machine: desired pods + what the runtime has -> actions. Pure.

No runtime, no clock, no I/O: :func:`plan` takes the desired pods (from the cache), the
sandboxes and containers the runtime reports (found by edged's labels, see
:mod:`edgecore.cri.labels`) and ``now``, and returns the actions that move the runtime
towards the desired state, plus the time at which it wants to be asked again (a restart
back-off that runs out). :mod:`edgecore.edged.module` executes them and calls it again;
tests drive it by feeding states.

The rules, as a kubelet's:

- A pod is its sandbox (network namespace, logs directory) plus its containers. Exactly one
  ready sandbox per desired pod uid; an extra one, a not-ready one (the pause process died, the
  box rebooted) or one whose sandbox-level spec changed (``hostNetwork``) is killed, and a new
  sandbox is created with the next attempt number. The new sandbox carries the restart counts
  its containers had reached (``restart_base``), so ``restartCount`` survives a reboot.
- Each container of the spec has at most one live instance (the newest ``attempt``) in the
  current sandbox. None: it is started (``attempt`` = restart count). Running with the spec's
  hash: left alone, whoever started it (this is re-adoption after an edgecore restart).
  Running with another hash (the spec changed): killed with the pod's grace period and started
  again. Exited: started again when ``restartPolicy`` says so (``Always``; ``OnFailure`` for a
  non-zero exit code): the first time at once, then after the back-off (10 s doubling to
  5 min by default, counted from when it finished; reset when it had run for longer than
  ``reset_after``). Older instances
  are removed. Containers of names not in the spec are killed.
- Sandboxes of edged's node whose pod uid is not desired (the pod was deleted, replaced by one
  of the same name, or is terminating) are killed: containers stopped with the grace period
  the pod had (kept as a sandbox annotation), then the sandbox stopped and removed.
- ``hold`` in a desired pod holds back the start of a container (an image pull that failed and
  waits for its back-off; the module decides) until the given time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

ContainerState = Literal["created", "running", "exited", "unknown"]
RestartPolicy = Literal["Always", "OnFailure", "Never"]


@dataclass(frozen=True, slots=True)
class DesiredContainer:
    name: str
    #: :func:`edgecore.edged.podspec.container_hash` of its spec
    spec_hash: str


@dataclass(frozen=True, slots=True)
class DesiredPod:
    """A pod bound to this node, as the cache has it."""

    namespace: str
    name: str
    uid: str
    containers: tuple[DesiredContainer, ...]
    restart_policy: RestartPolicy = "Always"
    grace_seconds: int = 30
    #: hash of the sandbox-level spec (hostNetwork, hostname); a change recreates the sandbox
    sandbox_hash: str = ""
    #: container name -> time before which it must not be started (image pull back-off)
    hold: Mapping[str, float] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class ObservedSandbox:
    id: str
    namespace: str
    name: str
    uid: str
    ready: bool
    attempt: int = 0
    #: creation time, seconds
    created_at: float = 0.0
    sandbox_hash: str = ""
    grace_seconds: int = 30
    #: container name -> restart count reached in earlier sandboxes of the pod
    restart_base: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ObservedContainer:
    id: str
    sandbox_id: str
    name: str
    state: ContainerState
    attempt: int = 0
    spec_hash: str = ""
    exit_code: int = 0
    #: seconds; 0 when unknown
    started_at: float = 0.0
    finished_at: float = 0.0


# --- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateSandbox:
    key: str
    uid: str
    attempt: int
    restart_base: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StartContainer:
    key: str
    uid: str
    sandbox_id: str
    name: str
    #: the container's restart count (CRI metadata.attempt)
    attempt: int


@dataclass(frozen=True, slots=True)
class KillContainer:
    """Stop (SIGTERM, SIGKILL after ``grace_seconds``) and remove."""

    key: str
    container_id: str
    grace_seconds: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RemoveContainer:
    """Remove an exited container (an older instance nobody needs)."""

    key: str
    container_id: str


@dataclass(frozen=True, slots=True)
class KillSandbox:
    """Stop its containers with the grace period, then stop and remove the sandbox."""

    key: str
    sandbox_id: str
    container_ids: tuple[str, ...]
    grace_seconds: int
    reason: str = ""


Action = CreateSandbox | StartContainer | KillContainer | RemoveContainer | KillSandbox


@dataclass(frozen=True, slots=True)
class Backoff:
    """Restart back-off of exited containers (kubelet: 10 s doubling up to 5 min)."""

    initial: float = 10.0
    cap: float = 300.0
    #: a container that ran at least this long before exiting restarts without delay
    reset_after: float = 600.0

    def delay(self, restarts: int, ran_for: float) -> float:
        """Seconds before restart number ``restarts + 1`` of a container that ran ``ran_for``:
        the first restart at once (as kubelet), then ``initial`` doubling up to ``cap``."""
        if ran_for >= self.reset_after or restarts <= 0:
            return 0.0
        return float(min(self.cap, self.initial * (2 ** (restarts - 1))))


@dataclass(slots=True)
class Plan:
    """What to do now, per pod key (each pod's actions run in order; pods in parallel)."""

    actions: dict[str, list[Action]] = field(default_factory=dict)
    #: earliest time at which :func:`plan` wants to run again (a back-off ends), or None
    wake_at: float | None = None
    #: (pod key, container) -> time its restart back-off ends (status: CrashLoopBackOff)
    backing_off: dict[tuple[str, str], float] = field(default_factory=dict)

    def add(self, key: str, action: Action) -> None:
        self.actions.setdefault(key, []).append(action)

    def wake(self, at: float) -> None:
        self.wake_at = at if self.wake_at is None else min(self.wake_at, at)

    @property
    def flat(self) -> list[Action]:
        return [a for acts in self.actions.values() for a in acts]


def should_restart(policy: RestartPolicy, exit_code: int) -> bool:
    """Whether an exited container is started again under ``policy``."""
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def plan(
    desired: Iterable[DesiredPod],
    sandboxes: Iterable[ObservedSandbox],
    containers: Iterable[ObservedContainer],
    *,
    now: float,
    backoff: Backoff = Backoff(),
) -> Plan:
    """The actions that bring the runtime to ``desired``; see the module docstring."""
    out = Plan()
    wanted = {p.uid: p for p in desired}
    by_uid: dict[str, list[ObservedSandbox]] = {}
    for sb in sandboxes:
        by_uid.setdefault(sb.uid, []).append(sb)
    in_sandbox: dict[str, list[ObservedContainer]] = {}
    for c in containers:
        in_sandbox.setdefault(c.sandbox_id, []).append(c)

    for uid, boxes in by_uid.items():
        pod = wanted.get(uid)
        if pod is None:
            for sb in boxes:
                _kill_sandbox(out, sb, in_sandbox, sb.grace_seconds, "pod is not bound here")
            continue
        _sync_pod(out, pod, boxes, in_sandbox, now=now, backoff=backoff)
    for uid, pod in wanted.items():
        if uid not in by_uid:
            out.add(pod.key, CreateSandbox(pod.key, uid, attempt=0))
    return out


def _kill_sandbox(
    out: Plan,
    sb: ObservedSandbox,
    in_sandbox: Mapping[str, list[ObservedContainer]],
    grace: int,
    reason: str,
) -> None:
    ids = tuple(c.id for c in in_sandbox.get(sb.id, ()))
    out.add(
        f"{sb.namespace}/{sb.name}",
        KillSandbox(f"{sb.namespace}/{sb.name}", sb.id, ids, grace, reason),
    )


def _sync_pod(
    out: Plan,
    pod: DesiredPod,
    boxes: list[ObservedSandbox],
    in_sandbox: Mapping[str, list[ObservedContainer]],
    *,
    now: float,
    backoff: Backoff,
) -> None:
    usable = [sb for sb in boxes if sb.ready and sb.sandbox_hash == pod.sandbox_hash]
    current = max(usable, key=lambda sb: (sb.attempt, sb.created_at, sb.id), default=None)
    for sb in boxes:
        if sb is not current:
            why = "sandbox is not ready" if not sb.ready else "pod sandbox changed"
            _kill_sandbox(out, sb, in_sandbox, pod.grace_seconds, why)
    if current is None:
        bases: dict[str, int] = {}
        for sb in boxes:
            for name, count in sb.restart_base.items():
                bases[name] = max(bases.get(name, 0), count)
            for c in in_sandbox.get(sb.id, ()):
                bases[c.name] = max(bases.get(c.name, 0), c.attempt + 1)
        attempt = max((sb.attempt for sb in boxes), default=-1) + 1
        out.add(pod.key, CreateSandbox(pod.key, pod.uid, attempt, bases))
        return

    spec = {c.name: c for c in pod.containers}
    instances: dict[str, list[ObservedContainer]] = {}
    for c in in_sandbox.get(current.id, ()):
        if c.name in spec:
            instances.setdefault(c.name, []).append(c)
        else:
            out.add(pod.key, KillContainer(pod.key, c.id, pod.grace_seconds, "not in the spec"))
    for want in pod.containers:
        found = sorted(instances.get(want.name, ()), key=lambda c: (c.attempt, c.started_at, c.id))
        latest = found[-1] if found else None
        for old in found[:-1]:
            if old.state == "running":
                out.add(pod.key, KillContainer(pod.key, old.id, pod.grace_seconds, "duplicate"))
            else:
                out.add(pod.key, RemoveContainer(pod.key, old.id))
        base = current.restart_base.get(want.name, 0)
        hold = pod.hold.get(want.name)
        if latest is None:
            _start(out, pod, current.id, want.name, base, hold, now)
            continue
        next_attempt = max(latest.attempt + 1, base)
        if latest.state == "running":
            if latest.spec_hash != want.spec_hash:
                out.add(
                    pod.key, KillContainer(pod.key, latest.id, pod.grace_seconds, "spec changed")
                )
                _start(out, pod, current.id, want.name, next_attempt, hold, now)
            continue
        if latest.state == "created":
            # created but never started (edged died in between): start over
            out.add(pod.key, RemoveContainer(pod.key, latest.id))
            _start(out, pod, current.id, want.name, latest.attempt, hold, now)
            continue
        # exited (or unknown): a changed spec starts at once, else the restart policy decides
        if latest.spec_hash != want.spec_hash:
            out.add(pod.key, RemoveContainer(pod.key, latest.id))
            _start(out, pod, current.id, want.name, next_attempt, hold, now)
            continue
        if not should_restart(pod.restart_policy, latest.exit_code):
            continue
        ran_for = max(0.0, latest.finished_at - latest.started_at) if latest.started_at else 0.0
        due = latest.finished_at + backoff.delay(latest.attempt, ran_for)
        if now < due:
            out.backing_off[(pod.key, want.name)] = due
            out.wake(due)
            continue
        out.add(pod.key, RemoveContainer(pod.key, latest.id))
        _start(out, pod, current.id, want.name, next_attempt, hold, now)


def _start(
    out: Plan,
    pod: DesiredPod,
    sandbox_id: str,
    name: str,
    attempt: int,
    hold: float | None,
    now: float,
) -> None:
    if hold is not None and now < hold:
        out.wake(hold)
        return
    out.add(pod.key, StartContainer(pod.key, pod.uid, sandbox_id, name, attempt))
