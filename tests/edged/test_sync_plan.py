"""The pod-sync plan, driven by states alone: no runtime, no clock."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecore.edged.sync import (
    Backoff,
    CreateSandbox,
    DesiredContainer,
    DesiredPod,
    KillContainer,
    KillSandbox,
    ObservedContainer,
    ObservedSandbox,
    RemoveContainer,
    StartContainer,
    plan,
)

pytestmark = pytest.mark.timeout(60)


class World:
    """A runtime that does what it is told, instantly."""

    def __init__(self) -> None:
        self.sandboxes: dict[str, ObservedSandbox] = {}
        self.containers: dict[str, ObservedContainer] = {}
        self._ids = itertools.count()
        self.started = 0
        self.killed_running = 0

    def apply(self, desired: list[DesiredPod], actions: Sequence[object], now: float) -> None:
        by_uid = {p.uid: p for p in desired}
        for a in actions:
            if isinstance(a, CreateSandbox):
                pod = by_uid[a.uid]
                sid = f"sb{next(self._ids)}"
                self.sandboxes[sid] = ObservedSandbox(
                    sid, pod.namespace, pod.name, pod.uid, True, a.attempt, now,
                    pod.sandbox_hash, pod.grace_seconds, dict(a.restart_base),
                )  # fmt: skip
            elif isinstance(a, StartContainer):
                pod = by_uid[a.uid]
                spec = next(c for c in pod.containers if c.name == a.name)
                cid = f"c{next(self._ids)}"
                self.containers[cid] = ObservedContainer(
                    cid, a.sandbox_id, a.name, "running", a.attempt, spec.spec_hash, 0, now, 0.0
                )
                self.started += 1
            elif isinstance(a, KillContainer | RemoveContainer):
                gone = self.containers.pop(a.container_id)
                self.killed_running += gone.state == "running"
            elif isinstance(a, KillSandbox):
                for cid in a.container_ids:
                    gone = self.containers.pop(cid)
                    self.killed_running += gone.state == "running"
                del self.sandboxes[a.sandbox_id]

    def converge(self, desired: list[DesiredPod], now: float = 1000.0) -> int:
        """Plan and apply until nothing is left to do; the number of rounds."""
        for rounds in range(1, 10):
            p = plan(desired, self.sandboxes.values(), self.containers.values(), now=now)
            if not p.flat:
                return rounds
            self.apply(desired, p.flat, now)
        raise AssertionError("no convergence within 10 rounds")

    def exit(self, cid: str, code: int, at: float) -> None:
        self.containers[cid] = replace(
            self.containers[cid], state="exited", exit_code=code, finished_at=at
        )


names = st.text("abcdef", min_size=1, max_size=3)
pods = st.lists(
    st.builds(
        lambda name, cs, policy, host: DesiredPod(
            "default",
            name,
            f"uid-{name}",
            tuple(DesiredContainer(c, f"h-{c}-{h}") for c, h in cs.items()),
            policy,
            1,
            f"sb-{host}",
        ),
        names,
        st.dictionaries(names, st.integers(0, 2), min_size=1, max_size=3),
        st.sampled_from(["Always", "OnFailure", "Never"]),
        st.booleans(),
    ),
    max_size=4,
    unique_by=lambda p: p.name,
)


def assert_converged(world: World, desired: list[DesiredPod]) -> None:
    by_uid = {p.uid: p for p in desired}
    assert {sb.uid for sb in world.sandboxes.values()} == set(by_uid)
    for sb in world.sandboxes.values():
        pod = by_uid[sb.uid]
        mine = [c for c in world.containers.values() if c.sandbox_id == sb.id]
        assert sorted((c.name, c.spec_hash) for c in mine) == sorted(
            (c.name, c.spec_hash) for c in pod.containers
        )
        assert all(c.state == "running" for c in mine)


@given(pods, pods)
def test_any_state_converges_to_the_desired_pods(
    first: list[DesiredPod], then: list[DesiredPod]
) -> None:
    """From whatever ran before, the plan reaches exactly the desired pods and containers."""
    world = World()
    world.converge(first)
    assert_converged(world, first)
    world.converge(then)
    assert_converged(world, then)


@given(pods)
def test_a_converged_runtime_is_left_alone(desired: list[DesiredPod]) -> None:
    """Re-adoption: running containers with the spec's hash are never restarted."""
    world = World()
    world.converge(desired)
    started = world.started
    for _ in range(3):
        p = plan(desired, world.sandboxes.values(), world.containers.values(), now=5000.0)
        assert p.flat == []
    assert world.started == started


def test_a_spec_change_replaces_only_that_container() -> None:
    """A changed container hash kills and restarts that container, not its neighbour."""
    pod = DesiredPod(
        "default", "web", "u1", (DesiredContainer("a", "1"), DesiredContainer("b", "1"))
    )
    world = World()
    world.converge([pod])
    before = {c.name: c.id for c in world.containers.values()}
    changed = replace(pod, containers=(DesiredContainer("a", "2"), DesiredContainer("b", "1")))
    world.converge([changed])
    after = {c.name: c for c in world.containers.values()}
    assert after["b"].id == before["b"]
    assert after["a"].id != before["a"] and after["a"].attempt == 1


@pytest.mark.parametrize(
    ("policy", "code", "restarts"),
    [("Always", 0, True), ("Always", 1, True), ("OnFailure", 0, False), ("OnFailure", 2, True),
     ("Never", 1, False), ("Never", 0, False)],
)  # fmt: skip
def test_restart_policy_and_back_off(policy: str, code: int, restarts: bool) -> None:
    """An exited container restarts by its policy: at once the first time, then not before
    its back-off ends."""
    pod = DesiredPod("default", "job", "u1", (DesiredContainer("a", "1"),), policy)  # type: ignore[arg-type]
    world = World()
    backoff = Backoff(initial=10, cap=300)
    world.converge([pod], now=100.0)
    (cid,) = world.containers
    world.exit(cid, code, at=101.0)
    first = plan(
        [pod], world.sandboxes.values(), world.containers.values(), now=101.0, backoff=backoff
    )
    starts = [a for a in first.flat if isinstance(a, StartContainer)]
    assert (starts[0].attempt if starts else None) == (1 if restarts else None)
    if not restarts:
        return
    world.apply([pod], first.flat, 101.0)
    (cid,) = world.containers
    world.exit(cid, code, at=102.0)
    early = plan(
        [pod], world.sandboxes.values(), world.containers.values(), now=105.0, backoff=backoff
    )
    assert not any(isinstance(a, StartContainer) for a in early.flat)
    assert early.wake_at == 112.0 and early.backing_off == {("default/job", "a"): 112.0}
    late = plan(
        [pod], world.sandboxes.values(), world.containers.values(), now=112.0, backoff=backoff
    )
    assert [a.attempt for a in late.flat if isinstance(a, StartContainer)] == [2]


def test_back_off_doubles_and_resets_after_a_long_run() -> None:
    """At once, then 10 s, 20 s, 40 s … capped; a container that ran 10 min restarts at once."""
    b = Backoff(initial=10, cap=300, reset_after=600)
    assert [b.delay(n, 1) for n in range(8)] == [0, 10, 20, 40, 80, 160, 300, 300]
    assert b.delay(5, 600) == 0


def test_a_dead_sandbox_is_replaced_and_restart_counts_carry_over() -> None:
    """After a reboot (sandbox not ready), a new sandbox starts; restartCount goes on."""
    pod = DesiredPod("default", "web", "u1", (DesiredContainer("a", "1"),))
    world = World()
    world.converge([pod])
    (sid,) = world.sandboxes
    (cid,) = world.containers
    world.sandboxes[sid] = replace(world.sandboxes[sid], ready=False)
    world.exit(cid, 137, at=1001.0)
    world.converge([pod], now=2000.0)
    (sb,) = world.sandboxes.values()
    (c,) = world.containers.values()
    assert sb.id != sid and sb.attempt == 1 and c.attempt == 1


def test_a_deleted_pod_is_killed_with_its_grace_period() -> None:
    """Sandboxes of pods no longer desired are killed with the grace they were made with."""
    pod = replace(
        DesiredPod("default", "web", "u1", (DesiredContainer("a", "1"),)), grace_seconds=7
    )
    world = World()
    world.converge([pod])
    p = plan([], world.sandboxes.values(), world.containers.values(), now=1.0)
    (kill,) = p.flat
    assert isinstance(kill, KillSandbox) and len(kill.container_ids) == 1


def test_a_held_container_waits_for_its_hold() -> None:
    """An image pull in back-off holds the start until the given time."""
    pod = DesiredPod("default", "web", "u1", (DesiredContainer("a", "1"),), hold={"a": 50.0})
    world = World()
    world.apply([pod], plan([pod], [], [], now=10.0).flat, 10.0)
    held = plan([pod], world.sandboxes.values(), world.containers.values(), now=20.0)
    assert held.flat == [] and held.wake_at == 50.0
    free = plan([pod], world.sandboxes.values(), world.containers.values(), now=50.0)
    assert [type(a) for a in free.flat] == [StartContainer]
