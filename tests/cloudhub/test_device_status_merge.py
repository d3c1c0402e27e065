"""Edge twin reports merge into Device.status by version: any order, duplicates, no reverts."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from cloudhub.devicecontroller.twins import merge_report, parse_twin_report
from wire.twin import in_sync

PROPS = ["temperature", "setpoint"]


def report(prop: str, value: str, edge: int, *, expected: str | None = None, cloud: int = 0) -> Any:
    twin: dict[str, Any] = {
        "actual": {"value": value, "metadata": {"timestamp": 1}},
        "metadata": {"type": "float"},
        "actual_version": {"cloud": 0, "edge": edge},
    }
    if expected is not None:
        twin["expected"] = {"value": expected}
        twin["expected_version"] = {"cloud": cloud, "edge": 0}
    return parse_twin_report({"event_id": "e", "timestamp": 5, "twin": {prop: twin}})


def reported(twins: list[dict[str, Any]], prop: str) -> str | None:
    for t in twins:
        if t["propertyName"] == prop:
            return t.get("reported", {}).get("value")  # type: ignore[no-any-return]
    return None


def test_newer_report_replaces_older() -> None:
    """A report with a greater edge version replaces the stored reported value."""
    twins = merge_report([], report("temperature", "20", 1))
    twins = merge_report(twins, report("temperature", "21", 2))
    assert reported(twins, "temperature") == "21"


def test_older_or_repeated_report_changes_nothing() -> None:
    """A re-sent or late report does not revert the stored value."""
    twins = merge_report([], report("temperature", "21", 2))
    assert merge_report(twins, report("temperature", "20", 1)) == twins
    assert merge_report(twins, report("temperature", "21", 2)) == twins


def test_observed_desired_follows_expected() -> None:
    """The edge's expected value becomes observedDesired, ordered by its version."""
    twins = merge_report([], report("setpoint", "20", 1, expected="21.5", cloud=3))
    assert twins[0]["observedDesired"]["value"] == "21.5"
    older = merge_report(twins, report("setpoint", "20", 2, expected="19", cloud=2))
    assert older[0]["observedDesired"]["value"] == "21.5"
    assert older[0]["reported"]["value"] == "20"


def test_in_sync_needs_observed_and_reported_desired() -> None:
    """A device is in sync when each desired value was observed and reported back."""
    device: dict[str, Any] = {
        "spec": {"properties": [{"name": "setpoint", "desired": {"value": "21.5"}}]},
        "status": {"twins": merge_report([], report("setpoint", "20", 1, expected="21.5"))},
    }
    assert not in_sync(device)
    device["status"]["twins"] = merge_report(
        device["status"]["twins"], report("setpoint", "21.5", 2, expected="21.5")
    )
    assert in_sync(device)


reports = st.lists(
    st.tuples(st.sampled_from(PROPS), st.integers(0, 50), st.integers(1, 30)),
    min_size=1,
    max_size=25,
)


@given(reports, st.randoms())
def test_any_order_of_reports_converges(items: list[tuple[str, int, int]], rnd: Any) -> None:
    """The same reports applied in any order (with duplicates) give the same status."""
    # one value per (prop, version): an edge never reports two values under one version
    unique = {(p, e): str(v) for p, v, e in items}
    msgs = [report(p, v, e) for (p, e), v in unique.items()]
    forward: list[dict[str, Any]] = []
    for m in msgs:
        forward = merge_report(forward, m)
    shuffled = msgs + msgs[: len(msgs) // 2]
    rnd.shuffle(shuffled)
    other: list[dict[str, Any]] = []
    for m in shuffled:
        other = merge_report(other, m)

    def by_name(twins: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(twins, key=lambda t: str(t["propertyName"]))

    assert by_name(forward) == by_name(other)
    for prop in {p for p, _ in unique}:
        newest = max(e for p, e in unique if p == prop)
        assert reported(other, prop) == unique[(prop, newest)]
