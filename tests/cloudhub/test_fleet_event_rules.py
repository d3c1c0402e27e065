"""Which Events a status change means: pods as a kubelet words them, devices, nodes."""

from __future__ import annotations

from typing import Any

from cloudhub.fleet.derive import device_events, node_event, pod_events


def _pod(phase: str, **state: Any) -> dict[str, Any]:
    statuses = [{"name": "app", "state": state}] if state else []
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
        "status": {"phase": phase, "containerStatuses": statuses},
    }


def _reasons(events: list[Any]) -> list[tuple[str, str]]:
    return [(e.reason, e.type) for e in events]


def test_first_sight_records_nothing() -> None:
    """Listing the store at start-up replays no history."""
    assert pod_events(None, _pod("Running", running={"startedAt": "t1"}), at=0) == []
    assert device_events(None, {"kind": "Device", "status": {"state": "offline"}}, at=0) == []


def test_container_start_and_restart_are_started_events() -> None:
    """A new running.startedAt is Started, naming the container; the same one is nothing."""
    pending = _pod("Pending", waiting={"reason": "ContainerCreating"})
    running = _pod("Running", running={"startedAt": "t1"})
    [ev] = pod_events(pending, running, at=5)
    assert (ev.reason, ev.type, ev.message) == ("Started", "Normal", "Started container app")
    assert ev.involved_object.field_path == "spec.containers{app}"
    assert pod_events(running, running, at=6) == []
    restarted = _pod("Running", running={"startedAt": "t2"})
    assert _reasons(pod_events(running, restarted, at=7)) == [("Started", "Normal")]


def test_image_pull_and_crash_loops_are_warnings() -> None:
    """ErrImagePull is Failed, CrashLoopBackOff is BackOff, with the runtime's message."""
    pending = _pod("Pending", waiting={"reason": "ContainerCreating"})
    pull = _pod("Pending", waiting={"reason": "ErrImagePull", "message": "no such image"})
    [ev] = pod_events(pending, pull, at=1)
    assert (ev.reason, ev.type) == ("Failed", "Warning")
    assert ev.message == "container app: ErrImagePull: no such image"
    crash = _pod("Running", waiting={"reason": "CrashLoopBackOff"})
    assert _reasons(pod_events(pull, crash, at=2)) == [("BackOff", "Warning")]


def test_non_zero_exit_and_failed_phase() -> None:
    """A container ending with code 1 and a pod becoming Failed are Failed warnings."""
    running = _pod("Running", running={"startedAt": "t1"})
    ended = _pod("Failed", terminated={"exitCode": 1, "reason": "Error", "finishedAt": "t3"})
    events = pod_events(running, ended, at=3)
    assert _reasons(events) == [("Failed", "Warning"), ("Failed", "Warning")]
    assert events[0].message == "container app exited with code 1 (Error)"
    assert pod_events(ended, ended, at=4) == []


def test_device_state_changes() -> None:
    """online -> offline is a DeviceOffline warning, and back a DeviceOnline."""
    on = {"kind": "Device", "metadata": {"name": "t1", "namespace": "default"}}
    on["status"] = {"state": "online"}
    off = {**on, "status": {"state": "offline"}}
    assert _reasons(device_events(on, off, at=1)) == [("DeviceOffline", "Warning")]
    assert _reasons(device_events(off, on, at=2)) == [("DeviceOnline", "Normal")]
    assert device_events(on, on, at=3) == []


def test_node_events_use_kubernetes_reasons() -> None:
    """Node link up/down are NodeReady/NodeNotReady."""
    assert node_event("edge-1", online=True, at=0).reason == "NodeReady"
    down = node_event("edge-1", online=False, at=0)
    assert (down.reason, down.type) == ("NodeNotReady", "Warning")
