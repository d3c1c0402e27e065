"""The fleet view's running counts always equal a recount, whatever the order of changes."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from cloudhub.fleet.module import last_write
from cloudhub.fleet.view import SPARK_POINTS, FleetView, device_state, pod_phase
from cloudhub.ui.rows import sparkline
from wire.twin import in_sync


def _pod(name: str, node: str, phase: str | None) -> dict[str, Any]:
    pod: dict[str, Any] = {"kind": "Pod", "metadata": {"name": name, "namespace": "default"}}
    pod["spec"] = {"nodeName": node}
    if phase:
        pod["status"] = {"phase": phase}
    return pod


def _device(name: str, node: str, state: str | None, reported: str | None) -> dict[str, Any]:
    dev: dict[str, Any] = {"kind": "Device", "metadata": {"name": name, "namespace": "default"}}
    dev["spec"] = {"nodeName": node, "properties": [{"name": "t", "desired": {"value": "1"}}]}
    status: dict[str, Any] = {}
    if state:
        status["state"] = state
    if reported is not None:
        status["twins"] = [
            {
                "propertyName": "t",
                "reported": {"value": reported, "metadata": {"timestamp": reported}},
                "observedDesired": {"value": "1"},
            }
        ]
    dev["status"] = status
    return dev


names = st.sampled_from(["a", "b", "c"])
nodes = st.sampled_from(["n1", "n2"])
changes = st.lists(
    st.one_of(
        st.tuples(st.just("pod"), names, nodes, st.sampled_from([None, "Running", "Failed"])),
        st.tuples(
            st.just("device"),
            names,
            nodes,
            st.tuples(
                st.sampled_from([None, "online", "offline"]), st.sampled_from([None, "1", "2"])
            ),
        ),
        st.tuples(st.just("delete-pod"), names, nodes, st.none()),
        st.tuples(st.just("delete-device"), names, nodes, st.none()),
    ),
    max_size=40,
)


@given(changes)
def test_counts_match_a_recount(seq: list[tuple[str, str, str, Any]]) -> None:
    """Pods by phase, devices by state and in sync, and per-node sets match the objects held."""
    view = FleetView()
    for op, name, node, arg in seq:
        if op == "pod":
            view.upsert("pod", _pod(name, node, arg))
        elif op == "device":
            view.upsert("device", _device(name, node, *arg))
        elif op == "delete-pod":
            view.delete("pod", _pod(name, node, None))
        else:
            view.delete("device", _device(name, node, None, None))
    pods = list(view.pods.values())
    devices = view.devices()
    assert +view.pod_phases == Counter(pod_phase(p) for p in pods)
    assert +view.device_states == Counter(device_state(d) for d in devices)
    assert view.devices_in_sync == sum(in_sync(d) for d in devices)
    assert sum(len(s) for s in view.pods_on.values()) == len(pods)
    assert sum(len(s) for s in view.devices_on.values()) == len(devices)


@given(changes)
def test_replacing_a_pod_in_place_leaves_the_view_upsert_would(
    seq: list[tuple[str, str, str, Any]],
) -> None:
    """Where replace_pod takes a pod (same node and status), the view is what upsert makes."""
    fast, slow = FleetView(), FleetView()
    for op, name, node, arg in seq:
        if op == "pod":
            pod = _pod(name, node, arg)
            if not fast.replace_pod(pod):
                fast.upsert("pod", pod)
            slow.upsert("pod", pod)
        elif op == "delete-pod":
            fast.delete("pod", _pod(name, node, None))
            slow.delete("pod", _pod(name, node, None))
    assert fast.pods == slow.pods
    assert all(fast.pods[k] is slow.pods[k] for k in slow.pods)
    assert {n: s for n, s in fast.pods_on.items() if s} == {
        n: s for n, s in slow.pods_on.items() if s
    }
    assert +fast.pod_phases == +slow.pod_phases
    assert fast.pod_keys() == slow.pod_keys()


def test_replace_pod_takes_only_a_known_pod_on_its_node_with_its_status() -> None:
    """A new pod, a moved pod or a changed status is refused (and nothing stored)."""
    view = FleetView()
    assert not view.replace_pod(_pod("a", "n1", "Running"))
    view.upsert("pod", _pod("a", "n1", "Running"))
    for other in (_pod("a", "n2", "Running"), _pod("a", "n1", "Failed"), _pod("a", "n1", None)):
        assert not view.replace_pod(other)
        assert view.pods[("default", "a")]["spec"]["nodeName"] == "n1"
        assert view.pods[("default", "a")]["status"] == {"phase": "Running"}
    same = _pod("a", "n1", "Running")
    same["metadata"]["annotations"] = {"x": "1"}
    assert view.replace_pod(same)
    assert view.pods[("default", "a")] is same
    assert view.pods_of("n1") == [same] and view.pod_phases["Running"] == 1


def test_reported_values_feed_a_bounded_sparkline() -> None:
    """Each new numeric report is remembered once, up to SPARK_POINTS, and draws a line."""
    view = FleetView()
    for value in range(SPARK_POINTS + 5):
        view.upsert("device", _device("a", "n1", "online", str(value)))
        view.upsert("device", _device("a", "n1", "online", str(value)))  # same report again
    history = view.history(("default", "a"), "t")
    assert history == [float(v) for v in range(5, SPARK_POINTS + 5)]
    points = sparkline(history).split()
    assert len(points) == SPARK_POINTS
    assert points[0].startswith("1.0,") and sparkline([1.0]) == ""
    assert sparkline([1.0, float("nan"), 1.0]).count(",") == 2


def test_last_write_reads_the_api_servers_stamps() -> None:
    """The newest managedFields time is the object's last write; none without them."""
    obj = {
        "metadata": {
            "managedFields": [
                {"manager": "kubectl", "time": "2026-01-01T00:00:00Z"},
                {"manager": "cloudhub", "time": "2026-01-01T00:00:05Z"},
            ]
        }
    }
    assert last_write(obj) == last_write(
        {"metadata": {"managedFields": [obj["metadata"]["managedFields"][1]]}}
    )
    assert last_write(obj) is not None and last_write({"metadata": {}}) is None
